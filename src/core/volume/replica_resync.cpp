// Resync: the source copies the dirty bitmap's blocks to the target in chunks, at most
// resync_in_flight_chunks at a time, at resync_rate_bytes_s, while application writes continue.
//
// Never overwriting a newer application write: a chunk is not read while an application write to
// it is in flight, and a read that an application write overtook (issued after the read) is
// thrown away; its blocks stay set and a later pass reads them again. A chunk's ResyncData is sent
// the moment its read completes, so every later write to those blocks follows it on the link,
// and the target applies the two in that order.
#include <algorithm>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {

void ReplicaCore::start_resync_source(bool full) {
  if (state_.discard_local) {
    // The handshake made this copy the source all the same (the peer's copy is Inconsistent, or
    // has nothing newer): its changes stay, and the request must not linger to decide a later
    // split brain.
    state_.discard_local = false;
    notice(Notice::Level::Warning,
           "the discard asked for on this node did not apply: this copy is the resync source (the "
           "peer's copy is Inconsistent or has nothing newer)");
  }
  if (full) bitmap_.set_all();
  link_ = LinkState::SyncSource;
  // The target marks itself so (start_resync_target()) and says UpToDate again only once
  // ResyncDone is durable there: until then it does not stand in for this copy, even after
  // this side has sent the last block.
  peer_disk_ = DiskState::Inconsistent;
  resync_running_ = true;
  resync_cursor_ = 0;
  resync_total_bytes_ = bitmap_.dirty_bytes();
  resync_done_bytes_ = 0;
  resynced_blocks_ = 0;
  persist();
  notice(Notice::Level::Info, std::string(full ? "full " : "") + "resync to the peer: " +
                                  std::to_string(resync_total_bytes_) + " bytes");
}

void ReplicaCore::start_resync_target(bool full) {
  KEEL_ASSERT(role_ != Role::Primary);
  if (full) bitmap_.set_all();
  link_ = LinkState::SyncTarget;
  target_resync_ = true;
  disk_failed_in_resync_ = false;
  resync_total_bytes_ = bitmap_.dirty_bytes();
  resync_done_bytes_ = 0;
  state_.disk = DiskState::Inconsistent;  // durable before the first resync block lands
  target_persist_id_ = persist();
  notice(Notice::Level::Info, std::string(full ? "full " : "") + "resync from the peer: " +
                                  std::to_string(resync_total_bytes_) + " bytes");
}

// Blocks marked while connected and in sync (a write or a barrier failed on either disk) differ
// between the copies, or may: the primary copies them to the peer now, as after a verify,
// rather than at the next connection, which may be months away (status would show them out of
// sync meanwhile, and a peer that failed a write would stay Inconsistent). Not while a verify
// runs (its end starts the same resync) nor before the last resync's ResyncDone went out.
void ReplicaCore::resync_marked_blocks() {
  if (role_ != Role::Primary || link_ != LinkState::Connected || demoting_) return;
  if (verify_running_ || resync_done_ || bitmap_.set_count() == 0) return;
  notice(Notice::Level::Warning, "blocks marked out of sync while connected: resyncing them");
  start_resync_source(false);
}

bool ReplicaCore::chunk_in_flight(std::uint64_t offset, std::uint64_t length) const {
  return std::any_of(resync_chunks_.begin(), resync_chunks_.end(), [&](const auto& entry) {
    const ChunkIo& c = entry.second;
    return c.offset < offset + length && offset < c.offset + c.length;
  });
}

void ReplicaCore::issue_resync_reads() {
  if (link_ != LinkState::SyncSource) return;
  // Seed 947172: a new primary whose metadata write failed still held its old primary's last
  // writes when the resync began; they landed on blocks the resync had already sent.
  if (applying_earlier_peer_ops()) return;
  const std::uint64_t blocks = bitmap_.blocks();
  const std::uint64_t chunk_blocks = config_.resync_chunk_bytes / kBlockBytes;
  while (resync_chunks_.size() < config_.resync_in_flight_chunks && rate_allows()) {
    std::uint64_t first = bitmap_.next_set(resync_cursor_);
    if (first >= blocks) {
      // A pass is over; blocks left set (reads thrown away) wait for the chunks in flight.
      if (!resync_chunks_.empty() || bitmap_.set_count() == 0) return;
      resync_cursor_ = 0;
      first = bitmap_.next_set(0);
    }
    std::uint64_t end = first + 1;
    while (end < blocks && end - first < chunk_blocks && bitmap_.test(end)) ++end;
    const std::uint64_t offset = first * kBlockBytes;
    const std::uint64_t length = (end - first) * kBlockBytes;
    if (chunk_in_flight(offset, length)) {
      resync_cursor_ = end;
      continue;
    }
    if (app_write_in_flight(offset, length)) return;  // retried when the write completes
    const IoId io = new_io(IoOwner{IoOwner::Kind::Resync, offset});
    ChunkIo chunk;
    chunk.offset = offset;
    chunk.length = static_cast<std::uint32_t>(length);
    chunk.io = io;
    resync_chunks_.emplace(offset, chunk);
    actions_.emplace_back(DiskRead{io, offset, chunk.length});
    rate_charge(length);
    resync_cursor_ = end;
  }
}

void ReplicaCore::resync_read_done(IoId io, std::uint64_t offset, int error, const Payload& data) {
  const auto it = resync_chunks_.find(offset);
  if (it == resync_chunks_.end() || it->second.io != io) return;  // from a dropped connection
  ChunkIo& chunk = it->second;
  KEEL_ASSERT(chunk.reading);
  if (error != 0 || chunk.invalidated) {
    if (error != 0) {
      notice(Notice::Level::Error, "resync read failed at offset " + std::to_string(offset) +
                                       " (error " + std::to_string(error) + ")");
    }
    resync_chunks_.erase(it);  // its blocks stay set: read again on a later pass
    return;
  }
  KEEL_ASSERT(data && data->size() == chunk.length);
  chunk.reading = false;
  send(ResyncData{offset, data});
}

