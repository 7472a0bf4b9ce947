// The replication link: Hello, the connect decision, the bitmap exchange, refusals and loss.
//
// Handshake: each side sends Hello when its transport comes up. On the peer's Hello each side
// checks protocol, volume and roles, computes decide_on_connect() from what its own Hello said
// (both sides compute from the same two Hellos, so they agree), and sends its dirty bitmap's
// non-zero words. On the peer's last BitmapWords both bitmaps are united and the plan starts.
#include <algorithm>
#include <utility>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {

bool ReplicaCore::link_alive() const { return link_ == LinkState::Connecting || peer_ready(); }

ConnectSide ReplicaCore::local_side() const {
  return ConnectSide{state_.generations,   state_.disk,       state_.primary_at_crash,
                     state_.discard_local, survived_primary_, state_.blank};
}

void ReplicaCore::on_peer_connected() {
  if (link_alive()) drop_connection();  // a new transport replaces the old one
  ++connection_;
  link_ = LinkState::Connecting;
  hello_received_ = false;
  bitmap_received_ = false;
  peer_role_.reset();
  peer_disk_.reset();
  hello_side_ = local_side();
  hello_role_ = role_;
  Hello hello;
  hello.volume_digest = config_.volume_digest;
  hello.node = config_.self;
  hello.role = role_;
  // Exactly what this side decides the plan on (hello_side_), so both sides compute it alike.
  hello.disk = hello_side_.disk;
  hello.generations = hello_side_.generations;
  hello.primary_at_crash = hello_side_.primary_at_crash;
  hello.discard_local = hello_side_.discard_local;
  hello.survived_primary = hello_side_.survived_primary;
  hello.dirty_blocks = bitmap_.set_count();
  hello.blank = hello_side_.blank;
  send(hello);
}

void ReplicaCore::on_peer_disconnected() {
  if (!link_alive()) return;  // already dropped (refused, or replaced)
  notice(Notice::Level::Warning, "replication link lost");
  drop_connection();
  progress();
}

// The peer's offsets and lengths must lie inside the volume (decode() bounds them too).
bool ReplicaCore::peer_range_ok(std::uint64_t offset, std::uint64_t length) {
  if (offset <= config_.size_bytes && length <= config_.size_bytes - offset) return true;
  refuse(LinkState::StandAlone, "the peer addressed bytes outside the volume");
  return false;
}

void ReplicaCore::on_peer_message(const PeerMessage& message) {
  if (!link_alive()) return;  // after a refusal, until the link is closed
  if (std::optional<PeerOp> op = peer_op_from(message)) {
    if (role_ == Role::Primary) {
      refuse(LinkState::StandAlone, "the peer replicates to a primary: two primaries");
    } else if (peer_range_ok(op->offset, op->length)) {
      queue_peer_op(std::move(*op));
    }
    return progress();
  }
  std::visit(
      [this](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Hello>) {
          on_hello(m);
        } else if constexpr (std::is_same_v<T, BitmapWords>) {
          on_bitmap_words(m);
        } else if constexpr (std::is_same_v<T, WriteAck>) {
          on_write_ack(m);
        } else if constexpr (std::is_same_v<T, BarrierAck>) {
          on_barrier_ack(m);
        } else if constexpr (std::is_same_v<T, ResyncAck>) {
          on_resync_ack(m);
        } else if constexpr (std::is_same_v<T, VerifyReply>) {
          on_verify_reply(m);
        } else if constexpr (std::is_same_v<T, StateUpdate>) {
          on_state_update(m);
        } else if constexpr (std::is_same_v<T, Refuse>) {
          on_refuse(m);
        }
      },
      message);
  progress();
}

