// Replica under local disk errors (EIO): which copy is trusted afterwards, and how the copies
// become equal again without waiting for the link to break.
#include <algorithm>
#include <cerrno>

#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// A gave way to B after its disk failed: B is promoted, and the next connection resyncs A from
// it, which clears what A's status said about the failure.
void promote_b_and_expect_a_resynced(World& world) {
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.a().r().status().disk_error, "") << "the resync rewrote the copy";
  EXPECT_TRUE(world.same_disks());
}

// The primary's own disk fails a write the peer applied. The application gets the error; the
// peer is in sync and holds every acknowledged write, so the primary, whose disk is failing,
// gives way to it (as after a failed flush): Inconsistent, demoted, and resynced from the peer
// once that is promoted. (Sweep seed 13 once left the copies different until the link broke.)
TEST(VolumeReplicaDiskError, APrimaryWriteErrorStepsDownToThePeerInSync) {
  World world;
  start_connected(world);
  world.a().fail_next_write = EIO;
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), EIO);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().saved_state.disk, DiskState::Inconsistent);
  EXPECT_NE(world.a().r().status().disk_error.find("a write at offset 8192 failed"),
            std::string::npos);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  promote_b_and_expect_a_resynced(world);
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

// The resync target's flush on ResyncDone fails once. Flushing again could succeed without the
// pages the failed flush dropped, so the target does not: it stays Inconsistent and ends the
// connection, and the next one resyncs it again (in full: the source's generations moved on with
// the pass it finished). (Sweep seed 3423 once left it Inconsistent for as long as the link held.)
TEST(VolumeReplicaDiskError, ResyncTargetFlushErrorResyncsThePassAgain) {
  World world;
  write_four_blocks_apart(world);
  world.b().fail_next_flush = EIO;  // the target's flush on ResyncDone
  world.connect();
  world.run();
  EXPECT_EQ(world.b().fail_next_flush, 0);  // it was tried
  EXPECT_FALSE(world.connected()) << "the target ended the connection";
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  EXPECT_EQ(world.b().saved_state.disk, DiskState::Inconsistent);
  EXPECT_EQ(world.b().r().status().out_of_sync_bytes, 4 * kBlockBytes);
  const std::size_t writes_before = world.b().disk_writes.size();
  world.connect();
  world.run();
  EXPECT_GE(world.b().disk_writes.size(), writes_before + 4) << "the four blocks again";
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().out_of_sync_bytes, 0u);
  EXPECT_TRUE(world.same_disks());
}

// The primary's flush fails while its peer is in sync. Its disk may have dropped the writes
// that flush covered, and a later flush would succeed without them; the peer holds them all.
// So the primary marks itself Inconsistent (on disk before it says Secondary), fails the
// flush, demotes, and ends the connection; the next one resyncs it from the peer.
TEST(VolumeReplicaDiskError, APrimaryWhoseFlushFailsStepsDownToItsPeer) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().fail_next_flush = EIO;
  world.a().r().on_flush(2);
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().saved_state.disk, DiskState::Inconsistent);
  EXPECT_FALSE(world.a().saved_state.primary_at_crash);
  EXPECT_FALSE(world.connected());
  EXPECT_TRUE(world.a().noticed("stepping down"));
  EXPECT_NE(world.a().r().status().disk_error.find("gave way to the peer"), std::string::npos);
  world.a().r().on_write(3, 0, pattern(4096, 3), false);
  world.run();
  EXPECT_EQ(world.a().error_of(3), ESHUTDOWN);
  promote_b_and_expect_a_resynced(world);
}

// The primary's disk fails, metadata included: the update saying that it gave way is never
// written, so it stays primary, serving nothing, until the shell's journal holds the update
// (which a restart applies); then it says Secondary, so that the peer can be promoted.
TEST(VolumeReplicaDiskError, AStepDownEndsOnceTheJournalHoldsItsMark) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().hold_persist = true;
  world.a().fail_next_flush = EIO;
  world.a().r().on_flush(2);
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  ASSERT_TRUE(world.a().noticed("stepping down"));
  EXPECT_EQ(world.a().r().status().role, Role::Primary) << "the mark is on no disk yet";
  EXPECT_FALSE(world.a().r().serves_io());
  ASSERT_FALSE(world.a().persist_queue.empty());
  world.a().r().on_journaled(world.a().persist_queue.back().id);
  world.run();
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_FALSE(world.connected());
  EXPECT_EQ(world.a().saved_state.disk, DiskState::UpToDate) << "still held: only journaled";
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().saved_state.disk, DiskState::Inconsistent);
  promote_b_and_expect_a_resynced(world);
}

// The agent flushes the data before an activity-log update stops naming an extent; when that
// fails, the disk may have dropped writes just as after a failed DiskFlush: the primary in sync
// with its peer steps down.
TEST(VolumeReplicaDiskError, AFailedDataFlushBeforeALogUpdateStepsThePrimaryDown) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().r().on_data_flush_failed(EIO);
  world.run();
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().saved_state.disk, DiskState::Inconsistent);
  EXPECT_FALSE(world.connected());
}

// The log update that drops an extent waits for its flush of the data; when that flush fails,
// the dropped extent's writes are at risk too, though the log in memory no longer names it: the
// primary stepping down marks it for the resync from the peer.
TEST(VolumeReplicaDiskError, AFailedDataFlushMarksTheExtentItsLogUpdateDropped) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);             // extent 0
  world.a().r().on_write(2, kExtentBytes, pattern(4096, 2), false);  // extent 1
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  ASSERT_EQ(world.a().error_of(2), 0);
  world.a().hold_persist = true;
  world.a().r().on_write(3, 2 * kExtentBytes, pattern(4096, 3), false);  // evicts extent 0
  world.run();
  ASSERT_FALSE(world.a().persist_queue.empty());
  ASSERT_TRUE(world.a().persist_queue.back().flush_data_first);
  const auto& log = world.a().persist_queue.back().activity_extents;
  ASSERT_EQ(std::count(log.begin(), log.end(), 0u), 0) << "extent 0 left the log";
  world.a().r().on_data_flush_failed(EIO);
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_TRUE(world.a().r().bitmap().test(0)) << "extent 0's write is marked for the resync";
  EXPECT_TRUE(world.a().r().bitmap().test(kExtentBytes / kBlockBytes));
}

