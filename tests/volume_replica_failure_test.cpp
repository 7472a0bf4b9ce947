// Replica under crashes: failover after a primary crash, a secondary crash, a resync target crash,
// and the asynchronous mode's peer loss.
#include <algorithm>

#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// Connected and in sync, then apart: A writes `count` scattered blocks B lacks.
void write_apart(World& world, RequestId count) {
  start_connected(world);
  world.disconnect();
  world.run();
  for (RequestId i = 1; i <= count; ++i) {
    world.a().r().on_write(i, i * 65536, pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
}

// Connects again and runs until A has resynced 10 of the blocks B lacks, not all of them.
void reconnect_until_resync_partway(World& world) {
  world.connect();
  while (world.a().r().status().resync_done_bytes < 10 * kBlockBytes) ASSERT_TRUE(world.step());
}

TEST(VolumeReplicaFailure, FailoverAfterPrimaryCrashOverwritesTheCrashedExtents) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  world.hold_wire[1] = true;  // the next write never reaches B
  world.a().r().on_write(2, 8192, pattern(4096, 2), false);
  world.run();
  world.hold_wire[1] = false;
  world.crash(0);
  world.run();
  // B takes over and writes elsewhere.
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  world.b().r().on_write(3, 10u << 20, pattern(4096, 3), false);
  world.run();
  EXPECT_EQ(world.b().error_of(3), 0);
  world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[8192], std::byte{0});  // the write B never had is gone
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_FALSE(world.a().r().persistent_state().primary_at_crash);
}

// The primary loses power before an acknowledged write was flushed, and comes back before the
// peer, which stayed up, was promoted. The peer holds that write: the resync of the crashed
// primary's activity-log extents must go from the peer, not spread the primary's loss to it.
// (Soak seeds 93006209 and 93010628.)
TEST(VolumeReplicaFailure, PrimaryPowerLossLosesNoWriteThePeerAcknowledged) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);  // acknowledged: both copies have it, neither flushed
  const std::byte written = (*pattern(4096, 1))[0];
  world.crash(0);
  // The power loss took A's disk cache, and the write with it.
  std::fill_n(world.a().disk.begin() + 8192, 4096, std::byte{0});
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().disk[8192], written);
  EXPECT_TRUE(world.same_disks());
  EXPECT_FALSE(world.a().r().persistent_state().primary_at_crash);
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  EXPECT_TRUE(world.b().r().serves_io());
}

// The same, when the peer's process also restarts before the crashed primary is back: once its
// copy was flushed, the peer remembers on disk that it holds every write the primary
// acknowledged, and is still the source.
TEST(VolumeReplicaFailure, ASurvivorThatRestartsIsStillTheSource) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  const std::byte written = (*pattern(4096, 1))[0];
  const std::uint64_t flushes = world.b().flushes;
  world.crash(0);
  std::fill_n(world.a().disk.begin() + 8192, 4096, std::byte{0});  // A's power loss
  world.run();
  EXPECT_EQ(world.b().flushes, flushes + 1);
  EXPECT_TRUE(world.b().r().persistent_state().survived_primary);
  world.crash(1);  // B's process only: its disk keeps the write
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().disk[8192], written);
  EXPECT_TRUE(world.same_disks());
  EXPECT_FALSE(world.b().r().persistent_state().survived_primary);  // settled by the resync
}

