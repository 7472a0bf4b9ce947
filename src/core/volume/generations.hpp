// Generations: at connect time, who has the newer data, whether the dirty bitmap is enough to
// resync, and whether the two copies were written apart (split brain).
//
// Each copy carries Generations (types.hpp). The rules that keep them meaningful, applied by
// replica.cpp:
//   - While both copies are connected and identical, both have the same `current` and no
//     `bitmap` generation.
//   - A primary that starts writing without its peer (the peer disconnected, or a promotion
//     while alone) moves `current` into `bitmap` (if `bitmap` is 0) and takes a fresh `current`;
//     from then on its dirty bitmap records every block it writes.
//   - When a resync completes, the source's `bitmap` moves into history (newest first) and is
//     cleared; the target takes the source's generations.
//   - In sync mode the new generations are persisted only once the peer is recorded outdated
//     (before that nothing is acknowledged): a copy that crashes in between comes back with the
//     generations from before the split plus dirty bits, so a peer promoted meanwhile is simply
//     its sync source (rule 3), not a split brain (rule 4) (replica_roles.cpp).
//
// decide_on_connect() compares the two sides' generations the same way on both hosts (it is
// symmetric: swapping the arguments swaps the answer's direction), so both agree on the plan.
//
// Thread-safety: pure functions.
#pragma once

#include "core/volume/types.hpp"

namespace keel::volume {

struct ConnectSide {
  Generations generations;
  DiskState disk = DiskState::Inconsistent;
  bool primary_at_crash = false;
  bool discard_local = false;  // this side asked to become the target of the next resync
  // Sync mode: this side was connected, UpToDate and in sync, to the primary when the link to it
  // was lost, and has not been told outdated since (across a restart only once a flush made its
  // copy durable, or within the boot it recorded being in sync in): its copy holds every write
  // that primary acknowledged, even those the primary's own disk had not made durable yet.
  bool survived_primary = false;
  bool blank = false;  // PersistentState::blank: created empty, never part of the pair's data
};

enum class ConnectPlan : std::uint8_t {
  InSync = 0,            // same data: nothing to copy (beyond the bitmaps' union, if any)
  BecomeSyncSource = 1,  // the local copy is newer: send the blocks of the bitmaps' union
  BecomeSyncTarget = 2,  // the peer's copy is newer: receive the blocks of the bitmaps' union
  FullSyncSource = 3,    // newer, and the bitmap does not cover the difference: copy everything
  FullSyncTarget = 4,
  SplitBrain = 5,  // both wrote apart since their common generation: refuse
  Unrelated = 6,   // no common history: refuse
};
std::string_view to_string(ConnectPlan plan);

// The plan for the local side. Rules in order:
//  0. A blank side facing one that is not holds nothing of the pair's: an UpToDate peer makes it
//     a full sync's target whatever the generations say (a pair that wrote while connected still
//     has the empty generation the blank copy was created with); an Outdated or Inconsistent peer
//     may lack writes too, and the resync would end with two UpToDate copies hiding it:
//     Unrelated, until the operator forces one side.
//  1. An Inconsistent side facing a consistent one is a full-sync target (unless the bitmap rule
//     below applies, which is cheaper); two Inconsistent sides with different generations follow
//     rules 3 to 6 (Unrelated when nothing relates them). An Inconsistent side that wrote apart (a
//     forced primary whose disk then failed) facing a peer that wrote apart too is SplitBrain where
//     rules 3 to 6 (without the peer's discard_local) would refuse, unless it has discard_local
//     itself: its acknowledged writes are overwritten only on purpose. If only it wrote apart, it
//     is the target.
//  2. Equal `current`: InSync, except that a side with primary_at_crash is the source (its
//     activity-log extents may hold writes the other never got; the bitmaps carry them), unless
//     the other side survived it (survived_primary): then the survivor is the source. The
//     crashed primary may have lost acknowledged writes that were not yet durable on its disk
//     (a power loss); the survivor has every one of them, and the writes it lacks were never
//     acknowledged. Without a survivor (the other side lost power too before its flush) the
//     crashed primary stays the source, as in DRBD.
//  3. local.bitmap == peer.current: BecomeSyncSource (the peer did not write since we split).
//     peer.bitmap == local.current: BecomeSyncTarget.
//  4. Both bitmap generations non-zero and equal (both wrote since the same split): SplitBrain,
//     unless exactly one side has discard_local, which makes it the target (bitmap-based).
//  5. local history contains peer.current (or peer.bitmap): FullSyncSource; the mirror image:
//     FullSyncTarget.
//  6. Otherwise Unrelated; with discard_local on exactly one side, FullSync in that direction.
ConnectPlan decide_on_connect(const ConnectSide& local, const ConnectSide& peer);

// The local side's generations after it starts writing without its peer (see above). `fresh` is
// a new random generation (never 0).
Generations start_tracking(const Generations& now, Generation fresh);

// The source's generations after a completed resync (the target adopts them).
Generations finish_resync(const Generations& source);

}  // namespace keel::volume