void ReplicaCore::on_hello(const Hello& hello) {
  if (link_ != LinkState::Connecting || hello_received_) {
    return refuse(LinkState::StandAlone, "the peer sent a second Hello");
  }
  hello_received_ = true;
  if (hello.protocol_version != kPeerProtocolVersion) {
    return refuse(LinkState::StandAlone, "the peer speaks replication protocol " +
                                             std::to_string(hello.protocol_version) +
                                             ", this node " + std::to_string(kPeerProtocolVersion) +
                                             ": upgrade one of them");
  }
  if (hello.volume_digest != config_.volume_digest) {
    return refuse(LinkState::StandAlone,
                  "the peer's volume differs in name or size: check both nodes' configuration");
  }
  peer_role_ = hello.role;
  peer_disk_ = hello.disk;
  peer_hello_disk_ = hello.disk;
  if (role_ == Role::Primary && hello.role == Role::Primary) {
    return refuse(LinkState::StandAlone, "both nodes are primary: demote one of them");
  }
  const ConnectSide peer{hello.generations,      hello.disk,
                         hello.primary_at_crash, hello.discard_local,
                         hello.survived_primary, hello.blank};
  peer_blank_ = hello.blank;
  plan_ = decide_on_connect(hello_side_, peer);
  const bool target =
      plan_ == ConnectPlan::BecomeSyncTarget || plan_ == ConnectPlan::FullSyncTarget;
  if (plan_ == ConnectPlan::SplitBrain) {
    return refuse(LinkState::SplitBrain,
                  "split brain: both copies were written apart; on the node whose changes should "
                  "be thrown away run `keel volume resolve <volume> --discard-local`");
  }
  if (plan_ == ConnectPlan::Unrelated && hello_side_.blank != hello.blank) {
    return refuse(LinkState::Unrelated,
                  "one copy is new and empty (keel volume create) and the other Outdated or "
                  "Inconsistent: neither is known to hold every write; run `keel volume promote "
                  "<volume> --force` on the node whose copy is to be kept");
  }
  if (plan_ == ConnectPlan::Unrelated) {
    return refuse(LinkState::Unrelated,
                  "the copies share no history (wrong peer or wrong disk?); if one copy should be "
                  "overwritten, run `keel volume resolve <volume> --discard-local` on its node");
  }
  if (target && role_ == Role::Primary) {
    return refuse(LinkState::StandAlone,
                  "the primary's copy is older than the peer's: demote it before connecting");
  }
  send_bitmap();
}

void ReplicaCore::send_bitmap() {
  const auto words = bitmap_.nonzero_words();
  std::size_t sent = 0;
  do {
    BitmapWords frame;
    const std::size_t end = std::min(words.size(), sent + kMaxBitmapWordsPerFrame);
    frame.words.assign(words.begin() + static_cast<std::ptrdiff_t>(sent),
                       words.begin() + static_cast<std::ptrdiff_t>(end));
    sent = end;
    frame.last = sent == words.size();
    send(std::move(frame));
  } while (sent < words.size());
}

void ReplicaCore::on_bitmap_words(const BitmapWords& words) {
  if (!hello_received_ || bitmap_received_) {
    return refuse(LinkState::StandAlone, "the peer sent its bitmap out of turn");
  }
  const std::uint64_t word_count = (bitmap_.blocks() + 63) / 64;
  for (const auto& [index, word] : words.words) {
    if (index >= word_count) {
      return refuse(LinkState::StandAlone, "the peer's bitmap is larger than the volume");
    }
    bitmap_.or_word(index, word);
  }
  if (!words.last) return;
  bitmap_received_ = true;
  start_after_handshake();
}

void ReplicaCore::start_after_handshake() {
  refused_reason_.clear();
  // A role or disk change since our Hello (a demote finished, the ring said outdated) is news
  // to the peer, which decided on the Hello; the plan itself rests on the two Hellos.
  if (role_ != hello_role_ || state_.disk != hello_side_.disk) send_state_update();
  switch (plan_) {
    case ConnectPlan::InSync: {
      if (bitmap_.set_count() == 0) {
        link_ = LinkState::Connected;
        forget_survived_primary();
        const bool peer_up_to_date = peer_disk_ == DiskState::UpToDate;
        // Same generation and nothing marked on either side: the same data. So a copy the ring
        // called Outdated is UpToDate again beside an UpToDate peer, and two copies both called
        // Outdated (each by an obsolete record of the other's, told as a promotion fed them
        // before their withdrawal arrived; seed 2131) are both UpToDate: neither lacks anything
        // the other holds, and refusing both would keep the volume down for nothing.
        const bool both_outdated =
            peer_disk_ == DiskState::Outdated && state_.disk == DiskState::Outdated;
        if ((peer_up_to_date || both_outdated) && state_.disk == DiskState::Outdated) {
          state_.disk = DiskState::UpToDate;
          send_state_update();
        }
        if (peer_up_to_date) peer_up_to_date_again();
        persist();
        notice(Notice::Level::Info, "connected: the copies are in sync");
        return;
      }
      // Same data state but blocks marked on either side: an UpToDate copy beside an Outdated
      // one copies them (seed 1142896: both had crashed as primary; the one the ring had
      // recorded outdated had also lost unflushed writes to a power loss, which the other
      // held), else the primary, else the lower node id; both sides decide alike from the two
      // Hellos.
      const bool local_up = hello_side_.disk == DiskState::UpToDate;
      const bool peer_up = peer_hello_disk_ == DiskState::UpToDate;
      const bool source = local_up != peer_up
                              ? local_up
                              : hello_role_ == Role::Primary ||
                                    (peer_role_ != Role::Primary && config_.self < config_.peer);
      return source ? start_resync_source(false) : start_resync_target(false);
    }
    case ConnectPlan::BecomeSyncSource:
      return start_resync_source(false);
    case ConnectPlan::FullSyncSource:
      return start_resync_source(true);
    case ConnectPlan::BecomeSyncTarget:
      return start_resync_target(false);
    case ConnectPlan::FullSyncTarget:
      if (hello_side_.disk == DiskState::Inconsistent && hello_side_.generations.bitmap != 0 &&
          !hello_side_.discard_local) {
        // Only this side wrote apart (else the plan refuses, generations.hpp rule 1): its copy
        // cannot be the source.
        notice(Notice::Level::Warning,
               "this Inconsistent copy wrote on its own as primary (forced, and its disk failed "
               "since): the full resync from the peer overwrites any of those writes it lacks");
      }
      return start_resync_target(true);
    case ConnectPlan::SplitBrain:
    case ConnectPlan::Unrelated:
      KEEL_ASSERT(false);  // refused at Hello
  }
}

