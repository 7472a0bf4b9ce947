// Online verify (primary, connected, in sync): both copies read the same chunk and compare
// digests; a mismatching chunk's blocks are set in the bitmap, and a resync pass follows the
// walk. Chunks are read under the same rules as resync (never across an application write in
// flight; a read an application write overtook is verified again). The peer reads in arrival
// order, so the request it got before any later write sees what the local read saw.
#include <algorithm>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume::detail {

Result<bool> ReplicaCore::start_verify() {
  if (role_ != Role::Primary) return Error{"verify runs on the primary"};
  if (link_ != LinkState::Connected) {
    return Error{"verify needs the peer connected and in sync (link is " +
                 std::string(to_string(link_)) + ")"};
  }
  if (verify_running_) return false;
  verify_running_ = true;
  verify_cursor_ = 0;
  verify_done_bytes_ = 0;
  verify_mismatched_blocks_ = 0;
  verify_retry_.clear();
  verify_read_failures_.clear();
  verify_unread_bytes_ = 0;
  notice(Notice::Level::Info, "verify started");
  progress();
  return true;
}

void ReplicaCore::issue_verify_reads() {
  if (link_ != LinkState::Connected || applying_earlier_peer_ops()) return;
  while (verify_chunks_.size() < config_.resync_in_flight_chunks && rate_allows()) {
    const bool retry = !verify_retry_.empty();
    const std::uint64_t offset = retry ? verify_retry_.front() : verify_cursor_;
    if (!retry && offset >= config_.size_bytes) return;
    const std::uint64_t length =
        std::min<std::uint64_t>(config_.resync_chunk_bytes, config_.size_bytes - offset);
    if (verify_chunks_.contains(offset) || app_write_in_flight(offset, length)) return;
    if (retry) {
      verify_retry_.pop_front();
    } else {
      verify_cursor_ += length;
    }
    const IoId io = new_io(IoOwner{IoOwner::Kind::Verify, offset});
    ChunkIo chunk;
    chunk.offset = offset;
    chunk.length = static_cast<std::uint32_t>(length);
    chunk.io = io;
    verify_chunks_.emplace(offset, chunk);
    actions_.emplace_back(DiskRead{io, offset, chunk.length});
    send(VerifyRequest{offset, chunk.length});
    rate_charge(length);
  }
}

void ReplicaCore::verify_read_done(IoId io, std::uint64_t offset, int error, const Payload& data) {
  const auto it = verify_chunks_.find(offset);
  if (it == verify_chunks_.end() || it->second.io != io) return;  // verify was stopped
  ChunkIo& chunk = it->second;
  chunk.reading = false;
  if (error != 0 || !data || data->size() != chunk.length) {
    notice(Notice::Level::Error, "verify read failed at offset " + std::to_string(offset));
    chunk.local_digest = 0;
    chunk.read_failed = true;
  } else {
    chunk.local_digest = digest_bytes(data->data(), data->size());
  }
  check_verify_chunk(offset);
}

void ReplicaCore::on_verify_reply(const VerifyReply& reply) {
  const auto it = verify_chunks_.find(reply.offset);
  if (it == verify_chunks_.end() || it->second.peer_digest) return;
  it->second.peer_digest = reply.digest;
  if (reply.error != 0) {
    notice(Notice::Level::Error, "verify read failed on the peer at offset " +
                                     std::to_string(reply.offset) + " (error " +
                                     std::to_string(reply.error) + ")");
    it->second.read_failed = true;
  }
  check_verify_chunk(reply.offset);
}

void ReplicaCore::check_verify_chunk(std::uint64_t offset) {
  const auto it = verify_chunks_.find(offset);
  KEEL_ASSERT(it != verify_chunks_.end());
  const ChunkIo chunk = it->second;
  if (!chunk.local_digest || !chunk.peer_digest) return;
  verify_chunks_.erase(it);
  if (chunk.invalidated) {
    verify_retry_.push_back(offset);  // a write overtook the local read: compare again
    return;
  }
  if (chunk.read_failed) {
    // No digest to compare: counting the chunk as differing would report a difference the
    // copies may not have (and resync blocks for nothing). Read it again, a few times.
    if (++verify_read_failures_[offset] < kMaxVerifyReadAttempts) {
      verify_retry_.push_back(offset);
      return;
    }
    verify_read_failures_.erase(offset);
    verify_done_bytes_ += chunk.length;
    verify_unread_bytes_ += chunk.length;
    notice(Notice::Level::Error, "verify: " + std::to_string(chunk.length) + " bytes at offset " +
                                     std::to_string(offset) + " could not be read, not compared");
    return;
  }
  verify_read_failures_.erase(offset);
  verify_done_bytes_ += chunk.length;
  if (*chunk.local_digest == *chunk.peer_digest) return;
  verify_mismatched_blocks_ += (chunk.length + kBlockBytes - 1) / kBlockBytes;
  bitmap_.set_range(offset, chunk.length);
  notice(Notice::Level::Warning, "verify: the copies differ in " + std::to_string(chunk.length) +
                                     " bytes at offset " + std::to_string(offset));
}

void ReplicaCore::finish_verify_if_done() {
  if (!verify_running_) return;
  if (verify_cursor_ < config_.size_bytes || !verify_retry_.empty() || !verify_chunks_.empty()) {
    return;
  }
  verify_running_ = false;
  notice(Notice::Level::Info,
         "verify complete: " + std::to_string(verify_mismatched_blocks_) + " blocks differ" +
             (verify_unread_bytes_ == 0
                  ? std::string()
                  : ", " + std::to_string(verify_unread_bytes_) + " bytes could not be read"));
  // The peer stays UpToDate in its own view while the differing blocks are copied to it.
  if (bitmap_.set_count() > 0 && link_ == LinkState::Connected) start_resync_source(false);
}

}  // namespace keel::volume::detail
