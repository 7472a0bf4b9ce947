#include "io/busy_poll.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>

namespace keel::io {

BusyPollWindow::BusyPollWindow(std::uint32_t max_us) : max_us_(std::min(max_us, kMaxBusyPollUs)) {}

void BusyPollWindow::on_idle_ended(std::uint64_t idle_us, bool caught) {
  if (caught || max_us_ == 0) return;
  if (idle_us <= max_us_) {
    // A gap polling would have bridged: poll longer next time.
    window_us_ = std::min(max_us_, std::max(kGrowStartUs, window_us_ * 2));
    return;
  }
  window_us_ /= 2;  // long gaps: stop spending CPU on them
  if (window_us_ < kGrowStartUs) window_us_ = 0;
}

void run_busy_polling(asio::io_context& io, std::uint32_t max_us) {
  if (max_us == 0) {
    io.run();
    return;
  }
  using Clock = std::chrono::steady_clock;
  const auto micros = [](Clock::duration span) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(span).count());
  };
  BusyPollWindow window(max_us);
  while (!io.stopped()) {
    if (io.poll() > 0) continue;
    if (io.stopped()) return;
    const Clock::time_point idle_since = Clock::now();
    const Clock::time_point poll_until = idle_since + std::chrono::microseconds(window.window_us());
    bool caught = false;
    while (!caught && Clock::now() < poll_until) {
      // Between polls, let whatever else is ready to run on this CPU have it.
      (void)::sched_yield();
      caught = io.poll() > 0;
    }
    if (!caught && io.run_one() == 0) return;  // stopped, or out of work
    // After run_one() the idle time also holds the first handler's run: a few microseconds,
    // small beside the gaps the window is sized for.
    window.on_idle_ended(micros(Clock::now() - idle_since), caught);
  }
}

}  // namespace keel::io
