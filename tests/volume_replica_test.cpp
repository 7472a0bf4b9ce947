// Replica, the application path: synchronous writes, flushes and barriers, FUA, the secondary's
// epoch order, overlapping writes, async mode, and refusals.
#include <algorithm>
#include <cerrno>

#include "core/volume/replica_core.hpp"
#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

TEST(VolumeReplica, SyncWriteCompletesOnlyAfterThePeerAcks) {
  World world;
  start_connected(world);
  world.hold_wire[0] = true;  // acks to the primary wait
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  EXPECT_FALSE(world.a().has_completed(1));
  EXPECT_TRUE(world.same_disks());  // both copies have it; the ack is what is missing
  EXPECT_EQ(world.a().r().status().writes_in_flight, 1u);
  world.hold_wire[0] = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_EQ(world.a().r().status().writes_in_flight, 0u);
  EXPECT_EQ(world.a().r().bitmap().set_count(), 0u);
}

TEST(VolumeReplica, FlushWaitsForTheBarrierAck) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  world.hold_wire[0] = true;
  world.a().r().on_flush(2);
  world.run();
  EXPECT_FALSE(world.a().has_completed(2));
  EXPECT_EQ(world.b().flushes, 1u);  // the secondary flushed for the barrier
  world.hold_wire[0] = false;
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().flushes, 1u);
}

TEST(VolumeReplica, FuaIsDurableOnBothCopies) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 3), true);
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  ASSERT_FALSE(world.a().disk_writes.empty());
  ASSERT_FALSE(world.b().disk_writes.empty());
  EXPECT_TRUE(world.a().disk_writes.back().fua);
  EXPECT_TRUE(world.b().disk_writes.back().fua);
}

TEST(VolumeReplica, SecondaryStartsNoWriteOfTheNextEpochBeforeTheBarrier) {
  World world;
  start_connected(world);
  world.b().hold_disk = true;
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.a().r().on_flush(2);
  world.a().r().on_write(3, 1 << 20, pattern(4096, 2), false);  // no overlap, next epoch
  world.run();
  // The secondary issued the first write only; the barrier's flush and the next write wait.
  ASSERT_EQ(world.b().disk_queue.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<DiskWrite>(world.b().disk_queue.front()));
  world.disk_one(1);
  world.run();
  ASSERT_EQ(world.b().disk_queue.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<DiskFlush>(world.b().disk_queue.front()));
  world.disk_one(1);
  world.run();
  ASSERT_EQ(world.b().disk_queue.size(), 1u);
  const auto* second = std::get_if<DiskWrite>(&world.b().disk_queue.front());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->offset, 1u << 20);
  world.b().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().error_of(3), 0);
  EXPECT_TRUE(world.same_disks());
}

// A barrier the primary inserts to bound its transfer log orders nothing for the application:
// the secondary flushes once the epoch's writes are done, and goes on with the next epoch's
// writes meanwhile, instead of idling through the flush.
TEST(VolumeReplica, ACheckpointBarrierDoesNotHoldTheNextEpoch) {
  World world;
  world.a().config.max_unacked_epoch_writes = 2;
  world.crash(0);
  start_connected(world);
  world.b().hold_disk = true;
  for (RequestId i = 1; i <= 3; ++i) {  // a checkpoint after the second write
    world.a().r().on_write(i, i << 20, pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
  // All three writes issued; the checkpoint's flush waits for the first two to be done.
  ASSERT_EQ(world.b().disk_queue.size(), 3u);
  for (const Action& action : world.b().disk_queue) {
    EXPECT_TRUE(std::holds_alternative<DiskWrite>(action));
  }
  const std::uint64_t flushes = world.b().flushes;
  world.disk_one(1);
  world.disk_one(1);
  world.run();
  ASSERT_EQ(world.b().disk_queue.size(), 2u);  // the third write, then the checkpoint's flush
  EXPECT_TRUE(std::holds_alternative<DiskFlush>(world.b().disk_queue.back()));
  world.b().hold_disk = false;
  world.run();
  EXPECT_EQ(world.b().flushes, flushes + 1);
  for (RequestId i = 1; i <= 3; ++i) EXPECT_EQ(world.a().error_of(i), 0);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
}

TEST(VolumeReplica, OverlappingWritesApplyInIssueOrderOnBothCopies) {
  World world;
  start_connected(world);
  world.a().hold_disk = true;
  world.b().hold_disk = true;
  world.a().r().on_write(1, 0, pattern(8192, 1), false);
  world.a().r().on_write(2, 4096, pattern(8192, 2), false);  // overlaps the first
  world.a().r().on_write(3, 1 << 20, pattern(4096, 3), false);
  world.run();
  // The overlapping write waits for the first locally; the unrelated one goes.
  EXPECT_EQ(world.a().disk_queue.size(), 2u);
  EXPECT_EQ(world.b().disk_queue.size(), 2u);
  world.a().hold_disk = false;
  world.b().hold_disk = false;
  world.run();
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[4096], (*pattern(8192, 2))[0]);
  EXPECT_EQ(world.a().completed.size(), 3u);
}

TEST(VolumeReplica, ZeroingIsReplicated) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(65536, 5), false);
  world.a().r().on_write_zeroes(2, 4096, 8192, false);
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.b().disk[4096], std::byte{0});
  EXPECT_NE(world.b().disk[0], std::byte{0});
}