void ReplicaCore::on_resync_ack(const ResyncAck& ack) {
  const auto it = resync_chunks_.find(ack.offset);
  if (it == resync_chunks_.end() || it->second.reading) return;
  const ChunkIo chunk = it->second;
  resync_chunks_.erase(it);
  if (ack.error != 0) {
    notice(Notice::Level::Error, "the peer failed a resync write at offset " +
                                     std::to_string(ack.offset) + " (error " +
                                     std::to_string(ack.error) + ")");
    return;
  }
  if (chunk.remarked) return;  // its data is older than what marked them: copied again
  bitmap_.clear_range(chunk.offset, chunk.length);
  resync_done_bytes_ += chunk.length;
  resynced_blocks_ += chunk.length / kBlockBytes;
}

void ReplicaCore::finish_resync_if_done() {
  if (!resync_running_ || link_ != LinkState::SyncSource) return;
  if (!resync_chunks_.empty() || bitmap_.set_count() != 0) return;
  resync_running_ = false;
  state_.generations = finish_resync(state_.generations);
  if (role_ != Role::Primary) state_.primary_at_crash = false;  // the peer has those extents
  // The handshake chose this copy as the newer one, so no record of it being outdated can be in
  // force (a primary that recorded it so has written since, and that copy would be the source);
  // one that arrives all the same outlived its clear in another partition.
  if (state_.disk == DiskState::Outdated) state_.disk = DiskState::UpToDate;
  // The peer holds every change now and takes these generations with ResyncDone: a record
  // naming the current one no longer outdates it (it has caught up with that generation), and
  // this side cannot tell when the peer is UpToDate, as its StateUpdate may never come. So the
  // record is withdrawn here, not on that StateUpdate: a primary that loses the peer from now
  // on waits for a new record before it acknowledges anything alone (suspended()). The peer
  // stays Inconsistent on its disk until it has ResyncDone, so it cannot be promoted meanwhile.
  peer_up_to_date_again();
  link_ = LinkState::Connected;
  forget_survived_primary();
  // The target adopts these generations when it gets ResyncDone, so they are on disk here
  // first. Were this side to crash with its older generations on disk, it would come back
  // knowing less of its own history than the target it told, and the next connection could
  // take the target's copy for the newer one.
  //
  // The data too: what the target received may sit unflushed in this copy's cache (written
  // before a process crash, say), and a power loss here would take it from this copy only.
  actions_.emplace_back(DiskFlush{new_io(IoOwner{IoOwner::Kind::ResyncFlush, connection_})});
  resync_done_ = PendingResyncDone{persist(), connection_, ResyncDone{state_.generations}};
  notice(Notice::Level::Info,
         "resync to the peer complete: " + std::to_string(resynced_blocks_) + " blocks");
}

void ReplicaCore::resync_flush_done(std::uint64_t connection, int error) {
  if (!resync_done_ || resync_done_->connection != connection) return;
  if (error != 0) {
    // Not a reason to call this copy Inconsistent: it holds every block it sent, and on a
    // primary it holds every write the application was told of, which a copy marked so would
    // give up to the older peer at the next connection. The target stays Inconsistent until
    // ResyncDone, so the flush is tried again; past kMaxResyncFlushAttempts the connection is
    // dropped, and the next one resyncs the target again.
    notice(Notice::Level::Error,
           "flushing the resync source's copy failed (error " + std::to_string(error) + ")");
    on_local_flush_failed(error);
    if (!stepping_down_ && ++resync_done_->flush_failures < kMaxResyncFlushAttempts) {
      actions_.emplace_back(DiskFlush{new_io(IoOwner{IoOwner::Kind::ResyncFlush, connection})});
      return;
    }
    resync_done_.reset();
    if (link_alive() && !stepping_down_) {  // a copy stepping down drops it once demoted
      actions_.emplace_back(ClosePeer{"the resync source's copy cannot be flushed"});
      drop_connection();
    }
    return;
  }
  resync_done_->flushed = true;
  send_resync_done_when_durable();
}

void ReplicaCore::send_resync_done_when_durable() {
  if (!resync_done_ || !resync_done_->flushed) return;
  if (persisted_id_ < resync_done_->persist_id) return;
  // A connection lost meanwhile leaves the target Inconsistent; the next one starts over.
  if (resync_done_->connection == connection_ && link_alive()) send(resync_done_->message);
  resync_done_.reset();
}

// The chunk's ResyncData went out before whatever marked these blocks now (a write that failed
// on this disk left them unknown here, or one the peer failed left them unknown there): the
// target holds the chunk's data, then the write's outcome, which is not this copy's content.
void ReplicaCore::mark_out_of_sync(std::uint64_t offset, std::uint64_t length) {
  bitmap_.set_range(offset, length);
  for (auto& [chunk_offset, chunk] : resync_chunks_) {
    if (chunk.offset < offset + length && offset < chunk.offset + chunk.length) {
      chunk.remarked = true;
    }
  }
}

void ReplicaCore::invalidate_chunks(std::uint64_t offset, std::uint64_t length) {
  for (auto* chunks : {&resync_chunks_, &verify_chunks_}) {
    for (auto& [chunk_offset, chunk] : *chunks) {
      if (chunk.reading && chunk.offset < offset + length && offset < chunk.offset + chunk.length) {
        chunk.invalidated = true;
      }
    }
  }
}

}  // namespace keel::volume::detail
