// Roles and outdating: promote, demote, discard-local, and the ring's answers.
#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {

Result<bool> ReplicaCore::promote(bool force) {
  if (role_ == Role::Primary)
    return demoting_ ? Result<bool>(Error{"a demote is in progress"}) : Result<bool>(false);
  if (link_alive() && peer_role_ == Role::Primary) {
    return Error{"the peer is primary; demote it first (two primaries are never allowed)"};
  }
  const bool target_plan = hello_received_ && (plan_ == ConnectPlan::BecomeSyncTarget ||
                                               plan_ == ConnectPlan::FullSyncTarget);
  if (link_ == LinkState::SyncTarget || (link_ == LinkState::Connecting && target_plan)) {
    return Error{"this copy is receiving a resync; promote it once the resync completes"};
  }
  if (state_.blank && !(hello_received_ && peer_blank_)) {
    // A blank copy may be a replaced disk whose peer holds the volume: promoted, it would serve
    // zeroes for data. Only a peer that says it is blank too proves nothing was ever written.
    if (!force) {
      return Error{
          "this copy is new and empty (keel volume create) and has not met its peer, "
          "which may hold the volume's data: promote once they are connected, or with "
          "--force only if the peer is new too or lost for good"};
    }
    notice(Notice::Level::Error, "forced promotion of a new, empty copy that has not met its peer");
  }
  bool renegotiate = false;
  if (state_.disk != DiskState::UpToDate) {
    const std::string disk(to_string(state_.disk));
    if (!force) {
      return Error{"the local copy is " + disk +
                   ": it may lack acknowledged writes; promote with --force only if the other "
                   "copy is lost for good"};
    }
    notice(Notice::Level::Error, "forced promotion of an " + disk + " copy");
    if (state_.disk == DiskState::Inconsistent) {
      // Its content was never a whole copy: a new data state that no bitmap relates to, so the
      // peer gets a full sync.
      state_.generations.current = fresh_generation();
      state_.generations.bitmap = 0;
      renegotiate = peer_ready();
    }
    state_.disk = DiskState::UpToDate;
  }
  if (link_ == LinkState::Connecting && !renegotiate) {
    // The peer's Hello named this node secondary and its generations from before: rather than
    // patch a handshake both sides decided on, connect again with the new role (the next Hello
    // says primary; the bitmap resync that follows carries the new generation to the peer).
    actions_.emplace_back(ClosePeer{"promoted during the handshake: connecting again"});
    drop_connection();
  }
  role_ = Role::Primary;
  state_.blank = false;  // its writes are the volume's from now on
  forget_survived_primary();
  if (renegotiate) {
    actions_.emplace_back(ClosePeer{"forced promotion: the peer needs a full sync"});
    drop_connection();
  }
  if (!replicating()) {
    track_without_peer();
    if (force) {
      // The operator forced it (a node without quorum would never get the ring's record):
      // writes are acknowledged without waiting for it.
      state_.peer_outdated = true;
      durable_generations_.reset();
      notice(Notice::Level::Error,
             "forced primary without its peer: acknowledging writes without a majority's record "
             "that the peer is outdated");
    }
  }
  state_.primary_at_crash = true;  // durable before the first write is served
  promote_persisted_ = false;
  promote_persist_id_ = persist();
  if (peer_ready()) send_state_update();
  notice(Notice::Level::Info, "promoted to primary");
  progress();
  return true;
}

Result<bool> ReplicaCore::demote() {
  if (role_ != Role::Primary) return false;
  if (demoting_) return false;
  demoting_ = true;
  // Requests that never reached the disk are refused; those in flight finish first.
  for (auto it = app_.begin(); it != app_.end();) {
    if (it->second.stage == AppRequest::Stage::Queued) {
      actions_.emplace_back(Complete{it->second.request, ESHUTDOWN});
      KEEL_ASSERT(unissued_ > 0);
      --unissued_;
      it = app_.erase(it);
    } else {
      ++it;
    }
  }
  AppRequest flush;
  flush.kind = AppRequest::Kind::Flush;
  flush.internal = true;
  app_.emplace(next_sequence_++, std::move(flush));
  ++unissued_;
  progress();
  return true;
}