TEST(VolumeReplica, AsyncWriteCompletesAfterTheLocalWrite) {
  World world(Mode::Async);
  start_connected(world);
  world.hold_wire[1] = true;  // the peer has not even received it
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_FALSE(world.same_disks());
  world.hold_wire[1] = false;
  world.run();
  EXPECT_TRUE(world.same_disks());
}

// Async mode acknowledges ahead of the peer only while the payloads kept for it stay within
// kMaxAsyncUnackedBytes: past that a write waits for the peer's ack, so a slow peer slows the
// writer down instead of filling the primary's memory.
TEST(VolumeReplica, AsyncWritesAheadOfThePeerAreBoundedInBytes) {
  World world(Mode::Async);
  start_connected(world);
  world.hold_wire[0] = true;  // the peer's acks wait
  constexpr std::size_t kChunk = 4u << 20;
  constexpr RequestId kWithinBound = detail::kMaxAsyncUnackedBytes / kChunk;  // 16
  for (RequestId id = 1; id <= kWithinBound + 1; ++id) {
    world.a().r().on_write(id, 0, pattern(kChunk, static_cast<std::uint8_t>(id)), false);
  }
  world.run();
  for (RequestId id = 1; id <= kWithinBound; ++id) EXPECT_EQ(world.a().error_of(id), 0) << id;
  EXPECT_FALSE(world.a().has_completed(kWithinBound + 1));
  world.hold_wire[0] = false;
  world.run();
  EXPECT_EQ(world.a().error_of(kWithinBound + 1), 0);
  EXPECT_TRUE(world.same_disks());
}

// Small writes hit the count bound first: 4 KiB writes ahead of a stalled peer wait for it once
// kMaxAsyncUnackedWrites are kept, rather than filling the request table and being refused
// (EBUSY, an I/O error to the client). A client at queue depth 64 stops when its queue is full.
TEST(VolumeReplica, AsyncSmallWritesAheadOfThePeerAreBoundedInCount) {
  World world(Mode::Async);
  for (int i = 0; i < 2; ++i) {
    world.node(i).config.max_unacked_epoch_writes = 4096;  // the agent's default epoch
    world.rebuild(i);
  }
  start_connected(world);
  world.hold_wire[0] = true;  // the peer's acks wait
  constexpr RequestId kWrites = detail::kMaxAppRequests + 1000;
  constexpr std::size_t kQueueDepth = 64;
  RequestId next = 1;
  std::vector<RequestId> outstanding;
  for (; next <= kWrites && outstanding.size() < kQueueDepth; ++next) {
    world.a().r().on_write(next, (next % 1024) * 4096, pattern(4096, 1), false);
    outstanding.push_back(next);
    world.run();
    std::erase_if(outstanding, [&](RequestId id) { return world.a().has_completed(id); });
  }
  for (RequestId id = 1; id < next; ++id) {
    if (world.a().has_completed(id)) {
      ASSERT_EQ(world.a().error_of(id), 0) << id;
    }
  }
  EXPECT_EQ(next - 1, detail::kMaxAsyncUnackedWrites + kQueueDepth);
  world.hold_wire[0] = false;
  world.run();
  for (RequestId id = 1; id < next; ++id) ASSERT_EQ(world.a().error_of(id), 0) << id;
  EXPECT_TRUE(world.same_disks());
}

