// The secondary's side: the peer's writes, barriers, resync blocks and verify reads, applied in
// arrival order. Overlapping operations wait for earlier ones; nothing after an application's
// barrier starts before the barrier's flush is done, so this copy is always a prefix of the
// primary's at the granularity of the application's flushes. A checkpoint barrier (the primary
// bounding its transfer log) is flushed when everything before it is done, but does not hold
// what comes after it.
#include <algorithm>
#include <cerrno>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {
namespace {

bool is_barrier(const PeerOp& op) {
  return op.kind == PeerOp::Kind::Barrier || op.kind == PeerOp::Kind::ResyncDone;
}

bool overlaps(const PeerOp& a, const PeerOp& b) {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

}  // namespace

// The messages that ask something of this copy, as queued operations (others: nullopt).
std::optional<PeerOp> ReplicaCore::peer_op_from(const PeerMessage& message) {
  PeerOp op;
  if (const auto* write = std::get_if<DataWrite>(&message)) {
    const bool zero = write->zero_length != 0;
    op.kind = zero ? PeerOp::Kind::Zero : PeerOp::Kind::Write;
    op.sequence = write->sequence;
    op.epoch = write->epoch;
    op.offset = write->offset;
    op.length = zero ? write->zero_length : (write->data ? write->data->size() : 0);
    op.data = write->data;
    op.fua = write->fua;
  } else if (const auto* barrier = std::get_if<Barrier>(&message)) {
    op.kind = PeerOp::Kind::Barrier;
    op.sequence = barrier->epoch;
    op.checkpoint = barrier->checkpoint;
  } else if (const auto* resync = std::get_if<ResyncData>(&message)) {
    op.kind = PeerOp::Kind::Resync;
    op.offset = resync->offset;
    op.length = resync->data ? resync->data->size() : 0;
    op.data = resync->data;
  } else if (const auto* done = std::get_if<ResyncDone>(&message)) {
    op.kind = PeerOp::Kind::ResyncDone;
    op.generations = done->generations;
  } else if (const auto* verify = std::get_if<VerifyRequest>(&message)) {
    op.kind = PeerOp::Kind::Verify;
    op.offset = verify->offset;
    op.length = verify->length;
  } else {
    return std::nullopt;
  }
  return op;
}

void ReplicaCore::queue_peer_op(PeerOp op) {
  if (peer_ops_.size() >= kMaxPeerOps) {
    actions_.emplace_back(ClosePeer{"the peer exceeded the queue of replicated operations"});
    drop_connection();
    return;
  }
  op.connection = connection_;
  if (op.kind == PeerOp::Kind::Resync) cover_resync_blocks(op.offset, op.length);
  peer_ops_.emplace(next_peer_op_++, std::move(op));
}

// The target's bitmap is its memory of what it still lacks until its copy is durable (the
// source clears a block once this side acknowledges it, before any flush). A block the source
// added after the bitmaps were exchanged (a write on the primary before it replicated) is not in
// it: mark it, durably, before writing it, or a power loss here would lose the block for both.
void ReplicaCore::cover_resync_blocks(std::uint64_t offset, std::uint64_t length) {
  for (std::uint64_t block = offset / kBlockBytes; block < (offset + length) / kBlockBytes;
       ++block) {
    if (bitmap_.test(block)) continue;
    bitmap_.set_range(offset, length);
    target_persist_id_ = persist();  // issue_peer_ops() holds the writes until it is durable
    return;
  }
}

void ReplicaCore::issue_peer_ops() {
  // A resync target writes nothing until its Inconsistent state is durable: a crash must never
  // leave it claiming UpToDate over a half-changed copy.
  if (target_persist_id_ > persisted_id_) return;
  // Nor does a secondary in sync with a primary before it has recorded so (with this boot).
  if (!record_primary_sync()) return;
  for (auto it = peer_ops_.begin(); it != peer_ops_.end(); ++it) {
    PeerOp& op = it->second;
    if (is_barrier(op)) {
      // Everything before it has completed when it is first in the queue.
      if (!op.issued && it == peer_ops_.begin()) issue_peer_op(it->first, op);
      if (op.checkpoint) continue;
      return;
    }
    if (op.issued) continue;
    if (!peer_op_blocked(it)) issue_peer_op(it->first, op);
  }
}

bool ReplicaCore::peer_op_blocked(std::map<std::uint64_t, PeerOp>::iterator it) const {
  for (auto earlier = peer_ops_.begin(); earlier != it; ++earlier) {
    if (overlaps(earlier->second, it->second)) return true;
  }
  return false;
}

void ReplicaCore::issue_peer_op(std::uint64_t number, PeerOp& op) {
  KEEL_ASSERT(!op.issued);
  op.issued = true;
  op.io = new_io(IoOwner{IoOwner::Kind::Peer, number});
  switch (op.kind) {
    case PeerOp::Kind::Write:
      actions_.emplace_back(DiskWrite{op.io, op.offset, op.data, op.fua});
      break;
    case PeerOp::Kind::Zero:
      actions_.emplace_back(DiskZero{op.io, op.offset, op.length, op.fua});
      break;
    case PeerOp::Kind::Resync:
      actions_.emplace_back(DiskWrite{op.io, op.offset, op.data, false});
      break;
    case PeerOp::Kind::Verify:
      actions_.emplace_back(DiskRead{op.io, op.offset, static_cast<std::uint32_t>(op.length)});
      break;
    case PeerOp::Kind::Barrier:
    case PeerOp::Kind::ResyncDone:
      actions_.emplace_back(DiskFlush{op.io});
      break;
  }
}

void ReplicaCore::peer_op_done(std::uint64_t number, int error, const Payload& data) {
  auto node = peer_ops_.extract(number);
  KEEL_ASSERT(!node.empty());
  const PeerOp op = std::move(node.mapped());
  KEEL_ASSERT(op.issued);
  const bool answer = op.connection == connection_ && link_alive();
  if (op.connection == connection_) {
    if (op.kind == PeerOp::Kind::Write || op.kind == PeerOp::Kind::Zero) {
      applied_epoch_ = std::max(applied_epoch_, op.epoch);
    }
    if (is_barrier(op) && error != 0) lost_epoch_ = applied_epoch_;
    if (op.kind == PeerOp::Kind::Barrier && error == 0 && op.sequence <= lost_epoch_) {
      error = EIO;  // its writes may be among those an earlier failed flush dropped
      notice(Notice::Level::Error,
             "barrier " + std::to_string(op.sequence) +
                 " covers writes a failed flush may have dropped: reported as failed");
      disk_failed_in_resync_ = true;
    }
  }
  if (error != 0 && op.kind != PeerOp::Kind::Verify) {
    on_local_disk_error("a replicated write", error);
    hold_sends_until_persisted();
    // Whatever resync pass is running may not copy these blocks again (the source hears of
    // the failure only now): the next ResyncDone may not make this copy UpToDate. (A failed
    // flush of ResyncDone ends this connection below.)
    if (op.kind != PeerOp::Kind::ResyncDone) disk_failed_in_resync_ = true;
  }
  switch (op.kind) {
    case PeerOp::Kind::Write:
    case PeerOp::Kind::Zero:
      if (answer) send(WriteAck{op.sequence, error});
      break;
    case PeerOp::Kind::Resync:
      if (target_resync_) resync_done_bytes_ += op.length;
      if (answer) send(ResyncAck{op.offset, static_cast<std::uint32_t>(op.length), error});
      break;
    case PeerOp::Kind::Verify: {
      const bool whole = error == 0 && data && data->size() == op.length;
      const std::uint64_t digest = whole ? digest_bytes(data->data(), data->size()) : 0;
      if (answer) {
        send(VerifyReply{op.offset, static_cast<std::uint32_t>(op.length), digest,
                         whole ? 0 : (error != 0 ? error : EIO)});
      }
      break;
    }
    case PeerOp::Kind::Barrier:
      if (answer) send(BarrierAck{op.sequence, error});
      break;
    case PeerOp::Kind::ResyncDone:
      // A failed flush is not tried again: the pages it failed to write may have been dropped,
      // and a second flush would succeed without them (on_local_flush_failed()).
      if (answer) finish_as_target(op, error);
      break;
  }
}

// Every resync block before the ResyncDone is durable: this copy now equals the source's.
void ReplicaCore::finish_as_target(const PeerOp& op, int error) {
  // A write or barrier that failed here during the resync left blocks that the resync did not
  // copy again (the source marked them when it heard, too late for this pass): this copy is not
  // the source's, whatever the last flush says.
  const bool failed_in_pass = std::exchange(disk_failed_in_resync_, false);
  if (error != 0 || failed_in_pass) {
    // The source considers the resync done and copies nothing more on this connection: a new
    // one resyncs the blocks this copy still has marked (it keeps its bitmap until this flush)
    // and those the source marked.
    notice(Notice::Level::Error,
           std::string(error != 0 ? "flushing the resynced copy failed"
                                  : "a write failed on this disk during the resync") +
               "; it stays Inconsistent: connecting again");
    actions_.emplace_back(ClosePeer{"the resynced copy cannot be flushed"});
    drop_connection();
    return;
  }
  state_.generations = op.generations;
  state_.disk = DiskState::UpToDate;
  state_.blank = false;
  disk_error_.clear();  // the resync rewrote what the failure left in doubt
  state_.discard_local = false;
  state_.primary_at_crash = false;
  bitmap_.clear_all();
  target_resync_ = false;
  link_ = LinkState::Connected;
  forget_survived_primary();
  peer_up_to_date_again();  // a record this copy made about the peer is obsolete: it is newer
  persist();
  send_state_update();
  notice(Notice::Level::Info, "resync complete: this copy is UpToDate");
}

void ReplicaCore::on_local_disk_error(std::string_view what, int error) {
  notice(Notice::Level::Error,
         std::string(what) + " failed on the local disk (error " + std::to_string(error) + ")");
  disk_error_ = std::string(what) + " failed (error " + std::to_string(error) +
                "): this copy is Inconsistent until the peer resyncs it";
  if (state_.disk == DiskState::Inconsistent) return;
  state_.disk = DiskState::Inconsistent;  // it misses a write the primary has
  persist();
  if (peer_ready()) send_state_update();
}

}  // namespace keel::volume::detail
