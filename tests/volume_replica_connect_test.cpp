// Replica, the link: suspension when the peer is lost, bitmap resync, crash recovery through the
// activity log, split brain and its resolution, promotion rules, and online verify.
#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// The primary loses its peer with two writes unacknowledged, then writes alone.
void lose_peer_with_writes_in_flight(World& world) {
  start_connected(world);
  world.answer_outdate = false;
  world.hold_wire[0] = true;
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.a().r().on_write(2, 3u << 20, pattern(8192, 2), false);
  world.run();
  world.disconnect();
  world.run();
}

TEST(VolumeReplicaLink, LostPeerSuspendsUntilOutdatedIsRecorded) {
  World world;
  lose_peer_with_writes_in_flight(world);
  Node& a = world.a();
  EXPECT_TRUE(a.r().status().suspended);
  EXPECT_FALSE(a.has_completed(1));
  ASSERT_EQ(a.outdate_requests.size(), 1u);
  EXPECT_EQ(a.outdate_requests[0], a.r().status().generations.current);
  EXPECT_EQ(a.r().status().generations.bitmap, 0x1111u);
  a.r().on_write(3, 5u << 20, pattern(4096, 3), false);  // new writes wait too
  a.r().on_flush(4);
  world.run();
  EXPECT_TRUE(a.completed.empty());
  world.answer_outdate = true;
  world.run();
  EXPECT_FALSE(a.r().status().suspended);
  EXPECT_TRUE(a.r().status().peer_outdated);
  for (RequestId request = 1; request <= 4; ++request) EXPECT_EQ(a.error_of(request), 0);
  const DirtyBitmap& bitmap = a.r().bitmap();
  EXPECT_TRUE(bitmap.test(0));
  EXPECT_TRUE(bitmap.test((3u << 20) / kBlockBytes + 1));
  EXPECT_TRUE(bitmap.test((5u << 20) / kBlockBytes));
  EXPECT_EQ(bitmap.set_count(), 4u);
}

TEST(VolumeReplicaLink, ReconnectResyncsOnlyTheBitmapsBlocks) {
  World world;
  lose_peer_with_writes_in_flight(world);
  world.answer_outdate = true;
  world.hold_wire[0] = false;
  world.a().r().on_write(3, 7u << 20, pattern(4096, 3), false);
  world.run();
  const std::uint64_t dirty = world.a().r().bitmap().set_count();
  EXPECT_EQ(dirty, 4u);
  world.b().r().on_told_outdated();
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::Outdated);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().resynced_blocks, dirty);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().generations, world.b().r().status().generations);
  EXPECT_EQ(world.a().r().status().generations.bitmap, 0u);
  EXPECT_EQ(world.a().r().bitmap().set_count(), 0u);
  EXPECT_FALSE(world.a().r().status().peer_outdated);
  // Replication goes on normally.
  world.a().r().on_write(4, 0, pattern(4096, 4), false);
  world.run();
  EXPECT_EQ(world.a().error_of(4), 0);
  EXPECT_TRUE(world.same_disks());
}

TEST(VolumeReplicaLink, ResyncNeverOverwritesANewerApplicationWrite) {
  World world;
  lose_peer_with_writes_in_flight(world);
  world.answer_outdate = true;
  world.hold_wire[0] = false;
  world.run();
  world.a().hold_disk = true;  // the resync reads stay in flight
  world.connect();
  world.run();
  ASSERT_EQ(world.a().r().status().link, LinkState::SyncSource);
  ASSERT_FALSE(world.a().disk_queue.empty());
  world.a().r().on_write(5, 0, pattern(4096, 9), false);  // over a block being read
  world.a().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(5), 0);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.b().disk[0], (*pattern(4096, 9))[0]);
}

// A write reaches the primary's disk but never the peer: then the primary dies.
void primary_crashes_with_an_unreplicated_write(World& world) {
  start_connected(world);
  world.a().r().on_write(1, 4096, pattern(4096, 1), false);
  world.run();
  world.hold_wire[1] = true;
  world.a().r().on_write(2, (4u << 20) + 8192, pattern(4096, 2), false);
  world.run();
  EXPECT_FALSE(world.same_disks());
  world.hold_wire[1] = false;
  world.crash(0);
  EXPECT_TRUE(world.a().saved_state.primary_at_crash);
  const auto extents = world.a().saved_extents.size();
  EXPECT_EQ(world.a().r().bitmap().set_count(), extents * (kExtentBytes / kBlockBytes));
}

