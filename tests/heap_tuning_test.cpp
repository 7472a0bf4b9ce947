// After the agent's allocator settings, a large buffer comes from the heap, not a mapping of its
// own (which would be faulted in page by page and unmapped on free).
#include "io/heap_tuning.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "core/volume/peer_messages.hpp"

namespace keel::io {
namespace {

// Under AddressSanitizer malloc is the sanitizer's, which takes no glibc settings.
#if !defined(__SANITIZE_ADDRESS__)
TEST(HeapTuning, LargeBuffersComeFromTheHeap) {
  ASSERT_TRUE(keep_buffers_in_the_heap());
  constexpr std::size_t kBufferBytes = 16u << 20;  // far above glibc's default of 128 KiB
  const std::size_t mapped_before = mallinfo2().hblkhd;
  void* buffer = std::malloc(kBufferBytes);
  ASSERT_NE(buffer, nullptr);
  std::memset(buffer, 1, kBufferBytes);
  const std::size_t mapped_after = mallinfo2().hblkhd;
  std::free(buffer);
  EXPECT_EQ(mapped_after, mapped_before);
}
#endif

TEST(HeapTuning, TheLargestRequestStaysBelowTheMmapThreshold) {
  EXPECT_LE(volume::kMaxDataBytes, kHeapMmapThresholdBytes);
}

}  // namespace
}  // namespace keel::io
