#include "io/heap_tuning.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>

namespace keel::io {

bool keep_buffers_in_the_heap() {
  // Setting either threshold also stops glibc from adapting them.
  const bool mmap_set = ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHeapMmapThresholdBytes)) == 1;
  const bool trim_set = ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeHeapBytes)) == 1;
  return mmap_set && trim_set;
}

std::size_t free_heap_bytes() { return ::mallinfo2().fordblks; }

void return_free_heap() { ::malloc_trim(0); }

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size_pages = 0;
  std::size_t resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

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
  if (!settled || heap.fordblks < kTrimFromBytes) return;
  // Something to hand back since the last trim: blocks freed (the free count grew), or pages of
  // free blocks in use again (they still count as free once handed back, so only the resident
  // size tells). /proc unreadable: the free count alone.
  const std::size_t resident = resident_bytes();
  const bool regrown = resident >= resident_after_trim_ + kTrimFromBytes;
  const bool freed = heap.fordblks >= free_after_trim_ + kTrimFromBytes;
  if (trims_ > 0 && !regrown && !freed) return;
  return_free_heap();
  ++trims_;
  resident_after_trim_ = resident_bytes();
  free_after_trim_ = ::mallinfo2().fordblks;
}

}  // namespace keel::io
