// Replica, outdate records and the handshake: the explicit withdrawal of a record once the peer is
// up to date again (at the end of the resync to it), a record kept across a restart, a promotion
// during the handshake, a primary that crashed while suspended facing a peer promoted meanwhile
// (no split brain), and an obsolete record repeated by an agent that missed its end.
#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// The peer goes away and the ring records nothing: node a's write `request` at `offset` is
// written locally and held (suspended), never acknowledged.
void write_while_the_ring_is_silent(World& world, RequestId request, std::uint64_t offset) {
  world.answer_outdate = false;
  world.disconnect();
  world.run();
  world.a().r().on_write(request, offset, pattern(4096, static_cast<std::uint8_t>(request)), false);
  world.run();
}

// Runs the world and returns the generations `node` withdrew (WithdrawPeerOutdated). The shared
// World leaves actions it does not know in the node's disk queue; this keeps that queue held,
// takes them out and executes the disk operations one by one.
std::vector<Generation> run_collecting_withdrawals(World& world, int node) {
  std::vector<Generation> withdrawn;
  Node& n = world.node(node);
  n.hold_disk = true;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    world.run();
    for (auto it = n.disk_queue.begin(); it != n.disk_queue.end();) {
      if (const auto* withdraw = std::get_if<WithdrawPeerOutdated>(&*it)) {
        withdrawn.push_back(withdraw->generation);
        it = n.disk_queue.erase(it);
      } else {
        ++it;
      }
    }
    if (!world.disk_one(node)) break;
  }
  n.hold_disk = false;
  return withdrawn;
}

// A primary that lost its peer, had it recorded outdated and wrote alone.
Generation lose_peer_and_write(World& world) {
  start_connected(world);
  world.disconnect();
  world.run();
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_EQ(world.a().outdate_requests.size(), 0u);  // answered
  EXPECT_TRUE(world.a().r().status().peer_outdated);
  EXPECT_EQ(world.b().r().status().disk, DiskState::Outdated);
  return world.a().r().status().generations.current;
}

TEST(VolumeReplicaOutdate, ResyncToThePeerWithdrawsTheRecordByItsGeneration) {
  World world;
  const Generation recorded = lose_peer_and_write(world);
  world.connect();
  const std::vector<Generation> withdrawn = run_collecting_withdrawals(world, 0);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  ASSERT_EQ(withdrawn.size(), 1u);
  EXPECT_EQ(withdrawn[0], recorded);
  EXPECT_FALSE(world.a().saved_state.peer_outdated);
  EXPECT_TRUE(world.same_disks());
}

// An agent that missed a withdrawal or a newer record repeats the old one after a merge: the
// recorder says again what holds, the live record or the withdrawal.
TEST(VolumeReplicaOutdate, AnObsoleteRecordRepeatedIsSupersededOrWithdrawnAgain) {
  World world;
  const Generation recorded = lose_peer_and_write(world);
  world.answer_outdate = false;
  world.a().r().on_own_record_repeated(recorded);  // the live one: nothing to say
  world.run();
  EXPECT_TRUE(world.a().outdate_requests.empty());
  world.a().r().on_own_record_repeated(recorded ^ 1);
  world.run();
  ASSERT_EQ(world.a().outdate_requests.size(), 1u);
  EXPECT_EQ(world.a().outdate_requests[0], recorded);
  world.a().outdate_requests.clear();

  world.connect();
  ASSERT_EQ(run_collecting_withdrawals(world, 0), std::vector<Generation>{recorded});
  world.a().r().on_own_record_repeated(recorded);  // withdrawn, then repeated by a stray agent
  EXPECT_EQ(run_collecting_withdrawals(world, 0), std::vector<Generation>{recorded});
  EXPECT_TRUE(world.a().outdate_requests.empty());

  // The peer not connected and in sync: left alone (it may be a record whose peer_outdated a
  // restart lost, and a withdrawal removes them all; one too many only costs a reconnect).
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  world.disconnect();
  world.run();
  world.a().r().on_own_record_repeated(recorded);
  world.a().r().on_own_record_repeated(recorded ^ 1);
  EXPECT_TRUE(run_collecting_withdrawals(world, 0).empty());
  EXPECT_TRUE(world.a().outdate_requests.empty());

  // It goes once the peer is connected and in sync again: left in the ring, it would outdate the
  // peer's copy at its next promotion (seed 476).
  world.connect();
  EXPECT_EQ(run_collecting_withdrawals(world, 0), std::vector<Generation>{recorded ^ 1});
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
}

// Seed 535: a restarted recorder promoted again asks for a new record; nothing is withdrawn
// and the peer stays recorded outdated meanwhile (the old record still holds).
TEST(VolumeReplicaOutdate, PromotionAfterARestartKeepsThePeerRecordedOutdated) {
  World world;
  const Generation recorded = lose_peer_and_write(world);
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  world.crash(0);
  ASSERT_TRUE(world.a().saved_state.peer_outdated);
  world.answer_outdate = false;
  ASSERT_TRUE(world.a().r().promote(false).ok());
  const std::vector<Generation> withdrawn = run_collecting_withdrawals(world, 0);
  EXPECT_TRUE(withdrawn.empty());
  ASSERT_EQ(world.a().outdate_requests.size(), 1u);
  EXPECT_NE(world.a().outdate_requests[0], recorded);
  EXPECT_TRUE(world.a().saved_state.peer_outdated);
  // The peer's copy is still known outdated: the primary serves at once.
  world.a().r().on_write(2, 4096, pattern(4096, 2), false);
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
}