void ReplicaCore::refuse(LinkState reason, std::string text) {
  if (link_alive()) {
    send(Refuse{reason, text});
    actions_.emplace_back(ClosePeer{text});
    drop_connection();
  }
  link_ = (reason == LinkState::SplitBrain || reason == LinkState::Unrelated)
              ? reason
              : LinkState::StandAlone;
  notice(Notice::Level::Error, "connection refused: " + text);
  refused_reason_ = std::move(text);
}

void ReplicaCore::on_refuse(const Refuse& refusal) {
  actions_.emplace_back(ClosePeer{"the peer refused: " + refusal.text});
  drop_connection();
  link_ = (refusal.reason == LinkState::SplitBrain || refusal.reason == LinkState::Unrelated)
              ? refusal.reason
              : LinkState::StandAlone;
  refused_reason_ = "the peer refused: " + refusal.text;
  notice(Notice::Level::Error, refused_reason_);
}

// Tears the connection down: what the peer may lack goes into the bitmap; a primary that was
// replicating starts a new generation and has the peer recorded outdated. A secondary in sync
// with its primary holds every write that primary acknowledged (sync mode): should the primary
// come back from a crash, this copy is the one to resync its activity-log extents from.
void ReplicaCore::drop_connection() {
  const bool was_replicating = replicating();
  if (role_ == Role::Secondary && link_ == LinkState::Connected && peer_role_ == Role::Primary &&
      state_.disk == DiskState::UpToDate && config_.mode == Mode::Sync) {
    // Every write the primary acknowledged completed here before its ack was sent, so this
    // flush covers them all; once it is done the claim holds across a restart of this node.
    survived_primary_ = true;
    actions_.emplace_back(DiskFlush{new_io(IoOwner{IoOwner::Kind::SurvivorFlush, connection_})});
  }
  link_ = LinkState::StandAlone;
  held_sends_.clear();  // answers for this connection only
  applied_epoch_ = 0;
  lost_epoch_ = 0;
  if (role_ == Role::Primary) {
    forget_peer_for_writes();
    // A primary stepping down holds the copy that may have lost writes: it must not have the
    // peer's, the good one, recorded outdated (on_local_flush_failed()).
    if (was_replicating && !stepping_down_) track_without_peer();
  }
  resync_running_ = false;
  resync_chunks_.clear();  // reads still in flight find no chunk and are dropped
  target_resync_ = false;
  if (verify_running_) notice(Notice::Level::Warning, "verify stopped: replication link lost");
  verify_running_ = false;
  verify_chunks_.clear();
  verify_retry_.clear();
  hello_received_ = false;
  bitmap_received_ = false;
  peer_role_.reset();
  peer_disk_.reset();
  persist();
}

void ReplicaCore::survivor_flush_done(std::uint64_t connection, int error) {
  // A claim withdrawn meanwhile (told outdated, promoted, in sync again) or a new connection's
  // handshake under way: nothing to keep.
  if (!survived_primary_ || state_.survived_primary || connection != connection_) return;
  if (error != 0) {
    on_local_disk_error("flushing the copy that survived its primary", error);
    return;
  }
  state_.survived_primary = true;
  persist();
}

void ReplicaCore::forget_survived_primary() {
  survived_primary_ = false;
  state_.survived_primary = false;  // the caller persists
  state_.primary_sync_boot = 0;
}

bool ReplicaCore::record_primary_sync() {
  const bool following = role_ == Role::Secondary && link_ == LinkState::Connected &&
                         peer_role_ == Role::Primary && state_.disk == DiskState::UpToDate;
  // From the primary's first write on this copy is the pair's data, and says so on disk before
  // it applies (and acknowledges) any: a copy that crashed still blank while holding flushed
  // writes would be taken for an empty one, the target of a full sync from a copy made anew.
  const bool joined = following && std::exchange(state_.blank, false);
  const bool in_sync = config_.mode == Mode::Sync && config_.boot != 0 && following;
  if (in_sync && state_.primary_sync_boot != config_.boot) {
    state_.primary_sync_boot = config_.boot;
    primary_sync_persist_id_ = persist();
  } else if (joined) {
    primary_sync_persist_id_ = persist();
  }
  return primary_sync_persist_id_ <= persisted_id_;
}

}  // namespace keel::volume::detail
