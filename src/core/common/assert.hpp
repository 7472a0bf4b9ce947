// Assertions that stay on in every build type.
//
// A failed KEEL_ASSERT is a programmer error (a broken invariant), never an operating error: it
// prints the condition and location and aborts. Operating errors (bad packets, bad config) are
// values; see result.hpp.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace keel::detail {
[[noreturn]] inline void assert_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "keel: assertion failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}
}  // namespace keel::detail

#define KEEL_ASSERT(condition)                                       \
  do {                                                               \
    if (!(condition)) [[unlikely]]                                   \
      ::keel::detail::assert_failed(#condition, __FILE__, __LINE__); \
  } while (false)