// The peer stayed up: it holds every write the primary acknowledged, so it is the source of the
// crashed primary's activity-log extents, and the write it never had (never acknowledged) goes.
TEST(VolumeReplicaLink, PrimaryCrashResyncsTheActivityLogExtents) {
  World world;
  primary_crashes_with_an_unreplicated_write(world);
  const auto extents = world.a().saved_extents.size();
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[(4u << 20) + 8192], std::byte{0});
  EXPECT_EQ(world.b().r().status().resynced_blocks, extents * (kExtentBytes / kBlockBytes));
  EXPECT_FALSE(world.a().r().persistent_state().primary_at_crash);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
}

// The peer restarted too (both failed): neither knows what its own disk lost, and the crashed
// primary's copy, the one the application saw, is the source of its extents.
TEST(VolumeReplicaLink, PrimaryCrashWithoutASurvivorResyncsFromTheCrashedPrimary) {
  World world;
  primary_crashes_with_an_unreplicated_write(world);
  const auto extents = world.a().saved_extents.size();
  world.crash(1);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.b().disk[(4u << 20) + 8192], (*pattern(4096, 2))[0]);
  EXPECT_EQ(world.a().r().status().resynced_blocks, extents * (kExtentBytes / kBlockBytes));
  EXPECT_FALSE(world.a().r().persistent_state().primary_at_crash);
}

// Seed 1142896: both copies crashed as primary on one generation (B was promoted while A was
// down and crashed before the ring answered), and a record from B's promotion reached A. The
// UpToDate copy is the source of the marked blocks, not the Outdated one of the lower node id,
// which in that seed had also lost unflushed writes to a power loss.
TEST(VolumeReplicaLink, BothCrashedAsPrimaryTheUpToDateCopyIsTheSource) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 4096, pattern(4096, 1), false);
  world.run();
  world.crash(0);
  world.answer_outdate = false;  // the ring records nothing before B crashes
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  world.crash(1);
  ASSERT_TRUE(world.a().saved_state.primary_at_crash);
  ASSERT_TRUE(world.b().saved_state.primary_at_crash);
  const Generation current = world.b().r().status().generations.current;
  ASSERT_EQ(world.a().r().status().generations.current, current);
  world.a().r().on_told_outdated(current ^ 1);
  world.run();
  ASSERT_EQ(world.a().r().status().disk, DiskState::Outdated);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_GT(world.b().r().status().resynced_blocks, 0u) << "B, UpToDate, is the source";
  EXPECT_EQ(world.a().r().status().resynced_blocks, 0u);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// A writes alone, then B is forced primary alone and writes too.
void split_brain(World& world) {
  start_connected(world);
  world.disconnect();
  world.run();
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  ASSERT_FALSE(world.b().r().promote(false).ok());  // the ring told B it is outdated
  ASSERT_TRUE(world.b().r().promote(true).ok());    // a person insists
  world.run();
  world.b().r().on_write(2, 1u << 20, pattern(4096, 2), false);
  world.run();
  EXPECT_EQ(world.b().error_of(2), 0);
  world.connect();
  world.run();
}

TEST(VolumeReplicaLink, SplitBrainIsRefused) {
  World world;
  split_brain(world);
  for (int i = 0; i < 2; ++i) {
    const ReplicaStatus status = world.node(i).r().status();
    EXPECT_EQ(status.link, LinkState::SplitBrain);
    EXPECT_NE(status.refused_reason.find("--discard-local"), std::string::npos);
  }
  EXPECT_FALSE(world.connected());
  EXPECT_FALSE(world.same_disks());
}