// The record a restarted node announces is the persisted current generation; a resync to the
// peer withdraws exactly that one.
TEST(VolumeReplicaOutdate, RecordFromBeforeARestartIsWithdrawnByItsGeneration) {
  World world;
  const Generation recorded = lose_peer_and_write(world);
  world.crash(0);
  ASSERT_EQ(world.a().saved_state.generations.current, recorded);
  world.connect();
  const std::vector<Generation> withdrawn = run_collecting_withdrawals(world, 0);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  ASSERT_EQ(withdrawn.size(), 1u);
  EXPECT_EQ(withdrawn[0], recorded);
  EXPECT_TRUE(world.same_disks());
}

// Seed 751: promoted while the handshake runs (the Hellos said both secondary). The connection
// starts again with the new role; the peer ends UpToDate, never left Outdated, and the record
// made meanwhile is withdrawn.
TEST(VolumeReplicaOutdate, PromotionDuringTheHandshakeConnectsAgain) {
  World world;
  world.connect();
  ASSERT_TRUE(world.a().r().promote(false).ok());
  const std::vector<Generation> during = run_collecting_withdrawals(world, 0);
  EXPECT_FALSE(world.connected());
  world.connect();
  std::vector<Generation> withdrawn = run_collecting_withdrawals(world, 0);
  withdrawn.insert(withdrawn.begin(), during.begin(), during.end());
  const ReplicaStatus a = world.a().r().status();
  const ReplicaStatus b = world.b().r().status();
  EXPECT_EQ(a.link, LinkState::Connected);
  EXPECT_EQ(b.link, LinkState::Connected);
  EXPECT_EQ(b.disk, DiskState::UpToDate);
  EXPECT_EQ(b.peer_role, Role::Primary);
  EXPECT_EQ(a.generations, b.generations);
  EXPECT_FALSE(a.peer_outdated);
  EXPECT_EQ(withdrawn.size(), 1u);
  EXPECT_FALSE(world.b().r().promote(false).ok());  // never two primaries
}

// A primary demoted while the handshake runs: its Hello said primary, so the peer learns the
// new role once the handshake is over, and may be promoted after its resync.
TEST(VolumeReplicaOutdate, DemotionDuringTheHandshakeIsAnnounced) {
  World world;
  lose_peer_and_write(world);
  world.connect();
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().peer_role, Role::Secondary);
  EXPECT_TRUE(world.b().r().promote(false).ok());
}

// Seed 93004100: the resync to the peer is over when its ResyncDone is sent, and the peer takes
// the primary's current generation with it: a record naming that generation no longer outdates
// it. The link breaks before the peer's StateUpdate (UpToDate) comes back: the primary must not
// take the old record for one, but wait for a new record before acknowledging anything alone;
// the peer, UpToDate and promotable, would lack what the primary acknowledged then.
TEST(VolumeReplicaOutdate, AResyncedPeerIsRecordedOutdatedAgainBeforeWritesGoOnAlone) {
  World world;
  const Generation recorded = lose_peer_and_write(world);
  world.connect();
  for (int guard = 0; guard < 100'000 && world.a().r().status().link != LinkState::Connected;
       ++guard) {
    ASSERT_TRUE(world.step());
  }
  ASSERT_EQ(world.a().r().status().link, LinkState::Connected);  // ResyncDone is on its way
  world.hold_wire[0] = true;  // the peer's StateUpdate never reaches the primary
  world.run();
  ASSERT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  ASSERT_EQ(world.b().r().status().generations.current, recorded);  // the record is stale
  world.hold_wire[0] = false;
  world.answer_outdate = false;
  world.disconnect();
  world.run();
  world.a().r().on_write(2, 8192, pattern(4096, 2), false);
  world.run();
  EXPECT_TRUE(world.a().r().status().suspended);
  EXPECT_FALSE(world.a().has_completed(2));
  ASSERT_EQ(world.a().outdate_requests.size(), 1u);
  EXPECT_NE(world.a().outdate_requests[0], recorded);
  world.answer_outdate = true;  // the new record: the peer is outdated again, the write goes on
  world.run();
  EXPECT_EQ(world.a().error_of(2), 0);
  EXPECT_EQ(world.b().r().status().disk, DiskState::Outdated);
}

// A record that outlived its clear in another partition comes back with a merge and reaches a
// copy that is connected and in sync: the copy goes Outdated and connects again, and the new
// handshake (the same generation on both sides) makes it UpToDate, instead of leaving it Outdated
// for as long as the link holds.
TEST(VolumeReplicaOutdate, AStaleRecordWhileInSyncIsSettledByANewHandshake) {
  World world;
  start_connected(world);
  world.b().r().on_told_outdated(0xdead);  // a generation B's copy never had
  world.run();
  EXPECT_FALSE(world.connected());
  world.connect();
  world.run();
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
}