void ReplicaCore::finish_demote_if_ready() {
  if (!demoting_ || !app_.empty()) return;
  // A copy stepping down says Secondary only once its Inconsistent state is on disk: a power
  // loss before that would bring it back UpToDate and primary at the crash, the source of its
  // hot extents, over a peer that no longer claims to have survived a primary. The shell's
  // journal counts (on_journaled()): a disk that fails the data often fails the metadata too,
  // and the peer must be promotable meanwhile.
  if (stepping_down_ && std::max(persisted_id_, journaled_id_) < step_down_persist_id_) return;
  demoting_ = false;
  role_ = Role::Secondary;
  if (!std::exchange(demote_flush_failed_, false)) state_.primary_at_crash = false;
  persist();
  if (stepping_down_) {
    stepping_down_ = false;
    notice(Notice::Level::Info, "demoted to secondary: this copy's disk failed");
    // The peer has nothing marked for this copy: a new handshake makes it the resync target.
    if (link_alive()) {
      actions_.emplace_back(ClosePeer{"this copy's disk failed: resyncing it from the peer"});
      drop_connection();
    }
    return;
  }
  if (peer_ready()) send_state_update();
  notice(Notice::Level::Info, "demoted to secondary");
}

// This primary writes without its peer from now on: a new data state, tracked in the bitmap,
// and the peer's copy recorded outdated through the ring (again when it was recorded already:
// the record follows the current generation; the older one keeps the peer outdated meanwhile).
//
// Sync mode, peer not yet recorded: until the record is in, nothing is acknowledged (suspended),
// so every change since the split is unacknowledged. The persisted generations keep naming the
// state before the split (durable_generations_) and the bitmap marks the changes. After a crash
// in that window this copy is therefore "the old data state plus dirty blocks": facing a peer
// that was promoted meanwhile (its bitmap generation is that old state) it becomes the bitmap
// resync's target and its unacknowledged changes are overwritten, instead of both sides
// showing the same bitmap generation and being refused as a split brain although only one of
// them acknowledged anything. Async mode acknowledges without the record: real generations.
void ReplicaCore::track_without_peer() {
  KEEL_ASSERT(role_ == Role::Primary);
  const Generations before = state_.generations;
  state_.generations = start_tracking(before, fresh_generation());
  if (config_.mode == Mode::Sync && !state_.peer_outdated && !durable_generations_) {
    durable_generations_ = before;
  }
  outdating_ = state_.generations.current;
  actions_.emplace_back(RecordPeerOutdated{outdating_});
}

void ReplicaCore::on_peer_outdated_recorded(Generation generation) {
  if (generation == 0 || generation != outdating_) return;  // superseded or withdrawn
  outdating_ = 0;
  record_generation_ = generation;
  if (link_ == LinkState::Connected && peer_disk_ == DiskState::UpToDate) {
    peer_up_to_date_again();  // the peer is back and in sync already
    persist();
    return;
  }
  state_.peer_outdated = true;
  durable_generations_.reset();  // acknowledged from now on: the real generations
  outdated_persist_id_ = persist();
  progress();
}

// The peer's copy is up to date again (a resync to it completed, or it connected in sync, or it
// is the newer copy): withdraw every record this replica made (the one the ring holds and the
// one in flight, which the ring delivers first), and persist the real generations again.
void ReplicaCore::peer_up_to_date_again() {
  if (record_generation_ != 0) actions_.emplace_back(WithdrawPeerOutdated{record_generation_});
  if (outdating_ != 0 && outdating_ != record_generation_) {
    actions_.emplace_back(WithdrawPeerOutdated{outdating_});
  }
  // Any withdrawal removes all of this node's records about the peer's copy.
  if (obsolete_record_ != 0 && record_generation_ == 0 && outdating_ == 0) {
    actions_.emplace_back(WithdrawPeerOutdated{obsolete_record_});
  }
  obsolete_record_ = 0;
  record_generation_ = 0;
  outdating_ = 0;
  state_.peer_outdated = false;
  durable_generations_.reset();
}