TEST(VolumeReplicaLink, DiscardLocalResolvesSplitBrain) {
  World world;
  split_brain(world);
  ASSERT_FALSE(world.b().r().discard_local_data().ok());  // still primary
  ASSERT_TRUE(world.a().r().discard_local_data().ok());   // A's write is thrown away
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[0], std::byte{0});  // A's own write is gone
  EXPECT_FALSE(world.a().r().persistent_state().discard_local);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
}

// A discard asked for on the node that must be the source (its peer is Inconsistent) does not
// apply, and is dropped so that it cannot decide a later split brain.
TEST(VolumeReplicaLink, ADiscardOnTheSourceIsDropped) {
  World world;
  world.a().saved_state.discard_local = true;
  world.a().disk[0] = std::byte{7};
  world.b().saved_state.disk = DiskState::Inconsistent;
  world.rebuild(0);
  world.rebuild(1);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_FALSE(world.a().r().persistent_state().discard_local);
  EXPECT_EQ(world.b().disk[0], std::byte{7}) << "the source's data was kept and copied";
}

TEST(VolumeReplicaLink, PromotionRefusesStaleCopiesUnlessForced) {
  World world;
  start_connected(world);
  world.disconnect();
  world.run();
  world.b().r().on_told_outdated();
  world.run();
  // The peer is gone: B alone, outdated.
  const auto refused = world.b().r().promote(false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("Outdated"), std::string::npos);
  ASSERT_TRUE(world.b().r().promote(true).ok());
  world.run();
  EXPECT_TRUE(world.b().noticed("forced promotion of an Outdated copy"));
  EXPECT_TRUE(world.b().r().serves_io());
  EXPECT_FALSE(world.b().outdate_requests.empty() && !world.b().r().status().peer_outdated);
}

TEST(VolumeReplicaLink, PromotionRefusesWhileThePeerIsPrimary) {
  World world;
  start_connected(world);
  const auto refused = world.b().r().promote(false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("primary"), std::string::npos);
}

TEST(VolumeReplicaLink, ForcedInconsistentCopyFullSyncsThePeer) {
  World world;
  for (int i = 0; i < 2; ++i) {
    world.node(i).saved_state.disk = DiskState::Inconsistent;
    world.rebuild(i);
  }
  world.a().disk[100] = std::byte{7};  // whatever A holds becomes the data
  world.connect();
  world.run();
  ASSERT_FALSE(world.a().r().promote(false).ok());
  ASSERT_TRUE(world.a().r().promote(true).ok());
  world.run();
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().resynced_blocks, kTestVolumeBytes / kBlockBytes);
  EXPECT_TRUE(world.same_disks());
}

// Both copies as `keel volume create` leaves new ones: empty, UpToDate, blank.
void create_blank_pair(World& world) {
  for (int i = 0; i < 2; ++i) {
    world.node(i).saved_state.blank = true;
    world.rebuild(i);
  }
}

// Node i's disk is replaced and `keel volume create` run again: zeroes, blank, the empty state.
void recreate(World& world, int i) {
  Node& n = world.node(i);
  n.disk.assign(kTestVolumeBytes, std::byte{0});
  n.saved_state = PersistentState{};
  n.saved_state.generations.current = 0x1111;
  n.saved_state.disk = DiskState::UpToDate;
  n.saved_state.blank = true;
  n.saved_pages.clear();
  n.saved_extents.clear();
  world.rebuild(i);
}

// A pair that only ever wrote while connected still has the empty generation it was created
// with; a copy re-created on a new disk has it too, yet holds none of the data.
TEST(VolumeReplicaLink, ARecreatedCopyIsFullySyncedFromAPairThatWroteWhileConnected) {
  World world;
  create_blank_pair(world);
  start_connected(world);
  world.a().r().on_write(1, 1u << 20, pattern(4096, 1), true);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  EXPECT_FALSE(world.a().r().persistent_state().blank);
  EXPECT_FALSE(world.b().r().persistent_state().blank);
  EXPECT_FALSE(world.b().saved_state.blank);
  EXPECT_EQ(world.a().r().status().generations.current, 0x1111u);
  world.disconnect();
  world.run();
  recreate(world, 1);
  world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().resynced_blocks, kTestVolumeBytes / kBlockBytes);
  EXPECT_TRUE(world.same_disks());
  EXPECT_FALSE(world.b().r().persistent_state().blank);
}

