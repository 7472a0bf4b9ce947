// Replica under local disk errors (EIO): which copy is trusted afterwards, and how the copies
// become equal again without waiting for the link to break.
#include <cerrno>

#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// The primary's own disk fails a write the peer applied: the application gets the error, and
// the primary copies its own content of the block to the peer at once, so that the copies are
// equal again without waiting for the link to break. (Sweep seed 13.)
TEST(VolumeReplicaDiskError, PrimaryWriteErrorIsResyncedAtOnce) {
  World world;
  start_connected(world);
  world.a().fail_next_write = EIO;
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), EIO);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.a().r().status().resynced_blocks, 1u);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// A resync chunk is read and sent; then an application write to the same block fails on the
// primary's disk (which keeps its old data) while the peer applies it. The chunk's ack comes
// after the failure marked the block: clearing it then would leave the copies different with
// status saying they are in sync. (Sweep seed 189.)
TEST(VolumeReplicaDiskError, ResyncAckKeepsABlockAFailedWriteMarkedAfterTheRead) {
  World world;
  start_connected(world);
  world.disconnect();
  world.run();
  world.a().r().on_write(1, 65536, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.connect();
  while (world.a().r().status().link != LinkState::SyncSource) ASSERT_TRUE(world.step());
  world.hold_wire[0] = true;  // B's ResyncAck waits
  world.run();
  ASSERT_EQ(world.a().r().status().link, LinkState::SyncSource);
  world.a().fail_next_write = EIO;
  world.a().r().on_write(2, 65536, pattern(4096, 2), false);
  world.run();
  world.hold_wire[0] = false;
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// B fails A's write: its answer waits until B's Inconsistent state is on its disk. Answered
// before, a crash of B in between would bring it back UpToDate without a write that A then
// acknowledged, and a promotion of B would lose it.
TEST(VolumeReplicaDiskError, APeersErrorAnswerWaitsForItsInconsistentStateOnDisk) {
  World world;
  start_connected(world);
  world.b().fail_next_write = EIO;
  world.b().hold_persist = true;
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);  // in memory
  EXPECT_EQ(world.b().saved_state.disk, DiskState::UpToDate);       // not yet on disk
  EXPECT_FALSE(world.a().has_completed(1)) << "acknowledged on an answer B could forget";
  world.b().hold_persist = false;
  world.run();
  EXPECT_EQ(world.b().saved_state.disk, DiskState::Inconsistent);
  EXPECT_EQ(world.a().error_of(1), 0);
}

// A connected pair, then four writes on A while B is apart: the next connection resyncs them.
void write_four_blocks_apart(World& world) {
  start_connected(world);
  world.disconnect();
  world.run();
  for (RequestId i = 1; i <= 4; ++i) {
    world.a().r().on_write(i, i * 65536, pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
}

// The primary writes apart from B, then resyncs it; the flush that precedes ResyncDone fails
// once. The primary's copy still holds every write it acknowledged: it must stay UpToDate
// (else the next handshake would make it the target of the older, outdated peer) and finish
// the resync. (Sweep seed 328.)
TEST(VolumeReplicaDiskError, ResyncSourceFlushErrorKeepsTheSourceUpToDate) {
  World world;
  write_four_blocks_apart(world);
  for (RequestId i = 1; i <= 4; ++i) ASSERT_EQ(world.a().error_of(i), 0);
  world.a().fail_next_flush = EIO;  // the resync source's flush before ResyncDone
  world.connect();
  world.run();
  EXPECT_EQ(world.a().fail_next_flush, 0);  // it was tried
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.a().r().serves_io());
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// The resync target's flush on ResyncDone fails once: the source has finished and copies
// nothing more, so the target must flush again (or connect again) rather than stay
// Inconsistent for as long as the link holds. (Sweep seed 3423.)
TEST(VolumeReplicaDiskError, ResyncTargetFlushErrorIsRetried) {
  World world;
  write_four_blocks_apart(world);
  world.b().fail_next_flush = EIO;  // the target's flush on ResyncDone
  world.connect();
  world.run();
  EXPECT_EQ(world.b().fail_next_flush, 0);  // it was tried
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
}

// Verify on equal copies while a read fails, on the primary's disk or on the peer's: a failed
// read is no difference. The chunk is read again and compared; nothing is reported as
// mismatched and nothing is resynced. (Sweep seed 1405: the peer's reads failed.)
void verify_with_a_failed_read(int failing_node) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(65536, 1), false);
  world.run();
  ASSERT_TRUE(world.same_disks());
  world.node(failing_node).fail_next_read = EIO;
  ASSERT_TRUE(world.a().r().start_verify().ok());
  world.run();
  EXPECT_EQ(world.node(failing_node).fail_next_read, 0);  // a verify read failed
  const ReplicaStatus status = world.a().r().status();
  EXPECT_FALSE(status.verify_running);
  EXPECT_EQ(status.verify_done_bytes, kTestVolumeBytes);
  EXPECT_EQ(status.verify_mismatched_blocks, 0u);
  EXPECT_EQ(status.resynced_blocks, 0u);
  EXPECT_EQ(status.out_of_sync_bytes, 0u);
}

TEST(VolumeReplicaDiskError, VerifyReadErrorOnThePrimaryIsNoDifference) {
  verify_with_a_failed_read(0);
}

TEST(VolumeReplicaDiskError, VerifyReadErrorOnThePeerIsNoDifference) {
  verify_with_a_failed_read(1);
}

}  // namespace
}  // namespace keel::volume::testing
