#include "core/volume/generations.hpp"

#include <algorithm>

#include "core/common/assert.hpp"

namespace keel::volume {
namespace {

bool in_history(const Generations& side, Generation generation) {
  if (generation == 0) return false;
  return std::find(side.history.begin(), side.history.end(), generation) != side.history.end();
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

// Rules 3 to 6, from the local side's point of view (both sides consistent or both not).
ConnectPlan by_history(const ConnectSide& local, const ConnectSide& peer) {
  const Generations& l = local.generations;
  const Generations& p = peer.generations;
  const bool local_newer = l.bitmap != 0 && l.bitmap == p.current;
  const bool peer_newer = p.bitmap != 0 && p.bitmap == l.current;
  if (local_newer && peer_newer) return ConnectPlan::SplitBrain;  // crossed: trust neither
  if (local_newer) return ConnectPlan::BecomeSyncSource;
  if (peer_newer) return ConnectPlan::BecomeSyncTarget;
  const bool only_local_discards = local.discard_local && !peer.discard_local;
  const bool only_peer_discards = peer.discard_local && !local.discard_local;
  if (l.bitmap != 0 && l.bitmap == p.bitmap) {
    if (only_local_discards) return ConnectPlan::BecomeSyncTarget;
    if (only_peer_discards) return ConnectPlan::BecomeSyncSource;
    return ConnectPlan::SplitBrain;
  }
  const bool local_knows = in_history(l, p.current) || in_history(l, p.bitmap);
  const bool peer_knows = in_history(p, l.current) || in_history(p, l.bitmap);
  if (local_knows && !peer_knows) return ConnectPlan::FullSyncSource;
  if (peer_knows && !local_knows) return ConnectPlan::FullSyncTarget;
  if (only_local_discards) return ConnectPlan::FullSyncTarget;
  if (only_peer_discards) return ConnectPlan::FullSyncSource;
  return ConnectPlan::Unrelated;
}

// Rule 1 for a local side that is Inconsistent while the peer is consistent. An Inconsistent side
// that wrote as primary on its own (a forced promotion whose disk failed afterwards) holds writes
// it acknowledged and the peer lacks. If the peer wrote apart too, with no history that orders
// the two, a full sync over them would merge a split brain silently: it is refused, unless the
// operator chose to discard this side. The peer's own discard does not count here: this copy
// cannot be a source, so only discarding this side resolves it.
ConnectPlan inconsistent_local(const ConnectSide& local, const ConnectSide& peer) {
  const Generations& l = local.generations;
  const Generations& p = peer.generations;
  if (p.bitmap != 0 && p.bitmap == l.current) return ConnectPlan::BecomeSyncTarget;
  if (l.bitmap != 0 && p.bitmap != 0 && !local.discard_local) {
    ConnectSide keeping = peer;
    keeping.discard_local = false;
    const ConnectPlan plan = by_history(local, keeping);
    if (plan == ConnectPlan::SplitBrain || plan == ConnectPlan::Unrelated) {
      return ConnectPlan::SplitBrain;
    }
  }
  return ConnectPlan::FullSyncTarget;
}

}  // namespace

std::string_view to_string(ConnectPlan plan) {
  switch (plan) {
    case ConnectPlan::InSync:
      return "InSync";
    case ConnectPlan::BecomeSyncSource:
      return "BecomeSyncSource";
    case ConnectPlan::BecomeSyncTarget:
      return "BecomeSyncTarget";
    case ConnectPlan::FullSyncSource:
      return "FullSyncSource";
    case ConnectPlan::FullSyncTarget:
      return "FullSyncTarget";
    case ConnectPlan::SplitBrain:
      return "SplitBrain";
    case ConnectPlan::Unrelated:
      return "Unrelated";
  }
  return "?";
}

ConnectPlan decide_on_connect(const ConnectSide& local, const ConnectSide& peer) {
  const bool local_inconsistent = local.disk == DiskState::Inconsistent;
  const bool peer_inconsistent = peer.disk == DiskState::Inconsistent;
  const Generations& l = local.generations;
  const Generations& p = peer.generations;
  if (local.blank != peer.blank) {
    const ConnectSide& other = local.blank ? peer : local;
    // An Outdated copy lacks writes too, and an UpToDate target of its resync would hide it.
    if (other.disk != DiskState::UpToDate) return ConnectPlan::Unrelated;
    return local.blank ? ConnectPlan::FullSyncTarget : ConnectPlan::FullSyncSource;
  }
  if (local_inconsistent && !peer_inconsistent) return inconsistent_local(local, peer);
  if (peer_inconsistent && !local_inconsistent) return mirror(inconsistent_local(peer, local));
  if (l.current == p.current) {
    if (local.primary_at_crash && !peer.primary_at_crash) {
      return peer.survived_primary ? ConnectPlan::BecomeSyncTarget : ConnectPlan::BecomeSyncSource;
    }
    if (peer.primary_at_crash && !local.primary_at_crash) {
      return local.survived_primary ? ConnectPlan::BecomeSyncSource : ConnectPlan::BecomeSyncTarget;
    }
    return ConnectPlan::InSync;
  }
  // Two Inconsistent copies (both disks failed) with different data states: the history rules
  // still say which is newer, or which one the operator discards (seed 1068732: without them,
  // refused for good, whatever `resolve` was run). What either disk dropped may be lost.
  return by_history(local, peer);
}

Generations start_tracking(const Generations& now, Generation fresh) {
  KEEL_ASSERT(fresh != 0);
  KEEL_ASSERT(fresh != now.current);
  Generations next = now;
  if (next.bitmap == 0) next.bitmap = now.current;
  next.current = fresh;
  return next;
}

Generations finish_resync(const Generations& source) {
  Generations next = source;
  if (source.bitmap != 0) {
    for (std::size_t i = kHistoryGenerations - 1; i > 0; --i) {
      next.history[i] = next.history[i - 1];
    }
    next.history[0] = source.bitmap;
    next.bitmap = 0;
  }
  return next;
}

}  // namespace keel::volume
