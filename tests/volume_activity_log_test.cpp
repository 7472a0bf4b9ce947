// ActivityLog: admission, LRU eviction of idle extents only, Full, load.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/volume/activity_log.hpp"

namespace keel::volume {
namespace {

using Admit = ActivityLog::Admit;

TEST(VolumeActivityLog, AddsThenFindsExtents) {
  ActivityLog log(2);
  std::optional<std::uint64_t> evicted;
  EXPECT_EQ(log.begin_write(7, evicted), Admit::AddedNeedsPersist);
  EXPECT_FALSE(evicted);
  EXPECT_EQ(log.begin_write(7, evicted), Admit::AlreadyIn);
  EXPECT_TRUE(log.contains(7));
  EXPECT_EQ(log.size(), 1u);
  log.end_write(7);
  log.end_write(7);
}

TEST(VolumeActivityLog, EvictsTheLeastRecentlyUsedIdleExtent) {
  ActivityLog log(2);
  std::optional<std::uint64_t> evicted;
  EXPECT_EQ(log.begin_write(1, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(log.begin_write(2, evicted), Admit::AddedNeedsPersist);
  log.end_write(2);
  // 1 is older but busy: 2 goes.
  EXPECT_EQ(log.begin_write(3, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(evicted, 2u);
  EXPECT_FALSE(log.contains(2));
  EXPECT_EQ(log.size(), 2u);
  // Both busy now: full.
  EXPECT_EQ(log.begin_write(4, evicted), Admit::Full);
  EXPECT_FALSE(log.contains(4));
  log.end_write(1);
  EXPECT_EQ(log.begin_write(4, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(evicted, 1u);
  log.end_write(3);
  log.end_write(4);
}

TEST(VolumeActivityLog, AnExtentPinnedForThePeerStays) {
  ActivityLog log(2);
  std::optional<std::uint64_t> evicted;
  EXPECT_EQ(log.begin_write(1, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(log.begin_write(2, evicted), Admit::AddedNeedsPersist);
  log.pin_for_peer(1);
  log.pin_for_peer(2);
  log.pin_for_peer(2);
  log.end_write(1);
  log.end_write(2);
  EXPECT_EQ(log.begin_write(3, evicted), Admit::Full);  // idle, but the peer may lack both
  EXPECT_FALSE(log.prefetch(3));
  log.unpin_for_peer(2);
  EXPECT_EQ(log.begin_write(3, evicted), Admit::Full);  // 2 is still pinned once
  log.unpin_for_peer(2);
  EXPECT_EQ(log.begin_write(3, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(evicted, 2u);  // 1 is older, but still pinned
  EXPECT_TRUE(log.contains(1));
  log.unpin_for_peer(1);
  log.end_write(3);
}

TEST(VolumeActivityLog, CountsEveryExtentThatLeavesTheLog) {
  ActivityLog log(2);
  std::optional<std::uint64_t> evicted;
  EXPECT_EQ(log.begin_write(1, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(log.begin_write(2, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(log.departures(), 0u);
  log.end_write(1);
  log.end_write(2);
  EXPECT_EQ(log.begin_write(3, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(log.departures(), 1u);
  log.end_write(3);
  EXPECT_TRUE(log.prefetch(4));  // evicts too
  EXPECT_EQ(log.departures(), 2u);
  log.load({7, 8, 9});              // one more than fits
  EXPECT_EQ(log.departures(), 4u);  // the cleared log, and the extent load() left out
}

TEST(VolumeActivityLog, LoadKeepsOrderAndCapacity) {
  ActivityLog log(3);
  log.load({9, 8, 7, 6});
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.extents(), (std::vector<std::uint64_t>{9, 8, 7}));
  std::optional<std::uint64_t> evicted;
  EXPECT_EQ(log.begin_write(5, evicted), Admit::AddedNeedsPersist);
  EXPECT_EQ(evicted, 7u);  // the least recent of the loaded ones
  log.end_write(5);
  log.clear();
  EXPECT_EQ(log.size(), 0u);
}

}  // namespace
}  // namespace keel::volume

namespace keel::volume {
namespace {

TEST(VolumeActivityLog, PrefetchAddsIdleExtentsAndEvictsOnlyIdleOnes) {
  ActivityLog log(2);
  std::optional<std::uint64_t> evicted;
  ASSERT_EQ(log.begin_write(10, evicted), ActivityLog::Admit::AddedNeedsPersist);
  EXPECT_TRUE(log.prefetch(11));
  EXPECT_FALSE(log.prefetch(11));  // already in
  EXPECT_TRUE(log.contains(11));
  // Full, with 10 busy: a prefetch may evict only the idle 11.
  EXPECT_TRUE(log.prefetch(12));
  EXPECT_FALSE(log.contains(11));
  EXPECT_TRUE(log.contains(10));
  // A prefetched extent needs no write of its own: the next write finds it in.
  ASSERT_EQ(log.begin_write(12, evicted), ActivityLog::Admit::AlreadyIn);
  // Both busy now: nothing can be prefetched.
  EXPECT_FALSE(log.prefetch(13));
  EXPECT_EQ(log.size(), 2u);
}

}  // namespace
}  // namespace keel::volume