TEST(VolumeReplica, SecondaryRefusesWritesAndNewExtentsArePersistedFirst) {
  World world;
  start_connected(world);
  world.b().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.b().error_of(1), ESHUTDOWN);  // NBD's "disconnect", as for reads
  world.a().hold_persist = true;
  world.a().r().on_write(2, 9u << 20, pattern(4096, 1), false);  // a new extent
  world.run();
  EXPECT_TRUE(world.a().disk_writes.empty());  // waits for the activity log on disk
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().saved_extents.front(), 2u);
}

// An extent leaves the log only in an update written after the data was flushed: its writes
// may sit in the disk's cache, and once the log on disk no longer names it, a power loss here
// would lose them where no resync looks (the log holds 2 extents here).
TEST(VolumeReplica, ALogUpdateThatDropsAnExtentFlushesTheDataFirst) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);         // extent 0
  world.a().r().on_write(2, 4u << 20, pattern(4096, 2), false);  // extent 1
  world.run();
  ASSERT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().data_flushing_persists, 0u);               // the log only grew
  world.a().r().on_write(3, 8u << 20, pattern(4096, 3), false);  // extent 2 evicts extent 0
  world.run();
  EXPECT_EQ(world.a().error_of(3), 0);
  EXPECT_EQ(world.a().data_flushing_persists, 1u);
  EXPECT_EQ(std::count(world.a().saved_extents.begin(), world.a().saved_extents.end(), 0u), 0);
}

// Both hosts can lose power together. The peer's writes to an extent may then still be in its
// disk cache only, and once the extent has left the primary's log, nothing after the restart
// would resync them. So an extent leaves the log only after the peer acks a barrier covering
// its writes, and a write that needs its room sends that barrier (a checkpoint) itself.
TEST(VolumeReplica, AnExtentLeavesTheLogOnlyOnceThePeerHasFlushedItsWrites) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);         // extent 0
  world.a().r().on_write(2, 4u << 20, pattern(4096, 2), false);  // extent 1
  world.run();
  ASSERT_EQ(world.a().error_of(2), 0);
  const std::uint64_t flushes_before = world.b().flushes;
  world.b().hold_disk = true;  // the peer's flush of those writes does not finish
  world.a().r().on_write(3, 8u << 20, pattern(4096, 3), false);  // extent 2 needs room
  world.run();
  EXPECT_EQ(world.a().disk_writes.size(), 2u) << "written before its extent could enter the log";
  EXPECT_EQ(std::count(world.a().saved_extents.begin(), world.a().saved_extents.end(), 0u), 1);
  EXPECT_FALSE(world.a().has_completed(3));
  world.b().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(3), 0);
  EXPECT_GT(world.b().flushes, flushes_before);  // the checkpoint barrier the write asked for
  EXPECT_EQ(std::count(world.a().saved_extents.begin(), world.a().saved_extents.end(), 0u), 0);
  EXPECT_TRUE(world.same_disks());
}

// A write into an extent that is already in the log, but only in the update still being
// persisted, waits for that update too: were it to reach the disk first, a crash would leave a
// write the log does not name, and the resync after it would not copy it.
TEST(VolumeReplica, AWriteWaitsForTheLogUpdateThatAddedItsExtent) {
  World world;
  start_connected(world);
  world.a().hold_persist = true;
  world.a().r().on_write(1, 9u << 20, pattern(4096, 1), false);           // adds extent 2
  world.a().r().on_write(2, (9u << 20) + 8192, pattern(4096, 2), false);  // extent 2 again
  world.run();
  EXPECT_TRUE(world.a().disk_writes.empty());  // neither before the log is on disk
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().disk_writes.size(), 2u);
}