// The same after a clean stop of both: equal generations, so without the flag nothing is copied.
TEST(VolumeReplicaLink, ARecreatedCopyFacingAStoppedPrimaryIsFullySynced) {
  World world;
  create_blank_pair(world);
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), true);
  world.run();
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  world.disconnect();
  world.run();
  recreate(world, 1);
  world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
}

// A secondary that applied a primary's writes says on disk that it is no longer blank first:
// crashed blank with flushed writes, it would be taken for an empty copy. In async mode (and in
// sync mode without a boot id) no other metadata write comes before those writes.
TEST(VolumeReplicaLink, AFollowerIsNotBlankOnDiskBeforeItAppliesAWrite) {
  World world(Mode::Async);
  create_blank_pair(world);
  world.connect();
  world.run();
  world.b().hold_persist = true;
  ASSERT_TRUE(world.a().r().promote(false).ok());
  world.a().r().on_write(1, 0, pattern(4096, 9), false);
  world.a().r().on_flush(2);
  world.run();
  EXPECT_TRUE(world.b().saved_state.blank);
  EXPECT_EQ(world.b().disk[0], std::byte{0}) << "applied a write while blank on disk";
  world.b().hold_persist = false;
  world.run();
  EXPECT_FALSE(world.b().saved_state.blank);
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_TRUE(world.same_disks());
}

// A blank copy may be a replaced disk whose peer holds the volume: alone it is promoted only with
// --force; facing a blank peer, nothing was ever written, and it is.
TEST(VolumeReplicaLink, ABlankCopyIsPromotedAloneOnlyWithForce) {
  World world;
  create_blank_pair(world);
  const auto refused = world.a().r().promote(false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("has not met its peer"), std::string::npos);
  world.connect();
  world.run();
  ASSERT_TRUE(world.a().r().promote(false).ok());
  world.run();
  EXPECT_TRUE(world.a().r().serves_io());

  World alone;
  create_blank_pair(alone);
  ASSERT_TRUE(alone.a().r().promote(true).ok());
  alone.run();
  EXPECT_TRUE(alone.a().noticed("forced promotion of a new, empty copy"));
  EXPECT_FALSE(alone.a().saved_state.blank);
}

TEST(VolumeReplicaLink, VerifyFindsAPlantedDifferenceAndRepairsIt) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(65536, 1), false);
  world.run();
  world.b().disk[(6u << 20) + 17] = std::byte{0x5a};  // silent corruption on the secondary
  ASSERT_FALSE(world.b().r().start_verify().ok());
  ASSERT_TRUE(world.a().r().start_verify().ok());
  world.run();
  const ReplicaStatus status = world.a().r().status();
  EXPECT_FALSE(status.verify_running);
  EXPECT_EQ(status.verify_done_bytes, kTestVolumeBytes);
  EXPECT_EQ(status.verify_mismatched_blocks, (64u << 10) / kBlockBytes);  // one chunk
  EXPECT_EQ(status.link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());  // the resync pass after the walk copied the chunk
}

TEST(VolumeReplicaLink, ResyncIsRateLimitedByTicks) {
  World world;
  for (int i = 0; i < 2; ++i) {
    world.node(i).config.resync_rate_bytes_s = 1u << 20;  // 1 MiB/s, 64 KiB chunks
    world.rebuild(i);
  }
  world.b().saved_state.disk = DiskState::Inconsistent;
  world.b().saved_state.generations.current = 0x2222;
  world.rebuild(1);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::SyncSource);
  EXPECT_EQ(world.a().r().status().resync_done_bytes, 64u << 10);  // one chunk at time 0
  TimeUs now = 0;
  int ticks = 0;
  while (world.a().r().status().link == LinkState::SyncSource && ticks < 1000) {
    now = world.a().r().next_deadline();
    ASSERT_NE(now, kNever);
    world.a().r().on_tick(now);
    world.run();
    ++ticks;
  }
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_GE(now, 15'000'000u);  // 16 MiB at 1 MiB/s
  EXPECT_TRUE(world.same_disks());
}

}  // namespace
}  // namespace keel::volume::testing