// The link breaks while a primary that failed a flush steps down: it must not have the peer,
// whose copy is the good one, recorded outdated, nor acknowledge on its own copy what the peer
// may lack. Its writes in flight fail.
TEST(VolumeReplicaDiskError, APrimarySteppingDownNeverOutdatesItsPeer) {
  World world;
  start_connected(world);
  world.a().hold_disk = true;
  world.a().r().on_flush(1);
  world.a().r().on_write(2, 8192, pattern(4096, 2), false);
  world.run();
  ASSERT_EQ(world.a().disk_queue.size(), 2u);  // the flush, then the write
  world.a().fail_next_flush = EIO;
  world.disk_one(0);
  world.run();
  ASSERT_TRUE(world.a().noticed("stepping down"));
  world.disconnect();
  world.a().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), EIO);
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_EQ(world.b().outdated_as_of, 0u);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().saved_state.disk, DiskState::Inconsistent);
}

// The primary's write fails and it begins to give way, but the peer then fails the flush of
// the demote's barrier: the peer lacks acknowledged writes now, so the primary keeps its copy
// UpToDate (ending an ordinary demote) and the peer is resynced from it.
TEST(VolumeReplicaDiskError, APrimaryKeepsItsCopyWhenThePeerFailsWhileItGivesWay) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().fail_next_write = EIO;
  world.b().fail_next_flush = EIO;  // the barrier of the demote's flush
  world.a().r().on_write(2, 8192, pattern(4096, 2), false);
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_TRUE(world.a().noticed("stepping down"));
  EXPECT_TRUE(world.a().noticed("the peer's disk failed too"));
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_EQ(world.a().saved_state.disk, DiskState::UpToDate);
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  ASSERT_TRUE(world.a().r().promote(false).ok());
  world.run();
  if (!world.connected()) world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// Two flushes in flight; the first fails, the second's disk flush succeeds. Issued before the
// first failed, the second may not have written what the first dropped: it fails too.
TEST(VolumeReplicaDiskError, AFlushInFlightWhenAnEarlierOneFailsFailsToo) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  world.a().hold_disk = true;
  world.a().r().on_flush(2);
  world.a().r().on_flush(3);
  world.run();
  world.a().fail_next_flush = EIO;
  world.a().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_EQ(world.a().error_of(3), EIO);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
}

// Without a peer in sync the primary's copy is the volume's best: a failed flush is reported
// and the primary goes on serving, as a local disk would.
TEST(VolumeReplicaDiskError, APrimaryWithoutItsPeerKeepsServingAfterAFailedFlush) {
  World world;
  start_connected(world);
  world.disconnect();
  world.run();
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().fail_next_flush = EIO;
  world.a().r().on_flush(2);
  world.a().r().on_flush(3);
  world.run();
  EXPECT_EQ(world.a().error_of(2), EIO);
  EXPECT_EQ(world.a().error_of(3), 0);
  EXPECT_EQ(world.a().r().status().role, Role::Primary);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_NE(world.a().r().status().disk_error.find("may be lost"), std::string::npos);
}

// A checkpoint's flush on the secondary covers whatever had completed when it was issued,
// writes of the next epoch too. When it fails, those may be dropped, and their own barrier's
// flush succeeds without them: that barrier's ack reports the failure as well, so the primary
// marks those writes and copies them again.
TEST(VolumeReplicaDiskError, AFailedCheckpointFlushFailsTheBarrierOfTheWritesItCovered) {
  World world;
  world.a().config.max_unacked_epoch_writes = 2;
  world.crash(0);
  start_connected(world);
  world.b().hold_disk = true;
  for (RequestId i = 1; i <= 3; ++i) {  // a checkpoint after the second write
    world.a().r().on_write(i, i << 20, pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
  ASSERT_EQ(world.b().disk_queue.size(), 3u);
  for (int i = 0; i < 3; ++i) world.disk_one(1);
  world.run();
  ASSERT_EQ(world.b().disk_queue.size(), 1u);  // the checkpoint's flush, covering the third
  ASSERT_TRUE(std::holds_alternative<DiskFlush>(world.b().disk_queue.front()));
  world.b().fail_next_flush = EIO;
  world.b().hold_disk = false;
  world.a().r().on_flush(4);  // the barrier that ends the third write's epoch
  world.run();
  EXPECT_TRUE(world.b().noticed("covers writes a failed flush may have dropped"));
  const auto third = std::count_if(world.b().disk_writes.begin(), world.b().disk_writes.end(),
                                   [](const DiskWrite& w) { return w.offset == (3u << 20); });
  EXPECT_EQ(third, 2) << "the third write, then its block copied again";
}

// A primary without its peer demotes, and the demote's own flush fails: its hot extents may
// lack writes it acknowledged, so it keeps primary_at_crash, and the next connection resyncs
// them as after a crash.
TEST(VolumeReplicaDiskError, ADemoteWhoseFlushFailsKeepsTheHotExtentsMarked) {
  World world;
  start_connected(world);
  world.disconnect();
  world.run();
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  world.a().fail_next_flush = EIO;
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_TRUE(world.a().saved_state.primary_at_crash);
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