// The same, when the peer's agent crashes too before it sees the link go, so it neither flushed
// nor claimed anything. Within the same boot its caches survived: it recorded, before applying
// the primary's first write, that it was in sync in this boot, and is still the source. After a
// power loss of its own (another boot) that record proves nothing and the crashed primary is.
TEST(VolumeReplicaFailure, ASecondaryRestartedInTheSameBootIsStillTheSource) {
  for (const bool same_boot : {true, false}) {
    SCOPED_TRACE(same_boot ? "same boot" : "after a power loss");
    World world;
    world.b().config.boot = 7;
    world.rebuild(1);
    start_connected(world);
    world.a().r().on_write(1, 8192, pattern(4096, 1), false);
    world.run();
    ASSERT_EQ(world.a().error_of(1), 0);
    EXPECT_EQ(world.b().r().persistent_state().primary_sync_boot, 7u);
    const std::byte written = (*pattern(4096, 1))[0];
    world.crash(0);
    std::fill_n(world.a().disk.begin() + 8192, 4096, std::byte{0});  // A's power loss
    if (!same_boot) world.b().config.boot = 8;
    world.crash(1);  // before B ran anything: no flush, no survived_primary
    EXPECT_FALSE(world.b().saved_state.survived_primary);
    world.connect();
    world.run();
    EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
    EXPECT_TRUE(world.same_disks());
    EXPECT_EQ(world.a().disk[8192], same_boot ? written : std::byte{0});
  }
}

TEST(VolumeReplicaFailure, SecondaryCrashLosesNothingTheBitmapDoesNotCover) {
  World world;
  start_connected(world);
  world.b().hold_disk = true;  // B receives the writes but never applies them
  for (RequestId i = 1; i <= 5; ++i) {
    world.a().r().on_write(i, i * (1u << 20), pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
  world.b().hold_disk = false;
  world.crash(1);
  world.run();
  for (RequestId i = 1; i <= 5; ++i) EXPECT_EQ(world.a().error_of(i), 0);
  EXPECT_EQ(world.a().r().bitmap().set_count(), 5u);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
}

// The old primary's last writes may still be on their way to the disk when the secondary is
// promoted: its own writes to the same blocks go after them (and it serves only then), or an
// older write could land over a newer one.
TEST(VolumeReplicaFailure, ANewPrimaryAppliesTheOldPrimarysLastWritesBeforeItsOwn) {
  World world;
  start_connected(world);
  world.b().hold_disk = true;
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();  // B has the write, not yet on its disk
  world.crash(0);
  world.run();
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  EXPECT_FALSE(world.b().r().serves_io());
  world.b().r().on_write(2, 8192, pattern(4096, 2), false);
  world.run();
  const auto writes_queued =
      std::count_if(world.b().disk_queue.begin(), world.b().disk_queue.end(),
                    [](const Action& action) { return std::holds_alternative<DiskWrite>(action); });
  EXPECT_EQ(writes_queued, 1);  // the old primary's; B's own waits for it
  world.b().hold_disk = false;
  world.run();
  EXPECT_EQ(world.b().error_of(2), 0);
  EXPECT_TRUE(world.b().r().serves_io());
  EXPECT_EQ(world.b().disk[8192], (*pattern(4096, 2))[0]);
}

// Seed 947172: the new primary's metadata write hung, so the old primary's last write was still
// waiting to be applied when the old primary came back and the resync to it began. No resync
// read goes out until it has landed: read before, the block would be sent without it.
TEST(VolumeReplicaFailure, AResyncSourceReadsOnlyOnceTheOldPrimarysWritesHaveLanded) {
  World world;
  world.b().config.boot = 7;  // B records the boot it is in sync in before applying writes
  world.rebuild(1);
  world.b().hold_persist = true;  // so that record waits, and with it the write
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  world.crash(0);
  world.run();
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  world.connect();
  world.run();
  ASSERT_EQ(world.b().r().status().link, LinkState::SyncSource);
  const auto reads_queued =
      std::count_if(world.b().disk_queue.begin(), world.b().disk_queue.end(),
                    [](const Action& action) { return std::holds_alternative<DiskRead>(action); });
  EXPECT_EQ(reads_queued, 0);
  world.b().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[8192], (*pattern(4096, 1))[0]);
}

TEST(VolumeReplicaFailure, TargetCrashDuringResyncResumesFromTheBitmap) {
  World world;
  write_apart(world, 40);
  reconnect_until_resync_partway(world);
  ASSERT_EQ(world.b().r().status().link, LinkState::SyncTarget);
  world.crash(1);
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  EXPECT_FALSE(world.b().r().promote(false).ok());
  world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
  // The target keeps the bitmaps' union until its copy is durable (its safety net if acked
  // blocks were lost in the crash), so the second pass may copy the union again; never more.
  EXPECT_LE(world.a().r().status().resynced_blocks, 40u);
}

// The source of a resync puts its new generations on disk before it tells the target, which
// adopts them. A source that crashed in between would otherwise come back knowing less of its own
// history than the target did, and the next connection would take the target for the newer copy.
TEST(VolumeReplicaFailure, ResyncSourceTellsTheTargetOnlyWhatItsDiskHolds) {
  World world;
  write_apart(world, 8);
  world.a().hold_persist = true;  // from here A's metadata never reaches its disk
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);          // the blocks are copied
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);  // but B was not told
  world.crash(0);
  world.a().hold_persist = false;
  world.run();
  // A, primary again without B, writes; then they meet.
  ASSERT_TRUE(world.a().r().promote(false).ok());
  world.run();
  world.a().r().on_write(20, 0, pattern(4096, 20), false);
  world.run();
  EXPECT_EQ(world.a().error_of(20), 0);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// A resync source makes its own copy durable before it tells the target they are equal: what it
