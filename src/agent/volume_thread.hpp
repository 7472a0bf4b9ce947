// VolumeThread: the event loop one mirrored volume runs on, apart from the agent's.
//
// The agent's own loop carries the ring and runs at real-time priority: nothing on it may wait
// on a disk. A volume's data path (NBD requests, the replication link, the replication core)
// copies data into the page cache on its thread, which may block while the kernel throttles
// dirty pages; so each volume gets this thread, at ordinary priority. Its loop polls for a short,
// adaptive window before blocking (io/busy_poll.hpp), up to the volume's busy_poll_us.
//
// The agent talks to the thread in three ways: post() hands it work and returns at once (ring
// events); ask() runs a function there and hands its result back to the agent's loop, or an error
// once a deadline passes, without waiting (control requests: the agent's loop carries the ring,
// and a status query must not stall it past the token timeout while this thread waits on a
// disk); call() runs a function there and waits for its result, up to a deadline (only at
// startup, before the ring runs). A call or ask that misses the deadline reports an error; its
// function still runs later, so it must own what it touches (capture by value, or objects that
// outlive the thread).
//
// Thread-safety: post(), ask(), call() and stop() are called from one other thread (the
// agent's); context() is for the objects that live on this thread.
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
#include <utility>

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
  // stop() in two halves, so that a thread whose disk stalls cannot hold up what the caller has
  // to do meanwhile (the agent leaving the ring): request_stop() hands `last` to the thread and
  // returns at once; wait_stopped() says whether `last` has run, waiting up to `timeout`. The
  // join waits for stop() or the destructor.
  void request_stop(std::function<void()> last);
  bool wait_stopped(std::chrono::milliseconds timeout);

  void post(std::function<void()> work) { asio::post(io_, std::move(work)); }

  // Runs `work` on the thread and returns what it returns (a Result<T>), or an error when the
  // thread does not answer within `deadline`.
  template <typename R>
  R call(std::function<R()> work, std::chrono::milliseconds deadline = kCallDeadline) {
    if (stopped_ || !thread_.joinable()) return not_running();
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(work));
    std::future<R> answer = task->get_future();
    asio::post(io_, [task] { (*task)(); });
    if (answer.wait_for(deadline) != std::future_status::ready) return missed(deadline);
    return answer.get();
  }

  // Runs `work` on the thread and calls `done` on `reply_to`'s thread with its result, or with an
  // error when the thread has not answered within `deadline`: exactly once, never from inside
  // ask().
  template <typename R>
  void ask(asio::io_context& reply_to, std::function<R()> work, std::function<void(R)> done,
           std::chrono::milliseconds deadline = kCallDeadline) {
    if (stopped_ || !thread_.joinable()) {
      asio::post(reply_to, [done = std::move(done), error = not_running()] { done(error); });
      return;
    }
    // Touched on reply_to's thread only; the volume thread merely carries a reference back.
    struct Pending {
      asio::steady_timer timer;
      std::function<void(R)> done;
    };
    auto pending =
        std::make_shared<Pending>(Pending{asio::steady_timer(reply_to, deadline), std::move(done)});
    pending->timer.async_wait([pending, late = missed(deadline)](const asio::error_code& error) {
      if (error || !pending->done) return;
      std::exchange(pending->done, nullptr)(late);
    });
    asio::post(io_, [&reply_to, pending, work = std::move(work)]() mutable {
      R result = work();
      // Moved, so that the last reference is never dropped here, apart from the timer's thread.
      asio::post(reply_to, [pending = std::move(pending), result = std::move(result)]() mutable {
        if (!pending->done) return;  // the deadline passed: that error was the answer
        pending->timer.cancel();
        std::exchange(pending->done, nullptr)(std::move(result));
      });
    });
  }

  static constexpr std::chrono::milliseconds kCallDeadline{5000};

 private:
  Error not_running() const { return Error{"volume thread " + name_ + " is not running"}; }
  Error missed(std::chrono::milliseconds deadline) const {
    return Error{"volume thread " + name_ + " did not answer within " +
                 std::to_string(deadline.count()) + " ms (its disk may be stalled)"};
  }

  std::string name_;
  std::uint32_t busy_poll_us_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> keep_running_;
  std::thread thread_;
  bool stopped_ = false;             // request_stop() was called
  std::shared_future<void> closed_;  // `last` has run
};

}  // namespace keel::agent
