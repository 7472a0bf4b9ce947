#include "io/busy_poll.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace keel::io {
namespace {

TEST(BusyPollWindow, StartsClosedAndGrowsOnGapsItCouldHaveBridged) {
  BusyPollWindow window(100);
  EXPECT_EQ(window.window_us(), 0u);
  window.on_idle_ended(40, false);
  EXPECT_EQ(window.window_us(), BusyPollWindow::kGrowStartUs);
  window.on_idle_ended(40, false);
  EXPECT_EQ(window.window_us(), 2 * BusyPollWindow::kGrowStartUs);
  for (int i = 0; i < 10; ++i) window.on_idle_ended(90, false);
  EXPECT_EQ(window.window_us(), 100u);  // capped at the maximum
}

TEST(BusyPollWindow, AnEventCaughtWhilePollingKeepsTheWindow) {
  BusyPollWindow window(100);
  for (int i = 0; i < 3; ++i) window.on_idle_ended(50, false);
  const std::uint32_t before = window.window_us();
  window.on_idle_ended(5, true);
  EXPECT_EQ(window.window_us(), before);
}

TEST(BusyPollWindow, LongGapsCloseIt) {
  BusyPollWindow window(100);
  for (int i = 0; i < 10; ++i) window.on_idle_ended(50, false);
  ASSERT_EQ(window.window_us(), 100u);
  window.on_idle_ended(5000, false);
  EXPECT_EQ(window.window_us(), 50u);
  for (int i = 0; i < 4; ++i) window.on_idle_ended(5000, false);
  EXPECT_EQ(window.window_us(), 0u);  // halved below the start: closed, not a 1 us spin
}

TEST(BusyPollWindow, ZeroMaximumNeverPolls) {
  BusyPollWindow window(0);
  for (int i = 0; i < 5; ++i) window.on_idle_ended(1, false);
  EXPECT_EQ(window.window_us(), 0u);
}

TEST(BusyPollWindow, TheMaximumIsBounded) {
  BusyPollWindow window(1'000'000);
  for (int i = 0; i < 40; ++i) window.on_idle_ended(500, false);
  EXPECT_EQ(window.window_us(), kMaxBusyPollUs);
  window.on_idle_ended(kMaxBusyPollUs + 1, false);  // longer than the bounded maximum
  EXPECT_EQ(window.window_us(), kMaxBusyPollUs / 2);
}

// The loop runs what other threads post, through polling and blocking alike, and returns once
// its context is stopped.
TEST(RunBusyPolling, RunsPostedWorkAndStopsWithItsContext) {
  for (const std::uint32_t max_us : {0u, 200u}) {
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::atomic<int> ran{0};
    std::thread loop([&] { run_busy_polling(io, max_us); });
    for (int i = 0; i < 200; ++i) {
      std::promise<void> done;
      asio::post(io, [&] {
        ++ran;
        done.set_value();
      });
      done.get_future().wait();
      if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // long gaps
    }
    EXPECT_EQ(ran.load(), 200) << "max_us " << max_us;
    io.stop();
    loop.join();  // hangs (and the test times out) if the loop missed the stop
    EXPECT_TRUE(io.stopped());
  }
}

TEST(RunBusyPolling, ReturnsWhenTheContextRunsOutOfWork) {
  asio::io_context io;
  int ran = 0;
  asio::post(io, [&] { ++ran; });
  run_busy_polling(io, 100);
  EXPECT_EQ(ran, 1);
}

}  // namespace
}  // namespace keel::io
