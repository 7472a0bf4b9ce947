#include "io/clock.hpp"

#include "core/common/assert.hpp"

namespace keel::io {

namespace {

template <typename Clock>
std::uint64_t microseconds_since_epoch() {
  const auto since = Clock::now().time_since_epoch();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(since).count();
  KEEL_ASSERT(us >= 0);
  return static_cast<std::uint64_t>(us);
}

}  // namespace

TimeUs monotonic_now_us() { return microseconds_since_epoch<std::chrono::steady_clock>(); }

std::uint64_t realtime_now_us() { return microseconds_since_epoch<std::chrono::system_clock>(); }

std::chrono::steady_clock::time_point monotonic_time_point(TimeUs time) {
  KEEL_ASSERT(time != kNever);
  const auto us = std::chrono::microseconds(static_cast<std::int64_t>(time));
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(us));
}

}  // namespace keel::io