// A copy the handshake chose as the newer one is not outdated, whatever stale record said so:
// once the resync from it is over it is UpToDate again, as its target is.
TEST(VolumeReplicaOutdate, AResyncSourceIsUpToDateAfterwards) {
  World world;
  lose_peer_and_write(world);  // A writes alone: B recorded outdated
  ASSERT_TRUE(world.a().r().demote().ok());
  world.run();
  world.a().r().on_told_outdated(0xdead);  // a stale record, from another partition
  world.run();
  ASSERT_EQ(world.a().r().status().disk, DiskState::Outdated);
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

// The record is in, but a restart must not forget it: writes stay held until it is durable.
TEST(VolumeReplicaOutdate, WritesWaitUntilTheRecordIsDurable) {
  World world;
  start_connected(world);
  write_while_the_ring_is_silent(world, 1, 0);
  world.a().hold_persist = true;
  world.answer_outdate = true;
  world.run();
  EXPECT_TRUE(world.a().r().status().peer_outdated);
  EXPECT_TRUE(world.a().r().status().suspended);
  EXPECT_FALSE(world.a().has_completed(1));
  world.a().hold_persist = false;
  world.run();
  EXPECT_FALSE(world.a().r().status().suspended);
  EXPECT_EQ(world.a().error_of(1), 0);
  EXPECT_TRUE(world.a().saved_state.peer_outdated);
}

// The primary lost its link, stayed suspended (acknowledged nothing apart) and crashed; the peer
// was promoted and acknowledged writes. Not a split brain: the old primary's changes are all
// unacknowledged, so it becomes the resync target.
TEST(VolumeReplicaOutdate, SuspendedPrimaryThatCrashedBecomesTheTarget) {
  World world;
  start_connected(world);
  world.a().r().on_write(1, 0, pattern(4096, 1), false);
  world.run();
  ASSERT_EQ(world.a().error_of(1), 0);
  const Generations before = world.a().r().status().generations;
  write_while_the_ring_is_silent(world, 2, 4096);  // written locally, never acked
  EXPECT_FALSE(world.a().has_completed(2));
  EXPECT_EQ(world.a().saved_state.generations, before);  // the durable state before the split
  world.crash(0);
  world.a().outdate_requests.clear();  // died with the process
  world.answer_outdate = true;
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  world.b().r().on_write(3, 8192, pattern(4096, 3), false);
  world.run();
  ASSERT_EQ(world.b().error_of(3), 0);
  world.connect();
  world.run();
  const ReplicaStatus a = world.a().r().status();
  EXPECT_EQ(a.link, LinkState::Connected);
  EXPECT_EQ(a.disk, DiskState::UpToDate);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
  EXPECT_EQ(world.a().disk[4096], std::byte{0});  // the unacknowledged write is gone
}

// Both primaries in turn were suspended and crashed: neither acknowledged anything apart, so the
// copies resync (no split brain).
TEST(VolumeReplicaOutdate, TwoSuspendedPrimariesAreNoSplitBrain) {
  World world;
  start_connected(world);
  write_while_the_ring_is_silent(world, 1, 0);
  world.crash(0);
  world.a().outdate_requests.clear();
  ASSERT_TRUE(world.b().r().promote(false).ok());
  world.run();
  world.b().r().on_write(2, 4096, pattern(4096, 2), false);
  world.run();
  EXPECT_FALSE(world.b().has_completed(2));
  world.crash(1);
  world.b().outdate_requests.clear();
  world.answer_outdate = true;
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.b().r().status().link, LinkState::Connected);
  EXPECT_TRUE(world.same_disks());
}

// Seed 2131: each copy told outdated by an obsolete record of the other's (a promotion fed them
// before their withdrawals arrived), while connected and in sync on one generation. They hold the
// same data: the next handshake makes both UpToDate, instead of leaving the volume with no copy
// that may be promoted.
TEST(VolumeReplicaOutdate, TwoCopiesBothToldOutdatedOnOneGenerationAreUpToDateAgain) {
  World world;
  world.connect();
  world.run();
  ASSERT_EQ(world.a().r().status().link, LinkState::Connected);
  const Generation current = world.a().r().status().generations.current;
  world.a().r().on_told_outdated(current ^ 1);
  world.b().r().on_told_outdated(current ^ 2);
  world.run();
  ASSERT_EQ(world.a().r().status().disk, DiskState::Outdated);
  ASSERT_EQ(world.b().r().status().disk, DiskState::Outdated);
  ASSERT_FALSE(world.connected());  // closed by the first one told; the link connects again
  world.connect();
  world.run();
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().generations.current, current);
  EXPECT_TRUE(world.same_disks());
  ASSERT_TRUE(world.b().r().promote(false).ok());
}

}  // namespace
}  // namespace keel::volume::testing