void ReplicaCore::on_own_record_repeated(Generation generation) {
  if (generation == 0 || generation == record_generation_ || generation == outdating_) return;
  // The one asked for last is the newest: an answered record stays until it is superseded.
  const Generation live = outdating_ != 0 ? outdating_ : record_generation_;
  const bool peer_in_sync = link_ == LinkState::Connected && peer_disk_ == DiskState::UpToDate;
  if (live == 0 && !peer_in_sync) {
    // A withdrawal removes every record this node made about the peer's copy, and one of them
    // may be needed though this replica does not know it: made just before a restart that came
    // too soon to persist peer_outdated (async mode acknowledges writes before the record
    // counts). Only a peer connected and in sync needs none. Until then the record stays: one
    // too many costs the peer a reconnect, one too few could let it be promoted without writes.
    // It goes once the peer is in sync (peer_up_to_date_again()): left in the ring, it would
    // outdate the peer's copy the next time it is promoted, or joins the majority again.
    obsolete_record_ = generation;
    return;
  }
  const std::string obsolete =
      "an agent repeated an obsolete record of the peer's copy outdated (as of " +
      std::to_string(generation) + "): ";
  if (live != 0) {
    notice(Notice::Level::Info, obsolete + "recording the current one again");
    actions_.emplace_back(RecordPeerOutdated{live, true});
  } else {
    notice(Notice::Level::Info, obsolete + "withdrawing it again");
    actions_.emplace_back(WithdrawPeerOutdated{generation});
  }
}

void ReplicaCore::on_told_outdated(Generation as_of) {
  if (role_ == Role::Primary) {
    notice(Notice::Level::Warning, "told outdated while primary: ignored");
    return;
  }
  if (state_.disk != DiskState::UpToDate) return;
  // This copy had (or has moved on from) that generation: the record is stale.
  const Generations& g = state_.generations;
  const bool known = as_of == g.current || as_of == g.bitmap ||
                     std::find(g.history.begin(), g.history.end(), as_of) != g.history.end();
  const bool caught_up = as_of != 0 && known;
  if (caught_up) return;
  state_.disk = DiskState::Outdated;
  forget_survived_primary();  // the primary acknowledges writes without this copy
  persist();
  if (link_ == LinkState::Connected) {
    // Recorded outdated while connected and in sync: either the link broke and the primary had
    // this copy recorded before this side noticed, or an old record outlived its clear in
    // another partition and came back with a merge. A new handshake tells them apart (the same
    // current generation on both sides is the same data); without one an in-sync copy would
    // stay Outdated for as long as the link held.
    actions_.emplace_back(ClosePeer{"recorded outdated while connected: connecting again"});
    drop_connection();
  } else if (peer_ready()) {
    send_state_update();
  }
  notice(Notice::Level::Warning, "the peer recorded this copy as outdated");
}

Result<bool> ReplicaCore::discard_local_data() {
  if (role_ == Role::Primary) return Error{"demote this node before discarding its data"};
  if (state_.discard_local) return false;
  state_.discard_local = true;
  persist();
  if (link_ == LinkState::SplitBrain || link_ == LinkState::Unrelated) {
    link_ = LinkState::StandAlone;  // something changed: reconnecting may succeed now
    refused_reason_.clear();
  }
  notice(Notice::Level::Warning,
         "local changes will be discarded: the next connection resyncs this copy from the peer");
  return true;
}

void ReplicaCore::on_state_update(const StateUpdate& update) {
  peer_role_ = update.role;
  peer_disk_ = update.disk;
  if (update.disk != DiskState::UpToDate) abandon_step_down();
  if (update.disk == DiskState::UpToDate && state_.disk == DiskState::Inconsistent &&
      link_ == LinkState::Connected && role_ == Role::Secondary) {
    // Nothing on this connection will copy what this copy lacks (both were Inconsistent when it
    // began, after both disks failed, and the peer has become UpToDate since): a new handshake
    // makes this copy the target of a resync from the peer.
    actions_.emplace_back(ClosePeer{"this copy is Inconsistent and its peer UpToDate: resyncing"});
    drop_connection();
    return;
  }
  if (role_ == Role::Primary && update.role == Role::Primary) {
    refuse(LinkState::StandAlone, "both nodes are primary: demote one of them");
    return;
  }
  const bool recorded =
      state_.peer_outdated || record_generation_ != 0 || outdating_ != 0 || obsolete_record_ != 0;
  if (update.disk == DiskState::UpToDate && recorded && link_ == LinkState::Connected) {
    peer_up_to_date_again();
    persist();
  }
  record_primary_sync();  // a primary in sync with this copy: not blank any more
}

void ReplicaCore::send_state_update() { send(StateUpdate{role_, state_.disk, state_.generations}); }

}  // namespace keel::volume::detail
