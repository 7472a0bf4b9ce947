// After the agent's allocator settings, a large buffer comes from the heap, not a mapping of its
// own (which would be faulted in page by page and unmapped on free); the page-aligned data
// buffers (volume::Bytes) are aligned and, once freed, go back to the system like any other.
#include "io/heap_tuning.hpp"

#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "core/volume/peer_messages.hpp"
#include "core/volume/types.hpp"

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

// A stream of large requests, freed out of order while small blocks come and go between them (a
// volume under load): once they are all freed, the heap keeps at most kKeptFreeHeapBytes free.
// With aligned blocks split off the heap the usual way, 52 MiB more stayed free here for good.
TEST(HeapTuning, FreedAlignedBuffersGoBackToTheSystem) {
  ASSERT_TRUE(keep_buffers_in_the_heap());
  constexpr std::size_t kRequestBytes = 256 << 10;
  constexpr std::size_t kInFlight = 128;  // 32 MiB of requests at once
  constexpr std::size_t kSmallLive = 200;
  const std::size_t free_before = mallinfo2().fordblks;
  std::mt19937 random(7);
  {
    std::vector<std::shared_ptr<volume::Bytes>> requests;
    std::vector<std::unique_ptr<char[]>> small;
    for (int i = 0; i < 20000; ++i) {
      requests.push_back(std::make_shared<volume::Bytes>(kRequestBytes));
      small.push_back(std::make_unique<char[]>(100 + random() % 2000));
      if (small.size() > kSmallLive) small.erase(small.begin() + random() % small.size());
      if (requests.size() > kInFlight)
        requests.erase(requests.begin() + random() % requests.size());
    }
  }
  const std::size_t free_after = mallinfo2().fordblks;
  const std::size_t grown = free_after > free_before ? free_after - free_before : 0;
  EXPECT_LE(grown, kKeptFreeHeapBytes + (4u << 20))
      << "free heap grew by " << (grown >> 20) << " MiB";
}

// Writes through a volatile pointer: a block written and then freed would otherwise be left out
// by the compiler, with its allocation.
void touch_every_page(char* block, std::size_t bytes) {
  volatile char* pages = block;
  for (std::size_t at = 0; at < bytes; at += 4096) pages[at] = 1;
}

// After a burst, the heap keeps its free pages (under the trim threshold); once it has been
// quiet for a period the trimmer hands them back, once, and not again while nothing moves; when
// the block is used again and freed, again.
TEST(HeapTuning, TheIdleTrimmerHandsFreePagesBackOncePerQuietSpell) {
  ASSERT_TRUE(keep_buffers_in_the_heap());
  constexpr std::size_t kBurstBytes = 24u << 20;  // below kKeptFreeHeapBytes: kept when freed
  char* burst = static_cast<char*>(std::malloc(kBurstBytes));
  ASSERT_NE(burst, nullptr);
  // A block above the burst keeps it in the middle of the heap: trimmed, its pages are handed
  // back but it still counts as free, as the buffers freed between a volume's other blocks do.
  auto fence = std::make_unique<char[]>(4096);
  touch_every_page(fence.get(), 4096);
  touch_every_page(burst, kBurstBytes);
  std::free(burst);
  ASSERT_GE(free_heap_bytes(), IdleHeapTrimmer::kTrimFromBytes);
  const std::size_t resident_before = resident_bytes();

  asio::io_context io;
  IdleHeapTrimmer trimmer(io, std::chrono::milliseconds(10));
  trimmer.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (trimmer.trims() == 0 && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(trimmer.trims(), 1u);
  const std::size_t resident_after = resident_bytes();
  EXPECT_GE(resident_before, resident_after + (kBurstBytes * 3 / 4))
      << "resident " << (resident_before >> 20) << " MiB before, " << (resident_after >> 20)
      << " MiB after";

  io.run_for(std::chrono::milliseconds(100));  // ten more looks at a heap that does not move
  EXPECT_EQ(trimmer.trims(), 1u);

  burst = static_cast<char*>(std::malloc(kBurstBytes));
  ASSERT_NE(burst, nullptr);
  touch_every_page(burst, kBurstBytes);
  std::free(burst);
  const auto again = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (trimmer.trims() == 1 && std::chrono::steady_clock::now() < again) {
    io.run_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(trimmer.trims(), 2u) << "the pages used again were kept";
  trimmer.stop();
}
#endif

TEST(HeapTuning, LargeDataBuffersSitOnAPageBoundary) {
  for (const std::size_t bytes : {volume::kPageAlignedFromBytes, std::size_t{1} << 20,
                                  std::size_t{3 * 4096 + 17}, std::size_t{100}}) {
    volume::Bytes buffer(bytes, std::byte{0x5a});
    EXPECT_EQ(buffer.size(), bytes);
    EXPECT_EQ(buffer.front(), std::byte{0x5a});
    EXPECT_EQ(buffer.back(), std::byte{0x5a});
    if (bytes >= volume::kPageAlignedFromBytes) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % volume::kPageAlignBytes, 0u)
          << bytes << " bytes";
    }
  }
}

TEST(HeapTuning, TheLargestRequestStaysBelowTheMmapThreshold) {
  EXPECT_LE(volume::kMaxDataBytes, kHeapMmapThresholdBytes);
}

}  // namespace
}  // namespace keel::io
