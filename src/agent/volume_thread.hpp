// VolumeThread: the event loop one mirrored volume runs on, apart from the agent's.
//
// The agent's own loop carries the ring and runs at real-time priority: nothing on it may wait
// on a disk. A volume's data path (NBD requests, the replication link, the replication core)
// copies data into the page cache on its thread, which may block while the kernel throttles
// dirty pages; so each volume gets this thread, at ordinary priority. Its loop polls for a short,
// adaptive window before blocking (io/busy_poll.hpp), up to the volume's busy_poll_us.
//
// The agent talks to the thread in two ways: post() hands it work and returns at once (ring
// events), call() runs a function there and waits for its result, up to a deadline (commands).
// A call that misses the deadline returns an error; its function still runs later, so it must
// own what it touches (capture by value, or objects that outlive the thread).
//
// Thread-safety: post(), call() and stop() are called from one other thread (the agent's);
// context() is for the objects that live on this thread.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>

#include "core/common/result.hpp"

namespace keel::agent {

class VolumeThread {
 public:
  explicit VolumeThread(std::string name, std::uint32_t busy_poll_us = 0);
  ~VolumeThread();
  VolumeThread(const VolumeThread&) = delete;
  VolumeThread& operator=(const VolumeThread&) = delete;

  asio::io_context& context() { return io_; }

  void start();
  // Runs `last` on the thread (to close what lives there), then ends the loop and joins it.
  // Handlers still queued are dropped. Idempotent.
  void stop(const std::function<void()>& last);

  void post(std::function<void()> work) { asio::post(io_, std::move(work)); }

  // Runs `work` on the thread and returns what it returns (a Result<T>), or an error when the
  // thread does not answer within `deadline`.
  template <typename R>
  R call(std::function<R()> work, std::chrono::milliseconds deadline = kCallDeadline) {
    if (stopped_ || !thread_.joinable()) return Error{"volume thread " + name_ + " is not running"};
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(work));
    std::future<R> answer = task->get_future();
    asio::post(io_, [task] { (*task)(); });
    if (answer.wait_for(deadline) != std::future_status::ready) {
      return Error{"volume thread " + name_ + " did not answer within " +
                   std::to_string(deadline.count()) + " ms (its disk may be stalled)"};
    }
    return answer.get();
  }

  static constexpr std::chrono::milliseconds kCallDeadline{5000};

 private:
  std::string name_;
  std::uint32_t busy_poll_us_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> keep_running_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace keel::agent