// The same for an extent a sequential stream brought in ahead of itself.
TEST(VolumeReplica, AWriteWaitsForTheLogUpdateThatPrefetchedItsExtent) {
  World world;
  world.a().config.activity_log_extents = 128;  // large enough to prefetch
  world.rebuild(0);
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);  // extent 0
  world.run();
  world.a().hold_persist = true;
  world.a().r().on_write(2, 4u << 20, pattern(4096, 2), false);  // extent 1: prefetches 2 and 3
  world.a().r().on_write(3, 8u << 20, pattern(4096, 3), false);  // extent 2, prefetched
  world.a().r().on_write(4, 4096, pattern(4096, 4), false);      // extent 0, long on disk
  world.run();
  ASSERT_EQ(world.a().disk_writes.size(), 2u);  // the first and the last only
  EXPECT_EQ(world.a().disk_writes.back().offset, 4096u);
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.a().error_of(3), 0);
  EXPECT_EQ(world.a().disk_writes.size(), 4u);
}

TEST(VolumeReplica, ASequentialStreamBringsTheNextExtentsIntoTheLogInOneUpdate) {
  World world;
  world.a().config.activity_log_extents = 128;  // large enough to prefetch
  world.rebuild(0);
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);  // extent 0: new, alone
  world.run();
  EXPECT_EQ(world.a().saved_extents, (std::vector<std::uint64_t>{0}));
  world.a().r().on_write(2, 4u << 20, pattern(4096, 2), false);  // extent 1, after 0: a stream
  world.run();
  std::vector<std::uint64_t> saved = world.a().saved_extents;
  std::sort(saved.begin(), saved.end());
  EXPECT_EQ(saved, (std::vector<std::uint64_t>{0, 1, 2, 3}));  // up to the volume's end
  const std::size_t persists = world.a().persists;
  world.a().r().on_write(3, 8u << 20, pattern(4096, 3), false);  // extent 2: already in
  world.run();
  EXPECT_EQ(world.a().persists, persists);  // no log update for it
  EXPECT_EQ(world.a().error_of(3), 0);
}

TEST(VolumeReplica, ManyWritesInsertBarriersAndDrainTheTransferLog) {
  World world;
  start_connected(world);
  for (RequestId i = 1; i <= 300; ++i) {
    world.a().r().on_write(i, (i % 64) * 4096, pattern(4096, static_cast<std::uint8_t>(i)), false);
  }
  world.run();
  EXPECT_EQ(world.a().completed.size(), 300u);
  EXPECT_GE(world.b().flushes, 4u);  // barriers every 64 writes
  EXPECT_TRUE(world.same_disks());
}

// The peer fails a write: it marks itself Inconsistent, the primary marks the block, and the
// primary resyncs it at once instead of leaving the peer Inconsistent until the link next
// breaks. (Sweep seed 5.)
TEST(VolumeReplica, PeerWriteErrorIsResyncedAtOnce) {
  World world;
  start_connected(world);
  world.b().fail_next_write = EIO;
  world.b().hold_disk = true;
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  ASSERT_TRUE(world.disk_one(1));  // the failing write
  world.run();
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  EXPECT_EQ(world.a().r().status().peer_disk, DiskState::Inconsistent);
  world.b().hold_disk = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);  // the primary has it, and the peer cannot be promoted
  // The pass that started at once ends with ResyncDone, which the peer does not take for
  // UpToDate: its write failed since the last one, and it cannot tell whether the source had
  // heard of it when it started the pass (VolumeReplicaDiskError covers the race). It connects
  // again, and the handshake's resync makes it UpToDate.
  EXPECT_EQ(world.b().r().status().disk, DiskState::Inconsistent);
  EXPECT_FALSE(world.connected());
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

TEST(VolumeReplica, DemoteFinishesInFlightWritesThenRefuses) {
  World world;
  start_connected(world);
  world.a().hold_persist = true;
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.a().r().on_write(2, 0, pattern(4096, 2), false);  // queued behind the first
  ASSERT_TRUE(world.a().r().demote().ok());
  world.a().hold_persist = false;
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_EQ(world.a().error_of(2), ESHUTDOWN);
  EXPECT_EQ(world.a().r().status().role, Role::Secondary);
  EXPECT_FALSE(world.a().saved_state.primary_at_crash);
  EXPECT_EQ(world.b().r().status().peer_role, Role::Secondary);
  world.a().r().on_flush(3);
  world.run();
  EXPECT_EQ(world.a().error_of(3), ESHUTDOWN);  // not EROFS, which NBD reports as EPERM
}

}  // namespace
}  // namespace keel::volume::testing
