// MetadataPersister: the thread that writes and syncs a volume's metadata, one job after another
// in the order given.
//
// A job that fails is tried again every `retry_interval` until it succeeds: the replica counts
// metadata as durable only once told so, and what rests on it (an activity-log extent before a
// write to it is issued, the peer recorded as outdated before writes are acknowledged without it,
// a resync target's blocks) waits meanwhile instead of going ahead on metadata that is not on
// disk. A full filesystem that frees up, or a path that comes back, lets it continue. Later jobs
// wait behind a failing one, which keeps the order the replica relies on.
//
// Thread-safety: submit() and run() from any one thread; the callbacks run on the worker.
// stop() (also the destructor) wakes a job waiting to retry, which then gives up without calling
// `done`; the jobs queued behind it are dropped unrun; then it joins the worker.
#pragma once

#include <asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "core/common/result.hpp"

namespace keel::agent {

class MetadataPersister {
 public:
  using Job = std::function<Result<Ok>()>;
  // A failed attempt (1 for the first) and what failed.
  using Failed = std::function<void(const std::string& why, int attempt)>;

  explicit MetadataPersister(std::chrono::milliseconds retry_interval)
      : retry_interval_(retry_interval) {}
  ~MetadataPersister() { stop(); }
  MetadataPersister(const MetadataPersister&) = delete;
  MetadataPersister& operator=(const MetadataPersister&) = delete;

  // Runs `job` until it succeeds, then `done`.
  void submit(Job job, Failed failed, std::function<void()> done);
  // Runs `work` once, in turn with the jobs.
  void run(std::function<void()> work);
  void stop();

 private:
  // Waits out the retry interval; false if stop() came first.
  bool wait_to_retry();
  bool stopping();

  std::chrono::milliseconds retry_interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  bool joined_ = false;
  asio::thread_pool worker_{1};
};

}  // namespace keel::agent
