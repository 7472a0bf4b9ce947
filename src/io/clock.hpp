// The two clocks the agent reads.
//
// monotonic_now_us() is ring time: microseconds on CLOCK_MONOTONIC (std::chrono::steady_clock on
// Linux), which never goes backwards and is what asio::steady_timer waits on, so a ring deadline
// converts to a timer expiry without drift. realtime_now_us() is wall-clock time, used only where
// a value must exceed anything an earlier run of this host used: the ring sequence floor and the
// packet sealer's epoch.
//
// Thread-safety: both are safe to call from any thread.
#pragma once

#include <chrono>
#include <cstdint>

#include "core/common/types.hpp"

namespace keel::io {

TimeUs monotonic_now_us();
std::uint64_t realtime_now_us();

// The steady_clock time point at which monotonic_now_us() reads `time`.
std::chrono::steady_clock::time_point monotonic_time_point(TimeUs time);

}  // namespace keel::io
