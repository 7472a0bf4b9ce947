// Generations: decide_on_connect's rules, its symmetry, and the tracking/resync transitions.
#include <gtest/gtest.h>

#include "core/volume/generations.hpp"

namespace keel::volume {
namespace {

ConnectSide side(Generation current, Generation bitmap = 0, DiskState disk = DiskState::UpToDate) {
  ConnectSide s;
  s.generations.current = current;
  s.generations.bitmap = bitmap;
  s.disk = disk;
  return s;
}

ConnectPlan mirror(ConnectPlan plan) {
  switch (plan) {
    case ConnectPlan::BecomeSyncSource:
      return ConnectPlan::BecomeSyncTarget;
    case ConnectPlan::BecomeSyncTarget:
      return ConnectPlan::BecomeSyncSource;
    case ConnectPlan::FullSyncSource:
      return ConnectPlan::FullSyncTarget;
    case ConnectPlan::FullSyncTarget:
      return ConnectPlan::FullSyncSource;
    default:
      return plan;
  }
}

// Both hosts compute the plan; they must agree.
ConnectPlan decide(const ConnectSide& local, const ConnectSide& peer) {
  const ConnectPlan plan = decide_on_connect(local, peer);
  EXPECT_EQ(decide_on_connect(peer, local), mirror(plan)) << to_string(plan);
  return plan;
}

TEST(VolumeGenerations, EqualCurrentIsInSyncUnlessOneCrashedAsPrimary) {
  EXPECT_EQ(decide(side(5), side(5)), ConnectPlan::InSync);
  ConnectSide crashed = side(5);
  crashed.primary_at_crash = true;
  EXPECT_EQ(decide(crashed, side(5)), ConnectPlan::BecomeSyncSource);
  // A peer that survived the crash holds every acknowledged write: it is the source.
  ConnectSide survivor = side(5);
  survivor.survived_primary = true;
  EXPECT_EQ(decide(crashed, survivor), ConnectPlan::BecomeSyncTarget);
}

TEST(VolumeGenerations, TrackingSideIsTheBitmapSource) {
  const Generations tracked = start_tracking(Generations{5, 0, {}}, 9);
  EXPECT_EQ(tracked.current, 9u);
  EXPECT_EQ(tracked.bitmap, 5u);
  ConnectSide primary{tracked, DiskState::UpToDate, true, false};
  EXPECT_EQ(decide(primary, side(5, 0, DiskState::Outdated)), ConnectPlan::BecomeSyncSource);
  // Tracking again keeps the split point.
  EXPECT_EQ(start_tracking(tracked, 11).bitmap, 5u);
}

TEST(VolumeGenerations, BothWroteApartIsSplitBrainUnlessOneDiscards) {
  ConnectSide a = side(9, 5);
  ConnectSide b = side(10, 5);
  EXPECT_EQ(decide(a, b), ConnectPlan::SplitBrain);
  b.discard_local = true;
  EXPECT_EQ(decide(a, b), ConnectPlan::BecomeSyncSource);
  a.discard_local = true;
  EXPECT_EQ(decide(a, b), ConnectPlan::SplitBrain);
}

TEST(VolumeGenerations, InconsistentSideIsTarget) {
  EXPECT_EQ(decide(side(3, 0, DiskState::Inconsistent), side(7)), ConnectPlan::FullSyncTarget);
  // An interrupted bitmap resync resumes from the bitmap.
  EXPECT_EQ(decide(side(3, 0, DiskState::Inconsistent), side(7, 3)), ConnectPlan::BecomeSyncTarget);
  EXPECT_EQ(decide(side(3, 0, DiskState::Inconsistent), side(4, 0, DiskState::Inconsistent)),
            ConnectPlan::Unrelated);
  // Both disks failed, one copy newer than the other (seed 1068732): the newer is the source,
  // and a discard decides where nothing else does.
  EXPECT_EQ(decide(side(9, 3, DiskState::Inconsistent), side(3, 0, DiskState::Inconsistent)),
            ConnectPlan::BecomeSyncSource);
  ConnectSide discarding = side(4, 0, DiskState::Inconsistent);
  discarding.discard_local = true;
  EXPECT_EQ(decide(side(3, 0, DiskState::Inconsistent), discarding), ConnectPlan::FullSyncSource);
}

// A forced primary whose disk failed afterwards is Inconsistent, yet acknowledged writes apart.
TEST(VolumeGenerations, InconsistentSideThatWroteApartIsNotOverwrittenSilently) {
  ConnectSide forced = side(9, 5, DiskState::Inconsistent);
  EXPECT_EQ(decide(forced, side(10, 5)), ConnectPlan::SplitBrain);
  EXPECT_EQ(decide(forced, side(10, 6)), ConnectPlan::SplitBrain) << "both wrote, unordered";
  // The peer's discard cannot resolve it: this copy cannot be the source.
  ConnectSide discarding_peer = side(10, 5);
  discarding_peer.discard_local = true;
  EXPECT_EQ(decide(forced, discarding_peer), ConnectPlan::SplitBrain);
  // Only this side wrote: no split brain to refuse, and an Inconsistent copy is never a source.
  EXPECT_EQ(decide(forced, side(5)), ConnectPlan::FullSyncTarget);
  EXPECT_EQ(decide(forced, side(6)), ConnectPlan::FullSyncTarget);
  // The peer took this side's writes and wrote on: a bitmap resync brings them back.
  EXPECT_EQ(decide(forced, side(12, 9)), ConnectPlan::BecomeSyncTarget);
  forced.discard_local = true;
  EXPECT_EQ(decide(forced, side(10, 5)), ConnectPlan::FullSyncTarget);
}

TEST(VolumeGenerations, HistoryGivesFullSyncAndStrangersAreUnrelated) {
  ConnectSide old_side = side(20, 0);
  old_side.generations.history = {15, 5};
  EXPECT_EQ(decide(old_side, side(5)), ConnectPlan::FullSyncSource);
  EXPECT_EQ(decide(side(1), side(2)), ConnectPlan::Unrelated);
  ConnectSide discarding = side(2);
  discarding.discard_local = true;
  EXPECT_EQ(decide(side(1), discarding), ConnectPlan::FullSyncSource);
}

// A blank copy (created empty, never part of the pair's data) carries the empty generation that
// a pair which wrote only while connected still has: only the flag says it holds nothing.
TEST(VolumeGenerations, ABlankCopyIsTheTargetOfAFullSyncFromAnyConsistentCopy) {
  ConnectSide blank = side(5);
  blank.blank = true;
  EXPECT_EQ(decide(blank, side(5)), ConnectPlan::FullSyncTarget);
  EXPECT_EQ(decide(blank, side(9, 5)), ConnectPlan::FullSyncTarget);  // would be a bitmap resync
  // An Outdated copy lacks writes as well: the operator chooses, as for an Inconsistent one.
  EXPECT_EQ(decide(blank, side(5, 0, DiskState::Outdated)), ConnectPlan::Unrelated);
  ConnectSide crashed = side(5);
  crashed.primary_at_crash = true;
  EXPECT_EQ(decide(blank, crashed), ConnectPlan::FullSyncTarget);
  // Neither holds the volume: refused until the operator forces one.
  EXPECT_EQ(decide(blank, side(5, 0, DiskState::Inconsistent)), ConnectPlan::Unrelated);
  ConnectSide other_blank = side(5);
  other_blank.blank = true;
  EXPECT_EQ(decide(blank, other_blank), ConnectPlan::InSync);
}

TEST(VolumeGenerations, FinishResyncMovesTheBitmapIntoHistory) {
  const Generations done = finish_resync(Generations{9, 5, {3, 1}});
  EXPECT_EQ(done.current, 9u);
  EXPECT_EQ(done.bitmap, 0u);
  EXPECT_EQ(done.history[0], 5u);
  EXPECT_EQ(done.history[1], 3u);
  EXPECT_EQ(finish_resync(done), done);
}

TEST(VolumeGenerations, NamesArePrintable) {
  EXPECT_EQ(to_string(ConnectPlan::SplitBrain), "SplitBrain");
  EXPECT_EQ(to_string(LinkState::SyncTarget), "SyncTarget");
  EXPECT_EQ(to_string(DiskState::Outdated), "Outdated");
  EXPECT_EQ(to_string(Role::Primary), "Primary");
  EXPECT_EQ(to_string(Mode::Async), "async");
}

}  // namespace
}  // namespace keel::volume
