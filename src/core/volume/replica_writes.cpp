// The primary's application path: writes, zeroing and flushes in issue order, the activity log,
// epochs and barriers, the transfer log, completion, and suspension without the peer.
#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {
namespace {

void complete(std::vector<Action>& actions, RequestId request, int error, bool peer_acked = false) {
  actions.emplace_back(Complete{request, error, peer_acked});
}

bool overlaps(const AppRequest& a, const AppRequest& b) {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

}  // namespace

void ReplicaCore::on_write(RequestId request, std::uint64_t offset, Payload data, bool fua) {
  AppRequest r;
  r.kind = AppRequest::Kind::Write;
  r.request = request;
  r.offset = offset;
  r.length = data ? data->size() : 0;
  r.data = std::move(data);
  r.fua = fua;
  submit(std::move(r));
}

void ReplicaCore::on_write_zeroes(RequestId request, std::uint64_t offset, std::uint64_t length,
                                  bool fua) {
  AppRequest r;
  r.kind = AppRequest::Kind::Zero;
  r.request = request;
  r.offset = offset;
  r.length = length;
  r.fua = fua;
  submit(std::move(r));
}

void ReplicaCore::on_flush(RequestId request) {
  AppRequest r;
  r.kind = AppRequest::Kind::Flush;
  r.request = request;
  submit(std::move(r));
}

void ReplicaCore::submit(AppRequest request) {
  // ESHUTDOWN, not EROFS: a client still connected after a demotion should disconnect and find
  // the new primary (NBD maps EROFS to EPERM, which it treats as final), as its reads already do.
  if (role_ != Role::Primary) return complete(actions_, request.request, ESHUTDOWN);
  if (demoting_) return complete(actions_, request.request, ESHUTDOWN);
  if (request.kind != AppRequest::Kind::Flush) {
    const bool too_big = request.kind == AppRequest::Kind::Write && request.length > kMaxDataBytes;
    const bool outside =
        request.offset > config_.size_bytes || request.length > config_.size_bytes - request.offset;
    if (too_big || outside) return complete(actions_, request.request, EINVAL);
    if (request.length == 0) return complete(actions_, request.request, 0);
    if (extents_spanned(request.offset, request.length) > activity_.capacity())
      return complete(actions_, request.request, EINVAL);
  }
  if (app_.size() >= kMaxAppRequests) return complete(actions_, request.request, EBUSY);
  const std::uint64_t sequence = next_sequence_++;
  app_.emplace(sequence, std::move(request));
  ++unissued_;
  progress();
}

void ReplicaCore::issue_app_requests() {
  if (role_ != Role::Primary || !promote_persisted_) return;  // held until serving
  // Writes the old primary sent before the link broke are still being applied here: this
  // copy's own writes go after them, or an older one could land over a newer one.
  if (!peer_ops_.empty()) return;
  if (unissued_ == 0) return;
  bool all_issued = true;  // every earlier request reached the disk (and the link)
  for (auto& [sequence, r] : app_) {
    if (r.stage == AppRequest::Stage::WaitingPersist && persisted_id_ >= r.persist_id) {
      issue_write(sequence, r);
    }
    if (r.stage == AppRequest::Stage::Queued) {
      if (r.kind == AppRequest::Kind::Flush) {
        if (!all_issued) return;  // nothing passes a flush: epochs follow issue order
        // An application's flush covers the writes completed before it, as NBD asks. The
        // demote's own flush must cover every write, those still on their way to the disk too:
        // once it is done the demote clears primary_at_crash, the mark that a restart after a
        // power loss here must resync the hot extents.
        if (r.internal && !all_local_done(sequence)) return;
        issue_flush(sequence, r);
        continue;
      }
      bool blocked = false;
      for (auto& [earlier_sequence, earlier] : app_) {
        if (earlier_sequence >= sequence) break;
        if (earlier.kind == AppRequest::Kind::Flush) continue;
        if (earlier.stage != AppRequest::Stage::LocalDone && overlaps(earlier, r)) {
          blocked = true;
          break;
        }
      }
      const bool log_full =
          replicating() &&
          transfer_log_.size() >= kTransferLogEpochs * config_.max_unacked_epoch_writes;
      if (!blocked && !log_full && try_admit(r)) issue_write(sequence, r);
    }
    if (r.stage == AppRequest::Stage::Queued || r.stage == AppRequest::Stage::WaitingPersist) {
      all_issued = false;
    }
  }
}

bool ReplicaCore::all_local_done(std::uint64_t before_sequence) const {
  for (const auto& [sequence, r] : app_) {
    if (sequence >= before_sequence) break;
    if (r.kind != AppRequest::Kind::Flush && r.stage != AppRequest::Stage::LocalDone) return false;
  }
  return true;
}

// Holds the request's activity-log extents; true when it may go to disk now. Not before every
// one of them is in the log on disk: an extent another request (or a stream's prefetch) added
// is in the log in memory at once, but on disk only when that update's persist completes.
bool ReplicaCore::try_admit(AppRequest& r) {
  KEEL_ASSERT(r.extent_count == 0);
  const std::uint64_t first = r.offset / kExtentBytes;
  const std::uint64_t last = (r.offset + r.length - 1) / kExtentBytes;
  std::vector<std::uint64_t> added;
  std::uint64_t wait_for = 0;  // the persist that puts an extent already in the log on disk
  r.first_extent = first;
  for (std::uint64_t extent = first; extent <= last; ++extent) {
    std::optional<std::uint64_t> evicted;
    const ActivityLog::Admit admit = activity_.begin_write(extent, evicted);
    if (admit == ActivityLog::Admit::Full) {
      end_extents(r);
      // Every extent busy: retried when a write finishes or a barrier ack unpins one. Those
      // pinned only by writes the peer has not flushed wait for a barrier: if the current epoch
      // has not sent one, a checkpoint now, or nothing would ever come.
      force_checkpoint();
      return false;
    }
    ++r.extent_count;
    if (admit == ActivityLog::Admit::AddedNeedsPersist) {
      added.push_back(extent);
    } else if (const auto pending = extents_persisting_.find(extent);
               pending != extents_persisting_.end()) {
      wait_for = std::max(wait_for, pending->second);
    }
  }
  if (added.empty()) {
    if (wait_for == 0) return true;
    r.persist_id = wait_for;
    r.stage = AppRequest::Stage::WaitingPersist;
    return false;
  }
  prefetch_extents_after(first, last, added);
  // The persist carries every bitmap page changed so far (an evicted extent's dirty bits among
  // them, written before the log that no longer names the extent).
  r.persist_id = persist();
  for (const std::uint64_t extent : added) extents_persisting_[extent] = r.persist_id;
  r.stage = AppRequest::Stage::WaitingPersist;
  return false;
}

void ReplicaCore::end_extents(AppRequest& r) {
  for (std::uint64_t i = 0; i < r.extent_count; ++i) activity_.end_write(r.first_extent + i);
  r.extent_count = 0;
}

// A new extent right after one in the log: a sequential stream. The extents it will reach next
// join the log in the same update. Only with a log large enough that this cannot crowd out the
// extents that scattered writes keep hot.
void ReplicaCore::prefetch_extents_after(std::uint64_t first, std::uint64_t last,
                                         std::vector<std::uint64_t>& added) {
  if (first == 0 || !activity_.contains(first - 1)) return;
  if (activity_.capacity() < kMinExtentsForPrefetch) return;
  const std::uint64_t extents = (config_.size_bytes + kExtentBytes - 1) / kExtentBytes;
  for (std::uint64_t extent = last + 1; extent <= last + kPrefetchExtents && extent < extents;
       ++extent) {
    if (activity_.prefetch(extent)) added.push_back(extent);
  }
}

void ReplicaCore::issue_write(std::uint64_t sequence, AppRequest& r) {
  KEEL_ASSERT(r.stage == AppRequest::Stage::Queued || r.stage == AppRequest::Stage::WaitingPersist);
  KEEL_ASSERT(r.extent_count > 0);
  KEEL_ASSERT(unissued_ > 0);
  --unissued_;
  r.stage = AppRequest::Stage::Issued;
  const IoId io = new_io(IoOwner{IoOwner::Kind::App, sequence});
  invalidate_chunks(r.offset, r.length);  // resync/verify reads of these blocks are now stale
  const bool zero = r.kind == AppRequest::Kind::Zero;
  if (replicating()) {
    r.epoch = epoch_;
    r.sent = true;
    DataWrite write{
        sequence, epoch_, r.offset, zero ? r.length : 0, r.fua, zero ? nullptr : r.data};
    send(std::move(write));
    KEEL_ASSERT(transfer_log_.empty() || transfer_log_.back().epoch <= epoch_);
    transfer_log_.push_back(TransferEntry{epoch_, sequence, r.offset, r.length});
    pin_extents_for_peer(transfer_log_.back(), true);
    ++epoch_writes_;
    maybe_auto_barrier();
  } else {
    bitmap_.set_range(r.offset, r.length);  // the peer will need it
  }
  // A peer still being resynced holds this write but cannot stand in for this copy after a
  // power loss here (its copy is Inconsistent, and the resync that follows runs from this one):
  // until it is UpToDate, an acknowledged write must be durable on this disk by itself.
  const bool fua = r.fua || (replicating() && !peer_stands_in());
  if (zero) {
    actions_.emplace_back(DiskZero{io, r.offset, r.length, fua});
  } else {
    actions_.emplace_back(DiskWrite{io, r.offset, r.data, fua});
  }
}

void ReplicaCore::issue_flush(std::uint64_t sequence, AppRequest& r) {
  KEEL_ASSERT(r.stage == AppRequest::Stage::Queued);
  KEEL_ASSERT(unissued_ > 0);
  --unissued_;
  r.stage = AppRequest::Stage::Issued;
  const IoId io = new_io(IoOwner{IoOwner::Kind::App, sequence});
  if (replicating()) {
    r.epoch = epoch_;
    r.sent = true;
    send(Barrier{epoch_});
    ++epoch_;
    epoch_writes_ = 0;
  }
  actions_.emplace_back(DiskFlush{io});
}

// Bounds the transfer log: an epoch never holds more than max_unacked_epoch_writes writes.
void ReplicaCore::maybe_auto_barrier() {
  if (epoch_writes_ < config_.max_unacked_epoch_writes) return;
  force_checkpoint();
}

// Ends the current epoch with a checkpoint barrier, if it holds writes.
void ReplicaCore::force_checkpoint() {
  if (!replicating() || epoch_writes_ == 0) return;
  send(Barrier{epoch_, /*checkpoint=*/true});
  ++epoch_;
  epoch_writes_ = 0;
}

// Holds (or releases) the activity-log extents of a write the peer may have only in its cache.
void ReplicaCore::pin_extents_for_peer(const TransferEntry& entry, bool pin) {
  const std::uint64_t first = entry.offset / kExtentBytes;
  const std::uint64_t last = (entry.offset + entry.length - 1) / kExtentBytes;
  for (std::uint64_t extent = first; extent <= last; ++extent) {
    if (pin) {
      activity_.pin_for_peer(extent);
    } else {
      activity_.unpin_for_peer(extent);
    }
  }
}

void ReplicaCore::app_io_done(std::uint64_t sequence, int error) {
  auto it = app_.find(sequence);
  KEEL_ASSERT(it != app_.end());
  AppRequest& r = it->second;
  KEEL_ASSERT(r.stage == AppRequest::Stage::Issued);
  r.stage = AppRequest::Stage::LocalDone;
  r.local_error = error;
  if (r.kind == AppRequest::Kind::Flush) {
    if (error != 0 && r.internal) demote_flush_failed_ = true;
    if (error != 0) on_local_flush_failed(error);
    // Issued before an earlier flush failed, it may not have written what that one dropped.
    if ((stepping_down_ || r.fails) && r.local_error == 0) r.local_error = EIO;
    return;
  }
  if (error != 0) {
    mark_out_of_sync(r.offset, r.length);  // the copies may differ now
    notice(Notice::Level::Error, "local disk write failed at offset " + std::to_string(r.offset) +
                                     " (error " + std::to_string(error) + ")");
    if (!step_down_for_disk_error("a write at offset " + std::to_string(r.offset), error)) {
      disk_error_ = "a write failed at offset " + std::to_string(r.offset) + " (error " +
                    std::to_string(error) + "): its blocks are marked out of sync";
    }
  }
}

// Linux may drop the cached pages whose writeback failed and mark them clean, so a later flush
// succeeds without them: whatever a failed flush covered may be gone from this disk for good,
// whatever later flushes say, and retrying it proves nothing. A peer in sync (sync mode) holds
// every write acknowledged so far: this copy gives way to it (step_down_for_disk_error()).
// Without such a peer this copy is the volume's best: the application has the error, as it would
// from a local disk.
void ReplicaCore::on_local_flush_failed(int error) {
  notice(Notice::Level::Error, "a flush failed on the local disk (error " + std::to_string(error) +
                                   "): the writes it covered may be lost from this copy");
  if (stepping_down_ || role_ != Role::Primary) return;
  if (!step_down_for_disk_error("a flush", error)) {
    disk_error_ = "a flush failed (error " + std::to_string(error) +
                  "): with no peer in sync, the writes it covered may be lost";
  }
}

// A primary whose disk fails while its peer is in sync (sync mode: the peer holds every write
// acknowledged so far) gives way to it, as a failing disk should be taken out of service: it
// marks itself Inconsistent, with its activity-log extents (where every write this disk may have
// lost lies) marked for the resync that will rewrite it from the peer, and demotes, failing every
// flush that completes meanwhile, so that nothing reports as durable what this disk may have
// dropped. False if there is no such peer.
bool ReplicaCore::step_down_for_disk_error(std::string_view what, int error) {
  if (stepping_down_ || role_ != Role::Primary) return stepping_down_;
  if (config_.mode != Mode::Sync || !peer_stands_in()) return false;
  disk_error_ = std::string(what) + " failed (error " + std::to_string(error) +
                "): this copy gave way to the peer; promote it there";
  stepping_down_ = true;
  state_.disk = DiskState::Inconsistent;
  mark_activity_extents();
  step_down_persist_id_ = persist();
  notice(Notice::Level::Error,
         "stepping down: the peer holds every acknowledged write; promote it, and this copy "
         "resyncs from it");
  (void)demote();
  return true;
}

// The peer's disk failed too before this copy finished giving way to it: the peer may now lack
// acknowledged writes this copy holds, so neither copy holds them all, and this one, which still
// serves, is the better guess (the writes its own failure may have dropped are lost, as on a
// local disk). It stays UpToDate and finishes the demote it began as an ordinary one; the peer
// is resynced from it. A flush issued before now still fails: it may not have written what the
// failure dropped.
void ReplicaCore::abandon_step_down() {
  if (!stepping_down_) return;
  stepping_down_ = false;
  demote_flush_failed_ = true;  // its hot extents may lack what the failure dropped
  state_.disk = DiskState::UpToDate;
  persist();
  for (auto& [sequence, r] : app_) {
    if (r.kind == AppRequest::Kind::Flush) r.fails = true;
  }
  disk_error_ += "; the peer's disk failed too, so this copy kept the volume";
  notice(Notice::Level::Error,
         "the peer's disk failed too: this copy stays UpToDate; writes its own failure dropped "
         "may be lost");
}

void ReplicaCore::on_data_flush_failed(int error) {
  on_local_flush_failed(error);
  progress();
}

// The extents of the log in memory and of the log on disk: an extent that a pending log update
// drops may still hold writes the failed flush lost.
void ReplicaCore::mark_activity_extents() {
  const std::vector<std::uint64_t> in_memory = activity_.extents();
  for (const std::vector<std::uint64_t>* log : {&in_memory, &std::as_const(durable_log_)}) {
    for (const std::uint64_t extent : *log) {
      const std::uint64_t offset = extent * kExtentBytes;
      if (offset >= config_.size_bytes) continue;
      mark_out_of_sync(offset, std::min<std::uint64_t>(kExtentBytes, config_.size_bytes - offset));
    }
  }
}

// The ring's record that the peer is outdated is in and durable (a restart must not forget
// it: see track_without_peer()).
bool ReplicaCore::peer_recorded_outdated() const {
  return state_.peer_outdated && persisted_id_ >= outdated_persist_id_;
}

bool ReplicaCore::suspended() const {
  return role_ == Role::Primary && config_.mode == Mode::Sync && !replicating() &&
         !peer_recorded_outdated();
}

// Sync mode: a request the peer did not receive on the current connection (made while the link
// was down or in its handshake, or sent on a connection that broke) is acknowledged only once
// the ring records the peer outdated, or once the peer is UpToDate again, which it becomes only
// through the resync that copied the request's blocks (they are in the bitmap) and flushed them.
// The link coming back is not enough: until then neither the peer's copy nor a durable record
// holds the write, and the peer, still UpToDate on its disk, could be promoted without it.
bool ReplicaCore::held_for_peer(const AppRequest& r) const {
  if (config_.mode != Mode::Sync || r.sent) return false;
  return !peer_recorded_outdated() && !peer_stands_in();
}

bool ReplicaCore::finished(const AppRequest& r) const {
  return r.stage == AppRequest::Stage::LocalDone && (!r.sent || r.peer_acked);
}

void ReplicaCore::complete_app_requests() {
  for (auto it = app_.begin(); it != app_.end();) {
    AppRequest& r = it->second;
    if (!r.completed && r.stage == AppRequest::Stage::LocalDone && stepping_down_ &&
        held_for_peer(r)) {
      // The peer never got it, and this copy gives way to the peer's: never acknowledged.
      r.completed = true;
      if (!r.internal) complete(actions_, r.request, EIO);
    }
    if (!r.completed && r.stage == AppRequest::Stage::LocalDone && !held_for_peer(r)) {
      const bool peer_has_it = !r.sent || r.peer_acked;
      const std::uint64_t kept = r.data ? r.data->size() : 0;
      const bool ahead_of_peer = config_.mode == Mode::Async && !peer_has_it &&
                                 async_unacked_bytes_ + kept <= kMaxAsyncUnackedBytes &&
                                 async_unacked_writes_ < kMaxAsyncUnackedWrites;
      if (ahead_of_peer) {
        r.counted_async = true;
        async_unacked_bytes_ += kept;
        ++async_unacked_writes_;
      }
      if (ahead_of_peer || peer_has_it) {
        r.completed = true;
        if (!r.internal) complete(actions_, r.request, r.local_error, r.sent && r.peer_acked);
      }
    }
    if (r.completed && finished(r)) {
      end_extents(r);
      if (r.counted_async) {
        async_unacked_bytes_ -= r.data ? r.data->size() : 0;
        --async_unacked_writes_;
      }
      it = app_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReplicaCore::on_write_ack(const WriteAck& ack) {
  const auto it = app_.find(ack.sequence);
  if (it == app_.end() || !it->second.sent) return;  // from before a reconnect
  AppRequest& r = it->second;
  if (r.kind == AppRequest::Kind::Flush) return;  // not a write: a confused peer
  r.peer_acked = true;
  if (ack.error != 0) {
    abandon_step_down();
    mark_out_of_sync(r.offset, r.length);
    notice(Notice::Level::Warning, "peer failed a replicated write (error " +
                                       std::to_string(ack.error) + "); blocks marked out of sync");
  }
}

void ReplicaCore::on_barrier_ack(const BarrierAck& ack) {
  while (!transfer_log_.empty() && transfer_log_.front().epoch <= ack.epoch) {
    const TransferEntry& entry = transfer_log_.front();
    if (ack.error != 0) mark_out_of_sync(entry.offset, entry.length);
    pin_extents_for_peer(entry, false);
    transfer_log_.pop_front();
  }
  if (ack.error != 0) {
    abandon_step_down();
    notice(Notice::Level::Warning, "peer failed a barrier (error " + std::to_string(ack.error) +
                                       "); its writes marked out of sync");
  }
  for (auto& [sequence, r] : app_) {
    if (r.kind == AppRequest::Kind::Flush && r.sent && r.epoch <= ack.epoch) r.peer_acked = true;
  }
}

// The link is gone: whatever the peer may lack goes into the bitmap, and no ack will come.
void ReplicaCore::forget_peer_for_writes() {
  for (const TransferEntry& entry : transfer_log_) {
    bitmap_.set_range(entry.offset, entry.length);
    pin_extents_for_peer(entry, false);
  }
  transfer_log_.clear();
  epoch_writes_ = 0;
  for (auto& [sequence, r] : app_) {
    if (r.kind != AppRequest::Kind::Flush && r.stage != AppRequest::Stage::Queued) {
      bitmap_.set_range(r.offset, r.length);
    }
    r.sent = false;
  }
}

}  // namespace keel::volume::detail
