#include "core/volume/replica.hpp"

#include <algorithm>
#include <set>

#include "core/common/assert.hpp"
#include "core/volume/replica_core.hpp"

namespace keel::volume {

// ---- Replica: forwards to the core ----

Replica::Replica(const ReplicaConfig& config, const PersistentState& loaded, DirtyBitmap bitmap,
                 const std::vector<std::uint64_t>& activity_extents)
    : core_(std::make_unique<detail::ReplicaCore>(config, loaded, std::move(bitmap),
                                                  activity_extents)) {}
Replica::~Replica() = default;
Replica::Replica(Replica&&) noexcept = default;
Replica& Replica::operator=(Replica&&) noexcept = default;

void Replica::on_write(RequestId request, std::uint64_t offset, Payload data, bool fua) {
  core_->on_write(request, offset, std::move(data), fua);
}
void Replica::on_write_zeroes(RequestId request, std::uint64_t offset, std::uint64_t length,
                              bool fua) {
  core_->on_write_zeroes(request, offset, length, fua);
}
void Replica::on_flush(RequestId request) { core_->on_flush(request); }
bool Replica::serves_io() const { return core_->serves_io(); }
void Replica::on_disk_done(IoId io, int error) { core_->on_disk_done(io, error); }
void Replica::on_disk_read_done(IoId io, int error, Payload data) {
  core_->on_disk_read_done(io, error, std::move(data));
}
void Replica::on_persisted(std::uint64_t persist_id, int error) {
  core_->on_persisted(persist_id, error);
}
void Replica::on_data_flush_failed(int error) { core_->on_data_flush_failed(error); }
void Replica::on_journaled(std::uint64_t persist_id) { core_->on_journaled(persist_id); }
void Replica::on_peer_connected() { core_->on_peer_connected(); }
void Replica::on_peer_message(const PeerMessage& message) { core_->on_peer_message(message); }
void Replica::on_peer_disconnected() { core_->on_peer_disconnected(); }
void Replica::on_peer_outdated_recorded(Generation generation) {
  core_->on_peer_outdated_recorded(generation);
}
void Replica::on_told_outdated() { core_->on_told_outdated(0); }
void Replica::on_told_outdated(Generation as_of) { core_->on_told_outdated(as_of); }
void Replica::on_own_record_repeated(Generation generation) {
  core_->on_own_record_repeated(generation);
}
Result<bool> Replica::promote(bool force) { return core_->promote(force); }
Result<bool> Replica::demote() { return core_->demote(); }
Result<bool> Replica::discard_local_data() { return core_->discard_local_data(); }
Result<bool> Replica::start_verify() { return core_->start_verify(); }
void Replica::on_tick(TimeUs now) { core_->on_tick(now); }
TimeUs Replica::next_deadline() const { return core_->next_deadline(); }
std::vector<Action> Replica::take_actions() { return core_->take_actions(); }
ReplicaStatus Replica::status() const { return core_->status(); }
LinkState Replica::link_state() const { return core_->link_state(); }
const DirtyBitmap& Replica::bitmap() const { return core_->bitmap(); }
const PersistentState& Replica::persistent_state() const { return core_->persistent_state(); }

void recover_unsaved_updates(const std::vector<UnsavedUpdate>& updates, PersistentState& state,
                             DirtyBitmap& bitmap, std::vector<std::uint64_t>& extents,
                             std::size_t max_extents) {
  if (updates.empty()) return;
  state = updates.back().state;
  for (const UnsavedUpdate& update : updates) {
    for (const auto& [page, bytes] : update.pages) bitmap.load_page(page, bytes);
  }
  std::vector<std::uint64_t> kept;
  std::set<std::uint64_t> seen;
  const std::uint64_t volume_bytes = bitmap.blocks() * kBlockBytes;
  const auto keep = [&](const std::vector<std::uint64_t>& from) {
    for (const std::uint64_t extent : from) {
      if (!seen.insert(extent).second) continue;
      if (kept.size() < max_extents) {
        kept.push_back(extent);
      } else if (extent * kExtentBytes < volume_bytes) {
        // No room in the log: its blocks are marked out of sync instead, for the resync.
        bitmap.set_range(extent * kExtentBytes,
                         std::min(kExtentBytes, volume_bytes - extent * kExtentBytes));
      }
    }
  };
  for (auto update = updates.rbegin(); update != updates.rend(); ++update) {
    keep(update->activity_extents);
  }
  keep(extents);
  extents = std::move(kept);
}

namespace detail {

// PersistentState::primary_sync_boot: an agent restart within the boot in which this copy was in
// sync with its primary; a power loss or kernel crash since would have changed the boot.
bool claims_primary_sync(const ReplicaConfig& config, const PersistentState& loaded) {
  return config.mode == Mode::Sync && config.boot != 0 && loaded.primary_sync_boot == config.boot &&
         loaded.disk == DiskState::UpToDate;
}

ReplicaCore::ReplicaCore(const ReplicaConfig& config, const PersistentState& loaded,
                         DirtyBitmap bitmap, const std::vector<std::uint64_t>& activity_extents)
    : config_(config),
      state_(loaded),
      bitmap_(std::move(bitmap)),
      activity_(config.activity_log_extents),
      survived_primary_(loaded.survived_primary || claims_primary_sync(config, loaded)) {
  KEEL_ASSERT(config_.size_bytes > 0 && config_.size_bytes % kBlockBytes == 0);
  KEEL_ASSERT(bitmap_.blocks() == config_.size_bytes / kBlockBytes);
  KEEL_ASSERT(config_.resync_chunk_bytes >= kBlockBytes);
  KEEL_ASSERT(config_.resync_chunk_bytes % kBlockBytes == 0);
  KEEL_ASSERT(config_.resync_chunk_bytes <= kMaxDataBytes);
  KEEL_ASSERT(config_.resync_in_flight_chunks > 0 && config_.max_unacked_epoch_writes > 0);
  KEEL_ASSERT(kTransferLogEpochs * config_.max_unacked_epoch_writes + kMaxAppRequests +
                  config_.resync_in_flight_chunks <
              kMaxPeerOps);
  // Distinct per node and per persisted state, so that two nodes (or one node after a restart)
  // never draw the same generation from the same configured seed.
  generation_state_ =
      config_.generation_seed ^ (std::uint64_t{config_.self} << 40) ^ state_.generations.current;
  if (state_.primary_at_crash) {
    // Writes the peer never saw can only lie in the extents that were hot at the crash.
    for (std::uint64_t extent : activity_extents) {
      const std::uint64_t offset = extent * kExtentBytes;
      if (offset >= config_.size_bytes) continue;
      bitmap_.set_range(offset, std::min<std::uint64_t>(kExtentBytes, config_.size_bytes - offset));
    }
    if (!activity_extents.empty()) {
      notice(Notice::Level::Warning,
             "crashed as primary: " + std::to_string(activity_extents.size()) +
                 " activity-log extents marked out of sync");
    }
  }
  activity_.load(activity_extents);
  durable_log_ = activity_extents;
  // The shell re-announces this record at start (the recorder's memory of it is the flag).
  if (state_.peer_outdated) record_generation_ = state_.generations.current;
}

bool ReplicaCore::serves_io() const {
  // Not before the old primary's last writes are applied (issue_app_requests()): reads would
  // see what they replace.
  return role_ == Role::Primary && state_.disk == DiskState::UpToDate && promote_persisted_ &&
         !demoting_ && peer_ops_.empty();
}

ReplicaStatus ReplicaCore::status() const {
  ReplicaStatus out;
  out.role = role_;
  out.disk = state_.disk;
  out.link = link_;
  if (peer_ready()) {
    out.peer_role = peer_role_;
    out.peer_disk = peer_disk_;
  }
  out.generations = state_.generations;
  out.suspended = suspended();
  out.peer_outdated = state_.peer_outdated;
  out.out_of_sync_bytes = bitmap_.dirty_bytes();
  const bool resyncing = resync_running_ || target_resync_;
  out.resync_total_bytes = resyncing ? resync_total_bytes_ : 0;
  out.resync_done_bytes = resyncing ? resync_done_bytes_ : 0;
  out.resynced_blocks = resynced_blocks_;
  out.writes_in_flight = app_.size();
  out.verify_done_bytes = verify_done_bytes_;
  out.verify_mismatched_blocks = verify_mismatched_blocks_;
  out.verify_running = verify_running_;
  out.refused_reason = refused_reason_;
  out.disk_error = disk_error_;
  out.stepping_down = stepping_down_;
  return out;
}

std::vector<Action> ReplicaCore::take_actions() {
  std::vector<Action> out;
  out.swap(actions_);
  return out;
}

std::uint64_t ReplicaCore::persist() {
  Persist p;
  p.id = next_persist_id_++;
  p.bitmap_pages = bitmap_.take_changed_pages();
  p.state = state_;
  if (durable_generations_) p.state.generations = *durable_generations_;
  p.activity_extents = activity_.extents();
  p.flush_data_first = activity_.departures() != departures_persisted_;
  departures_persisted_ = activity_.departures();
  logs_persisting_.emplace_back(p.id, p.activity_extents);
  const std::uint64_t id = p.id;
  actions_.emplace_back(std::move(p));
  return id;
}

void ReplicaCore::on_persisted(std::uint64_t persist_id, int error) {
  KEEL_ASSERT(persist_id > persisted_id_ && persist_id < next_persist_id_);  // in order
  persisted_id_ = persist_id;
  std::erase_if(extents_persisting_, [&](const auto& entry) { return entry.second <= persist_id; });
  while (!logs_persisting_.empty() && logs_persisting_.front().first <= persist_id) {
    durable_log_ = std::move(logs_persisting_.front().second);
    logs_persisting_.pop_front();
  }
  if (error != 0) {
    notice(Notice::Level::Error,
           "persisting volume metadata failed (error " + std::to_string(error) + ")");
  }
  if (!promote_persisted_ && persisted_id_ >= promote_persist_id_) promote_persisted_ = true;
  release_held_sends();
  send_resync_done_when_durable();
  progress();
}

void ReplicaCore::on_journaled(std::uint64_t persist_id) {
  KEEL_ASSERT(persist_id < next_persist_id_);
  if (persist_id <= journaled_id_) return;
  journaled_id_ = persist_id;
  progress();
}

IoId ReplicaCore::new_io(IoOwner owner) {
  const IoId io = next_io_++;
  const bool inserted = io_owner_.emplace(io, owner).second;
  KEEL_ASSERT(inserted);
  return io;
}

void ReplicaCore::on_disk_done(IoId io, int error) {
  const auto it = io_owner_.find(io);
  KEEL_ASSERT(it != io_owner_.end());
  const IoOwner owner = it->second;
  io_owner_.erase(it);
  switch (owner.kind) {
    case IoOwner::Kind::App:
      app_io_done(owner.key, error);
      break;
    case IoOwner::Kind::Peer:
      peer_op_done(owner.key, error, nullptr);
      break;
    case IoOwner::Kind::ResyncFlush:
      resync_flush_done(owner.key, error);
      break;
    case IoOwner::Kind::SurvivorFlush:
      survivor_flush_done(owner.key, error);
      break;
    case IoOwner::Kind::Resync:
    case IoOwner::Kind::Verify:
      KEEL_ASSERT(false);  // reads complete through on_disk_read_done
  }
  progress();
}

void ReplicaCore::on_disk_read_done(IoId io, int error, Payload data) {
  const auto it = io_owner_.find(io);
  KEEL_ASSERT(it != io_owner_.end());
  const IoOwner owner = it->second;
  io_owner_.erase(it);
  switch (owner.kind) {
    case IoOwner::Kind::Peer:
      peer_op_done(owner.key, error, data);
      break;
    case IoOwner::Kind::Resync:
      resync_read_done(io, owner.key, error, data);
      break;
    case IoOwner::Kind::Verify:
      verify_read_done(io, owner.key, error, data);
      break;
    case IoOwner::Kind::App:
    case IoOwner::Kind::ResyncFlush:
    case IoOwner::Kind::SurvivorFlush:
      KEEL_ASSERT(false);  // the application's reads never pass through the replica
  }
  progress();
}

Generation ReplicaCore::fresh_generation() {
  for (;;) {
    generation_state_ += 0x9E3779B97F4A7C15ull;  // splitmix64
    std::uint64_t z = generation_state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const Generations& g = state_.generations;
    if (z != 0 && z != g.current && z != g.bitmap) return z;
  }
}

void ReplicaCore::notice(Notice::Level level, std::string text) {
  actions_.emplace_back(Notice{level, std::move(text)});
}

void ReplicaCore::send(PeerMessage message) {
  KEEL_ASSERT(link_ != LinkState::StandAlone && link_ != LinkState::SplitBrain &&
              link_ != LinkState::Unrelated);
  if (persisted_id_ < sends_wait_for_persist_) {
    held_sends_.push_back(std::move(message));
    return;
  }
  actions_.emplace_back(SendToPeer{std::move(message)});
}

// A peer's operation failed on this disk: its error answer, and everything sent after it, waits
// until this copy's Inconsistent state is durable. Answered at once, a crash before that
// persist would bring this copy back UpToDate without the write the primary went on to
// acknowledge (it has the write itself), and a promotion could then lose it.
void ReplicaCore::hold_sends_until_persisted() {
  sends_wait_for_persist_ = std::max(sends_wait_for_persist_, next_persist_id_ - 1);
}

void ReplicaCore::release_held_sends() {
  if (persisted_id_ < sends_wait_for_persist_) return;
  for (PeerMessage& message : held_sends_) actions_.emplace_back(SendToPeer{std::move(message)});
  held_sends_.clear();
}

bool ReplicaCore::peer_ready() const {
  return link_ == LinkState::Connected || link_ == LinkState::SyncSource ||
         link_ == LinkState::SyncTarget;
}

bool ReplicaCore::replicating() const {
  return link_ == LinkState::Connected || link_ == LinkState::SyncSource;
}

bool ReplicaCore::peer_stands_in() const {
  return link_ == LinkState::Connected && peer_disk_ == DiskState::UpToDate;
}

bool ReplicaCore::rate_allows() const {
  return config_.resync_rate_bytes_s == 0 || now_ >= rate_next_us_;
}

void ReplicaCore::rate_charge(std::uint64_t bytes) {
  if (config_.resync_rate_bytes_s == 0) return;
  rate_next_us_ = std::max(rate_next_us_, now_) + bytes * 1'000'000 / config_.resync_rate_bytes_s;
}

void ReplicaCore::on_tick(TimeUs now) {
  now_ = std::max(now_, now);
  progress();
}

TimeUs ReplicaCore::next_deadline() const {
  const bool resync_waits = resync_running_ && bitmap_.set_count() > 0 &&
                            resync_chunks_.size() < config_.resync_in_flight_chunks;
  const bool verify_waits =
      verify_running_ && verify_chunks_.size() < config_.resync_in_flight_chunks;
  if ((resync_waits || verify_waits) && !rate_allows()) return rate_next_us_;
  return kNever;
}

void ReplicaCore::progress() {
  issue_app_requests();
  issue_peer_ops();
  if (resync_running_) issue_resync_reads();
  if (verify_running_) issue_verify_reads();
  resync_marked_blocks();
  complete_app_requests();
  finish_demote_if_ready();
  finish_resync_if_done();
  finish_verify_if_done();
}

bool ReplicaCore::applying_earlier_peer_ops() const {
  return std::any_of(peer_ops_.begin(), peer_ops_.end(),
                     [this](const auto& entry) { return entry.second.connection != connection_; });
}

bool ReplicaCore::app_write_in_flight(std::uint64_t offset, std::uint64_t length) const {
  for (const auto& [sequence, request] : app_) {
    if (request.kind == AppRequest::Kind::Flush) continue;
    if (request.stage == AppRequest::Stage::LocalDone) continue;
    if (request.offset < offset + length && offset < request.offset + request.length) return true;
  }
  return false;
}

}  // namespace detail
}  // namespace keel::volume
