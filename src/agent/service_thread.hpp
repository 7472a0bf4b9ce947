// ServiceThread: an event loop of its own for a service of the agent, apart from the agent's.
//
// The agent's own loop carries the ring and runs at real-time priority: nothing on it may wait on
// a disk or on the kernel's locks, or the token waits too. A mirrored volume's data path (NBD
// requests, the replication link, the replication core) copies data into the page cache, which
// may block while the kernel throttles dirty pages; the floating IPs' changes to the kernel
// (netlink, nftables) wait for the kernel's network configuration lock, which anything else on
// the host may hold for a while. So each such service gets a thread of its own: a volume's at
// ordinary priority, polling for a short adaptive window before it blocks (io/busy_poll.hpp, up
// to the volume's busy_poll_us); the floating IPs' at real-time priority just below the agent's
// loop, since a failover waits for it, but the token must not.
//
// The agent talks to the thread in three ways: post() hands it work and returns at once (ring
// events); ask() runs a function there and hands its result back to the agent's loop, or an error
// once a deadline passes, without waiting (control requests: the agent's loop carries the ring,
// and a status query must not stall it past the token timeout while this thread waits); call()
// runs a function there and waits for its result, up to a deadline (only at startup, before the
// ring runs). A call or ask that misses the deadline reports an error; its function still runs
// later, so it must own what it touches (capture by value, or objects that outlive the thread).
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

struct ServiceThreadOptions {
  std::string what;         // the thread in errors: "volume thread data"
  std::string thread_name;  // as `top -H` shows it (the kernel keeps 15 characters)
  std::string stall_hint;   // why it may miss a deadline: "its disk may be stalled"
  std::uint32_t busy_poll_us = 0;
  // Run at the priority of the thread that calls start() (the agent's real-time one), which a
  // new thread does not inherit under SCHED_RESET_ON_FORK; else at ordinary priority.
  bool creator_priority = false;
  // With creator_priority, one real-time step below the creator where there is one, so that on a
  // shared CPU the creator's work (the ring's token) goes first and this thread's cannot hold it
  // up, while ordinary processes still cannot hold up this thread.
  bool below_creator = false;
};

// A mirrored volume's thread: "vol-NAME", ordinary priority, polling up to `busy_poll_us`.
ServiceThreadOptions volume_thread_options(const std::string& volume, std::uint32_t busy_poll_us);
// The floating IPs' thread: "vip", one real-time step below the agent's loop.
ServiceThreadOptions vip_thread_options();

class ServiceThread {
 public:
  explicit ServiceThread(ServiceThreadOptions options);
  ~ServiceThread();
  ServiceThread(const ServiceThread&) = delete;
  ServiceThread& operator=(const ServiceThread&) = delete;

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
    // Touched on reply_to's thread only; this thread merely carries a reference back.
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
  Error not_running() const { return Error{options_.what + " is not running"}; }
  Error missed(std::chrono::milliseconds deadline) const {
    const std::string hint = options_.stall_hint.empty() ? "" : " (" + options_.stall_hint + ")";
    return Error{options_.what + " did not answer within " + std::to_string(deadline.count()) +
                 " ms" + hint};
  }

  ServiceThreadOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> keep_running_;
  std::thread thread_;
  bool stopped_ = false;             // request_stop() was called
  std::shared_future<void> closed_;  // `last` has run
};

}  // namespace keel::agent