// sent may sit unflushed in its cache (written before a process crash, say), and a power loss
// would then take it from the source alone while both said they were in sync.
TEST(VolumeReplicaFailure, ResyncSourceFlushesItsCopyBeforeTheTargetIsUpToDate) {
  World world;
  write_apart(world, 8);
  world.connect();
  while (world.a().r().status().link != LinkState::Connected) ASSERT_TRUE(world.step());
  world.a().hold_disk = true;  // the source's last disk operation waits
  const std::uint64_t flushes = world.a().flushes;
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  world.a().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().flushes, flushes + 1);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// A resync target holds the writes it is sent, but after a power loss of the primary its copy is
// still Inconsistent, and the resync that follows runs from the primary's: a write acknowledged
// during the resync must be durable on the primary by itself. (Soak seed 99000776.)
TEST(VolumeReplicaFailure, WritesDuringAResyncAreDurableOnThePrimaryAlone) {
  World world;
  write_apart(world, 40);
  reconnect_until_resync_partway(world);
  ASSERT_EQ(world.a().r().status().link, LinkState::SyncSource);
  const std::uint64_t during = 3u << 20;
  world.a().r().on_write(100, during, pattern(4096, 100), false);
  world.run();
  ASSERT_EQ(world.a().error_of(100), 0);
  ASSERT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  const std::uint64_t after = (3u << 20) + 8192;  // the peer stands in again: no write-through
  world.a().r().on_write(101, after, pattern(4096, 101), false);
  world.run();
  ASSERT_EQ(world.a().error_of(101), 0);
  auto fua_at = [&](std::uint64_t offset) {
    for (const DiskWrite& write : world.a().disk_writes) {
      if (write.offset == offset) return write.fua;
    }
    ADD_FAILURE() << "no disk write at " << offset;
    return false;
  };
  EXPECT_TRUE(fua_at(during));
  EXPECT_FALSE(fua_at(after));
  EXPECT_TRUE(world.same_disks());
}

TEST(VolumeReplicaFailure, AsyncPrimaryKeepsServingAndRecordsThePeerOutdated) {
  World world(Mode::Async);
  start_connected(world);
  world.answer_outdate = false;
  world.disconnect();
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_FALSE(world.a().r().status().suspended);
  EXPECT_EQ(world.a().outdate_requests.size(), 1u);
  EXPECT_TRUE(world.a().r().bitmap().test(0));
}

TEST(VolumeReplicaFailure, StateSurvivesARestartAsSecondary) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  world.disconnect();
  world.crash(0);
  world.crash(1);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().r().bitmap().set_count(), 0u);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().resynced_blocks, 0u);
}

}  // namespace
}  // namespace keel::volume::testing
