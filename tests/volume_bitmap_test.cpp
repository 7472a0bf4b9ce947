// DirtyBitmap: ranges, counts, the page-following memory, persistence and the peer's words.
#include <gtest/gtest.h>

#include <array>

#include "core/volume/dirty_bitmap.hpp"

namespace keel::volume {
namespace {

constexpr std::uint64_t kTiB = std::uint64_t{1} << 40;

TEST(VolumeBitmap, RangesCoverEveryTouchedBlock) {
  DirtyBitmap bitmap(64 * kBlockBytes);
  EXPECT_EQ(bitmap.blocks(), 64u);
  bitmap.set_range(kBlockBytes - 1, 2);  // straddles blocks 0 and 1
  EXPECT_TRUE(bitmap.test(0));
  EXPECT_TRUE(bitmap.test(1));
  EXPECT_FALSE(bitmap.test(2));
  EXPECT_EQ(bitmap.set_count(), 2u);
  EXPECT_EQ(bitmap.dirty_bytes(), 2u * kBlockBytes);
  bitmap.set_range(0, kBlockBytes);  // already set: no change in count
  EXPECT_EQ(bitmap.set_count(), 2u);
  bitmap.clear_range(kBlockBytes, 1);
  EXPECT_FALSE(bitmap.test(1));
  EXPECT_EQ(bitmap.set_count(), 1u);
}

TEST(VolumeBitmap, MemoryFollowsDirtiness) {
  DirtyBitmap bitmap(kTiB);
  EXPECT_EQ(bitmap.blocks(), kTiB / kBlockBytes);
  EXPECT_EQ(bitmap.allocated_pages(), 0u);
  bitmap.set_range(0, 1);
  bitmap.set_range(kTiB / 2, kBlockBytes);
  bitmap.set_range(kTiB - kBlockBytes, kBlockBytes);
  EXPECT_EQ(bitmap.set_count(), 3u);
  EXPECT_LE(bitmap.allocated_pages(), 3u);
  bitmap.clear_range(kTiB / 2, kBlockBytes);
  EXPECT_EQ(bitmap.allocated_pages(), 2u);  // the page's last bit cleared: freed
  bitmap.clear_all();
  EXPECT_EQ(bitmap.allocated_pages(), 0u);
  EXPECT_EQ(bitmap.set_count(), 0u);
}

TEST(VolumeBitmap, SetAllAndNextSet) {
  DirtyBitmap bitmap(100 * kBlockBytes);  // not a whole word: no bits past the end
  bitmap.set_all();
  EXPECT_EQ(bitmap.set_count(), 100u);
  EXPECT_EQ(bitmap.next_set(99), 99u);
  bitmap.clear_range(0, 50 * kBlockBytes);
  EXPECT_EQ(bitmap.next_set(0), 50u);
  bitmap.clear_all();
  EXPECT_EQ(bitmap.next_set(0), bitmap.blocks());

  DirtyBitmap sparse(kTiB);
  const std::uint64_t far = kTiB / kBlockBytes - 7;
  sparse.set_range(far * kBlockBytes, kBlockBytes);
  EXPECT_EQ(sparse.next_set(0), far);
  EXPECT_EQ(sparse.next_set(far + 1), sparse.blocks());
}

TEST(VolumeBitmap, ChangedPagesRoundTripThroughBytes) {
  DirtyBitmap bitmap(3 * kBitsPerPage * kBlockBytes);
  bitmap.set_range(5 * kBlockBytes, 3 * kBlockBytes);
  bitmap.set_range((2 * kBitsPerPage + 9) * kBlockBytes, kBlockBytes);
  EXPECT_EQ(bitmap.take_changed_pages(), (std::vector<std::uint64_t>{0, 2}));
  EXPECT_TRUE(bitmap.take_changed_pages().empty());

  DirtyBitmap loaded(bitmap.blocks() * kBlockBytes);
  std::array<std::byte, kBitmapPageBytes> bytes{};
  for (std::uint64_t page = 0; page < bitmap.page_count(); ++page) {
    bitmap.page_bytes(page, bytes);
    loaded.load_page(page, bytes);
  }
  EXPECT_EQ(loaded.set_count(), 4u);
  EXPECT_TRUE(loaded.test(2 * kBitsPerPage + 9));
  EXPECT_EQ(loaded.nonzero_words(), bitmap.nonzero_words());
  EXPECT_TRUE(loaded.take_changed_pages().empty());  // loaded is what is on disk

  bitmap.clear_range(5 * kBlockBytes, 3 * kBlockBytes);  // page 0 freed: persisted all zero
  EXPECT_EQ(bitmap.take_changed_pages(), (std::vector<std::uint64_t>{0}));
  bitmap.page_bytes(0, bytes);
  for (std::byte b : bytes) EXPECT_EQ(b, std::byte{0});
}

TEST(VolumeBitmap, WordsAndMergeMakeTheUnion) {
  DirtyBitmap a(1000 * kBlockBytes);
  DirtyBitmap b(1000 * kBlockBytes);
  a.set_range(0, 10 * kBlockBytes);
  b.set_range(5 * kBlockBytes, 10 * kBlockBytes);
  b.set_range(900 * kBlockBytes, kBlockBytes);
  DirtyBitmap by_words(1000 * kBlockBytes);
  for (const auto& [index, word] : a.nonzero_words()) by_words.or_word(index, word);
  for (const auto& [index, word] : b.nonzero_words()) by_words.or_word(index, word);
  a.merge(b);
  EXPECT_EQ(a.set_count(), 16u);
  EXPECT_EQ(a.nonzero_words(), by_words.nonzero_words());
  DirtyBitmap tail(100 * kBlockBytes);
  tail.or_word(1, ~std::uint64_t{0});  // bits past block 99 are dropped
  EXPECT_EQ(tail.set_count(), 36u);
}

}  // namespace
}  // namespace keel::volume
