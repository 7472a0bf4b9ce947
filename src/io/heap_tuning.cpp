#include "io/heap_tuning.hpp"

#include <malloc.h>

#include <cstdint>

namespace keel::io {

bool keep_buffers_in_the_heap() {
  // Setting either threshold also stops glibc from adapting them.
  const bool mmap_set = ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapMmapThresholdBytes)) == 1;
  const bool trim_set = ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeHeapBytes)) == 1;
  return mmap_set && trim_set;
}

std::size_t free_heap_bytes() { return ::mallinfo2().fordblks; }

void return_free_heap() { ::malloc_trim(0); }

namespace {
std::size_t distance(std::size_t a, std::size_t b) { return a > b ? a - b : b - a; }
}  // namespace

IdleHeapTrimmer::IdleHeapTrimmer(asio::io_context& io, std::chrono::milliseconds period)
    : timer_(io), period_(period) {}

void IdleHeapTrimmer::start() {
  running_ = true;
  timer_.expires_after(period_);
  timer_.async_wait([this](const asio::error_code& error) {
    if (error || !running_) return;
    look();
    start();
  });
}

void IdleHeapTrimmer::stop() {
  running_ = false;
  timer_.cancel();
}

void IdleHeapTrimmer::look() {
  const struct mallinfo2 heap = ::mallinfo2();
  const bool settled = distance(heap.fordblks, last_free_) <= kSettledBytes &&
                       distance(heap.uordblks, last_used_) <= kSettledBytes;
  last_free_ = heap.fordblks;
  last_used_ = heap.uordblks;
  if (!settled) {
    trimmed_ = false;
    return;
  }
  // Pages handed back in the middle of the heap still count as free: one trim per quiet spell.
  if (trimmed_ || heap.fordblks < kTrimFromBytes) return;
  return_free_heap();
  trimmed_ = true;
  ++trims_;
  const struct mallinfo2 after = ::mallinfo2();
  last_free_ = after.fordblks;
  last_used_ = after.uordblks;
}

}  // namespace keel::io
