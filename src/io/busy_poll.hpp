// Busy polling for an event loop whose latency matters more than a little CPU: a volume's data
// path.
//
// Blocking in epoll_wait costs a wake-up when the next event comes: the kernel must schedule the
// thread again, often on a CPU that was idle and has to be woken first (in a virtual machine, an
// exit to the host). For a client that sends its next request a few tens of microseconds after
// each reply (queue depth 1), that wake-up is as long as the work itself. So after running its
// handlers the loop first keeps polling (epoll with no timeout, yielding the CPU between polls to
// any other thread that wants it) for a window of time, and blocks only when nothing came in that
// window.
//
// The window adapts, as the kernel's haltpoll governor does for idle CPUs: it starts at 0; an idle
// period the window did not cover but that ended within `max_us` doubles it (from kGrowStartUs);
// an idle period longer than `max_us` halves it (below kGrowStartUs it is 0 again). A loop whose
// events come more than `max_us` apart therefore stops spinning after a few of them, and a busy
// one spins only in the short gaps between events. max_us = 0 disables polling (plain run()).
//
// BusyPollWindow is the policy alone (no clock, no I/O); run_busy_polling() applies it to an
// io_context with the steady clock.
//
// Thread-safety: BusyPollWindow is a plain value; run_busy_polling() runs on the loop's thread
// like io_context::run(), and returns when the io_context is stopped or runs out of work.
#pragma once

#include <asio.hpp>
#include <cstdint>

namespace keel::io {

constexpr std::uint32_t kMaxBusyPollUs = 1000;

class BusyPollWindow {
 public:
  static constexpr std::uint32_t kGrowStartUs = 10;

  explicit BusyPollWindow(std::uint32_t max_us);

  // How long to poll before blocking, in microseconds.
  std::uint32_t window_us() const { return window_us_; }
  // An idle period ended after `idle_us` (polling included); `caught`: an event came while
  // polling, so the loop did not block.
  void on_idle_ended(std::uint64_t idle_us, bool caught);

 private:
  std::uint32_t max_us_;
  std::uint32_t window_us_ = 0;
};

// Runs `io` as run() does, polling for up to `max_us` before blocking (see above).
void run_busy_polling(asio::io_context& io, std::uint32_t max_us);

}  // namespace keel::io
