#include "agent/volume_runner.hpp"

#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <memory>
#include <utility>

#include "agent/volume_identity.hpp"
#include "agent/volume_unsaved_metadata.hpp"
#include "core/common/assert.hpp"
#include "io/clock.hpp"
#include "io/errno_text.hpp"

namespace keel::agent {

namespace {

// Reads and writes up to this size run on the volume's thread when the page cache allows; the
// larger ones, whose copying costs more than a hand-off to a worker, run in the pool in parallel.
constexpr std::size_t kInlineIoBytes = 64 * 1024;

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  return seed | 1;
}

}  // namespace

Result<std::unique_ptr<VolumeRunner>> VolumeRunner::open(asio::io_context& io,
                                                         const config::ClusterConfig& cluster,
                                                         const config::VolumeConfig& volume,
                                                         NodeId self, const io::ClusterKey& key,
                                                         Hooks hooks) {
  std::unique_ptr<VolumeRunner> runner(new VolumeRunner(io, volume, self, std::move(hooks)));
  const std::string& name = volume.name;
  auto header = volume_metadata_header(volume, self);
  auto metadata = io::VolumeMetadataFile::open(volume.metadata_for(self), header);
  if (!metadata.ok()) {
    return Error{"volume " + name + ": " + metadata.error().message + " (run `keel volume create " +
                 name + "` on this node first)"};
  }
  runner->metadata_ = std::make_unique<io::VolumeMetadataFile>(std::move(metadata).value());
  io::BlockFileOptions disk_options;
  disk_options.path = volume.backing_for(self);
  disk_options.size_bytes = volume.size_bytes;
  auto disk = io::BlockFile::open(io, disk_options);
  if (!disk.ok()) return Error{"volume " + name + ": " + disk.error().message};
  runner->disk_ = std::move(disk).value();

  volume::DirtyBitmap bitmap(volume.size_bytes);
  auto loaded = runner->metadata_->read_bitmap(bitmap);
  if (!loaded.ok()) return Error{"volume " + name + ": " + loaded.error().message};
  if (loaded.value().damaged_pages > 0) {
    spdlog::warn("volume {}: {} damaged bitmap page(s) read as all dirty", name,
                 loaded.value().damaged_pages);
  }
  volume::PersistentState state = runner->metadata_->state();
  std::vector<std::uint64_t> extents = runner->metadata_->activity_extents();
  const std::string journal = unsaved_metadata_path(cluster.agent.state_dir, name);
  if (auto recovered =
          recover_unsaved_metadata(journal, name, *runner->metadata_, state, bitmap, extents);
      !recovered) {
    return Error{"volume " + name + ": " + recovered.error().message};
  }
  runner->journal_ = std::make_unique<UnsavedMetadataJournal>(journal, name, header);
  volume::ReplicaConfig replica;
  replica.self = self;
  replica.peer = runner->peer_;
  replica.size_bytes = volume.size_bytes;
  replica.volume_digest = volume_digest(volume);
  replica.mode = volume.mode;
  replica.resync_rate_bytes_s = volume.resync_rate_bytes_s;
  replica.activity_log_extents = volume.activity_log_extents;
  replica.generation_seed = random_seed();
  replica.boot = this_boot();
  if (replica.boot == 0) {
    spdlog::warn(
        "volume {}: cannot read this host's boot id; a restarted agent will not know "
        "whether its copy outlived a primary that lost power",
        name);
  }
  runner->replica_ = std::make_unique<volume::Replica>(replica, state, std::move(bitmap), extents);

  const config::NodeConfig* own = cluster.node_by_id(self);
  const config::NodeConfig* other = cluster.node_by_id(runner->peer_);
  KEEL_ASSERT(own && other);
  runner->peer_name_ = other->name;
  io::ReplicationLinkOptions link{
      name,           volume.size_bytes,       self, runner->peer_, own->address,
      other->address, volume.replication_port, key};
  VolumeRunner* raw = runner.get();
  auto opened = io::ReplicationLink::open(io, link,
                                          {[raw] {
                                             raw->replica_->on_peer_connected();
                                             raw->run_actions();
                                           },
                                           [raw](const volume::PeerMessage& message) {
                                             raw->replica_->on_peer_message(message);
                                             raw->run_actions();
                                           },
                                           [raw](const std::string&) {
                                             raw->replica_->on_peer_disconnected();
                                             raw->run_actions();
                                           }});
  if (!opened.ok()) return opened.error();
  runner->link_ = std::move(opened).value();

  io::NbdServerOptions nbd_options;
  nbd_options.export_name = name;
  nbd_options.description = "keel mirrored volume " + name;
  nbd_options.unix_path = volume.nbd_socket;
  if (volume.nbd_listen) {
    nbd_options.tcp_address = volume.nbd_listen->host;
    nbd_options.tcp_port = volume.nbd_listen->port;
  }
  auto nbd = io::NbdServer::open(io, *runner, nbd_options);
  if (!nbd.ok()) return Error{"volume " + name + ": " + nbd.error().message};
  runner->nbd_ = std::move(nbd).value();
  return runner;
}

VolumeRunner::VolumeRunner(asio::io_context& io, const config::VolumeConfig& volume, NodeId self,
                           Hooks hooks)
    : io_(io),
      config_(volume),
      self_(self),
      peer_(volume.nodes[0] == self ? volume.nodes[1] : volume.nodes[0]),
      hooks_(std::move(hooks)),
      timer_(io) {}

VolumeRunner::~VolumeRunner() { stop(); }

void VolumeRunner::start() {
  // The metadata worker writes and syncs files: ordinary priority (see BlockFile::run_worker).
  metadata_worker_.run([] {
    sched_param ordinary{};
    (void)::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &ordinary);
  });
  replica_->on_tick(io::monotonic_now_us());
  const volume::ReplicaStatus status = replica_->status();
  spdlog::info("volume {}: {} {}, {} bytes out of sync; NBD export ready", config_.name,
               volume::to_string(status.role), volume::to_string(status.disk),
               status.out_of_sync_bytes);
  link_->start();
  nbd_->start();
  run_actions();
}

void VolumeRunner::stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  if (nbd_) nbd_->close();
  if (link_) link_->close();
  metadata_worker_.stop();
  // Updates the worker dropped, or wrote without this thread hearing so, are kept for the next
  // start (a journal of updates already written applies them again, harmlessly).
  if (journal_) journal_->stopping();  // absent when open() failed before reading the metadata
  for (Done& done : requests_) {
    if (done) std::exchange(done, nullptr)(ESHUTDOWN);
  }
  requests_.clear();
  request_uses_.clear();
  free_slots_.clear();
}

void VolumeRunner::on_peer_left() {
  if (link_ && link_->connected()) link_->drop("the peer left the ring's view");
}

void VolumeRunner::on_peer_in_view() {
  if (link_) link_->dial_now();
}

void VolumeRunner::on_peer_outdated_recorded(volume::Generation generation) {
  replica_->on_peer_outdated_recorded(generation);
  run_actions();
}

void VolumeRunner::on_own_record_repeated(volume::Generation generation) {
  replica_->on_own_record_repeated(generation);
  run_actions();
}

void VolumeRunner::on_told_outdated(volume::Generation as_of) {
  replica_->on_told_outdated(as_of);
  run_actions();
  // The peer's record counts, in a view that is a majority only with this node, once this copy
  // refuses promotion whatever happens to this agent: once it is marked on the disk
  // (outdate_records.hpp). A copy the record does not concern (caught up since) says nothing.
  if (replica_->persistent_state().disk == volume::DiskState::UpToDate) return;
  // Each record told is confirmed: two can arrive within one metadata write (a repeat after a
  // view change carries the current record and an older one), and the primary waits for the
  // confirmation of its current one.
  std::uint64_t& after = outdated_to_confirm_[as_of];
  after = std::max(after, newest_submitted_id_);
  confirm_outdated_when_durable();
}

void VolumeRunner::confirm_outdated_when_durable() {
  std::vector<volume::Generation> durable;
  std::erase_if(outdated_to_confirm_, [&](const auto& entry) {
    if (newest_persisted_id_ < entry.second) return false;
    durable.push_back(entry.first);
    return true;
  });
  for (const volume::Generation as_of : durable) {
    if (hooks_.outdated_durable) hooks_.outdated_durable(config_.name, as_of);
  }
}

namespace {
Result<Ok> to_ok(Result<bool> done) {
  if (!done.ok()) return done.error();
  return Ok{};
}
}  // namespace

Result<Ok> VolumeRunner::promote(bool force) {
  auto done = to_ok(replica_->promote(force));
  run_actions();
  return done;
}

Result<Ok> VolumeRunner::demote() {
  auto done = to_ok(replica_->demote());
  run_actions();
  return done;
}

Result<Ok> VolumeRunner::discard_local() {
  auto done = to_ok(replica_->discard_local_data());
  run_actions();
  return done;
}

Result<Ok> VolumeRunner::verify() {
  auto done = to_ok(replica_->start_verify());
  run_actions();
  return done;
}

std::string VolumeRunner::unavailable_reason() const {
  if (replica_->serves_io()) return "";
  const volume::ReplicaStatus status = replica_->status();
  if (status.role != volume::Role::Primary) {
    return "volume " + config_.name + " is secondary on this node; its primary serves it" +
           (status.peer_role == volume::Role::Primary ? " (node " + peer_name_ + ")" : "");
  }
  return "volume " + config_.name + " cannot serve on this node: disk " +
         std::string(volume::to_string(status.disk));
}

volume::RequestId VolumeRunner::remember(Done done) {
  KEEL_ASSERT(done);
  if (free_slots_.empty()) {
    KEEL_ASSERT(requests_.size() < std::numeric_limits<std::uint32_t>::max());
    free_slots_.push_back(static_cast<std::uint32_t>(requests_.size()));
    requests_.emplace_back();
    request_uses_.push_back(0);
  }
  const std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  KEEL_ASSERT(!requests_[slot]);
  requests_[slot] = std::move(done);
  const std::uint32_t uses = ++request_uses_[slot];
  return (std::uint64_t{uses} << 32) | slot;
}

VolumeRunner::Done VolumeRunner::forget(volume::RequestId id) {
  const auto slot = static_cast<std::uint32_t>(id);
  KEEL_ASSERT(slot < requests_.size() && request_uses_[slot] == (id >> 32) && requests_[slot]);
  Done done = std::exchange(requests_[slot], nullptr);
  free_slots_.push_back(slot);
  return done;
}

int VolumeRunner::read_descriptor(std::uint64_t offset, std::uint32_t length) {
  // Reads come from this copy whenever it serves (as in read()). A range the page cache does not
  // hold all of is read by the pool instead: sendfile on this thread would wait for the disk
  // with every other request of the volume behind it, one read at a time.
  if (!replica_->serves_io() || !disk_->range_cached(offset, length)) return -1;
  return disk_->descriptor();
}

void VolumeRunner::read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) {
  if (!replica_->serves_io()) {
    // Posted too: the NBD connection would otherwise parse its next request inside this call.
    asio::post(io_, [done = std::move(done)] { done(ESHUTDOWN); });
    return;
  }
  // Small reads from the page cache on this thread when it can be (no hand-off to a worker and
  // back); the completion is posted all the same, as BlockDevice promises. Large ones go to the
  // pool, where their copying runs beside this thread's work.
  if (length > kInlineIoBytes) return disk_->read(offset, length, into, std::move(done));
  const int cached = disk_->read_cached(offset, {into, length});
  if (cached == EAGAIN) return disk_->read(offset, length, into, std::move(done));
  asio::post(io_, [done = std::move(done), cached] { done(cached); });
}

void VolumeRunner::write(std::uint64_t offset, volume::Payload data, bool fua, Done done) {
  replica_->on_write(remember(std::move(done)), offset, std::move(data), fua);
  run_actions();
}

void VolumeRunner::flush(Done done) {
  replica_->on_flush(remember(std::move(done)));
  run_actions();
}

void VolumeRunner::trim(std::uint64_t offset, std::uint32_t length, bool fua, Done done) {
  // TRIM reads back as zeroes on both copies, so that verify never sees a false difference.
  write_zeroes(offset, length, fua, std::move(done));
}

// A client zeroes or discards up to 4 GiB at once, which may span more extents than the activity
// log holds; the core refuses a request it could never admit whole. Such a request goes in
// pieces of half the log each, one after another (one of the core's request slots, however
// large the request), and completes with its last piece or its first error.
void VolumeRunner::write_zeroes(std::uint64_t offset, std::uint32_t length, bool fua, Done done) {
  const std::uint64_t piece_extents = std::max<std::uint64_t>(1, config_.activity_log_extents / 2);
  const std::uint64_t end = offset + length;
  if (length == 0 || volume::extents_spanned(offset, length) <= piece_extents) {
    replica_->on_write_zeroes(remember(std::move(done)), offset, length, fua);
  } else {
    zero_next_piece(
        std::make_shared<ZeroPieces>(ZeroPieces{offset, end, piece_extents, fua, std::move(done)}));
  }
  run_actions();
}

void VolumeRunner::zero_next_piece(std::shared_ptr<ZeroPieces> pieces) {
  const std::uint64_t from = pieces->next;
  const std::uint64_t to = std::min(
      pieces->end, (from / volume::kExtentBytes + pieces->piece_extents) * volume::kExtentBytes);
  pieces->next = to;
  replica_->on_write_zeroes(remember([this, pieces](int error) {
                              if (error == 0 && stopped_) error = ESHUTDOWN;
                              if (error != 0 || pieces->next == pieces->end) {
                                return pieces->done(error);
                              }
                              zero_next_piece(pieces);
                              run_actions();
                            }),
                            from, static_cast<std::uint32_t>(to - from), pieces->fua);
}

void VolumeRunner::run_actions() {
  // Writes into the page cache and cached reads complete inside this loop (the next
  // take_actions() collects what follows), and a Complete may start a new request at once (the
  // NBD connection reads on): guard re-entry.
  if (running_actions_ || stopped_) return;
  running_actions_ = true;
  for (;;) {
    std::vector<volume::Action> actions = replica_->take_actions();
    if (actions.empty()) break;
    for (volume::Action& action : actions) {
      std::visit(
          [this](auto& a) {
            using T = std::decay_t<decltype(a)>;
            if constexpr (std::is_same_v<T, volume::DiskWrite>) {
              execute(a);
            } else if constexpr (std::is_same_v<T, volume::DiskZero>) {
              const volume::IoId io = a.io;
              // Never a hole, on either copy: the space `keel volume create` reserved stays
              // reserved (a later write cannot fail for room), and NO_HOLE is honoured.
              disk_->write_zeroes(a.offset, a.length, /*may_unmap=*/false, a.fua,
                                  [this, io](int error) {
                                    disk_done(io, error);
                                    run_actions();
                                  });
            } else if constexpr (std::is_same_v<T, volume::DiskFlush>) {
              const volume::IoId io = a.io;
              disk_->flush([this, io](int error) {
                disk_done(io, error);
                run_actions();
              });
            } else if constexpr (std::is_same_v<T, volume::DiskRead>) {
              execute(a);
            } else if constexpr (std::is_same_v<T, volume::Persist>) {
              execute(a);
            } else if constexpr (std::is_same_v<T, volume::SendToPeer>) {
              link_->send(a.message);
            } else if constexpr (std::is_same_v<T, volume::ClosePeer>) {
              link_->drop(a.reason);
            } else if constexpr (std::is_same_v<T, volume::Complete>) {
              complete(a);
            } else if constexpr (std::is_same_v<T, volume::RecordPeerOutdated>) {
              if (!a.again) {
                spdlog::warn("volume {}: peer {} unreachable; recording its copy as outdated",
                             config_.name, peer_name_);
              }
              if (hooks_.record_outdated) hooks_.record_outdated(config_.name, a.generation);
            } else if constexpr (std::is_same_v<T, volume::WithdrawPeerOutdated>) {
              if (hooks_.clear_outdated) hooks_.clear_outdated(config_.name, a.generation);
            } else if constexpr (std::is_same_v<T, volume::Notice>) {
              const auto level = a.level == volume::Notice::Level::Error     ? spdlog::level::err
                                 : a.level == volume::Notice::Level::Warning ? spdlog::level::warn
                                                                             : spdlog::level::info;
              spdlog::log(level, "volume {}: {}", config_.name, a.text);
            }
          },
          action);
    }
  }
  running_actions_ = false;
  note_resync(replica_->link_state());
  arm_timer();
}

void VolumeRunner::note_resync(volume::LinkState link) {
  const bool resyncing =
      link == volume::LinkState::SyncSource || link == volume::LinkState::SyncTarget;
  if (resyncing && resync_started_us_ == 0) resync_started_us_ = io::monotonic_now_us();
  if (!resyncing) resync_started_us_ = 0;
}

void VolumeRunner::execute(volume::DiskWrite& action) {
  const volume::IoId io = action.io;
  if (!action.fua && action.data->size() <= kInlineIoBytes) {
    // Into the page cache on this thread: for a small write, a hand-off to a worker and back
    // costs more than the copy. The core takes the completion at once (run_actions() is looping
    // already).
    disk_done(io, disk_->write_sync(action.offset, *action.data));
    return;
  }
  auto done = [this, io](int error) {
    disk_done(io, error);
    run_actions();
  };
  // A copy that serves no reads (the secondary, a resync target) keeps large writes out of its
  // page cache: nothing reads them there, and writing them back at the next barrier would stall
  // the replicated stream behind it. A primary does too when its volume says write_cache =
  // false: a filesystem or database above the export caches what it reads itself.
  if (!replica_->serves_io() || !config_.write_cache)
    return disk_->write_uncached(action.offset, action.data, action.fua, done);
  disk_->write(action.offset, action.data, action.fua, done);
}

void VolumeRunner::execute(volume::DiskRead& action) {
  auto buffer = std::make_shared<volume::Bytes>(action.length);
  const volume::IoId io = action.io;
  const int cached =
      action.length <= kInlineIoBytes ? disk_->read_cached(action.offset, *buffer) : EAGAIN;
  if (cached != EAGAIN) {
    if (cached != 0) disk_failed(cached);
    replica_->on_disk_read_done(io, cached, buffer);
    return;
  }
  auto done = [this, io, buffer](int error) {
    if (error != 0) disk_failed(error);
    replica_->on_disk_read_done(io, error, buffer);
    run_actions();
  };
  // The core's reads are resync and verify passes, which read each block once: what the cache
  // does not hold is read past it, instead of filling it with pages nothing reads again.
  if (!disk_->range_cached(action.offset, action.length))
    return disk_->read_uncached(action.offset, action.length, buffer->data(), std::move(done));
  disk_->read(action.offset, action.length, buffer->data(), std::move(done));
}

void VolumeRunner::execute(volume::Persist& action) {
  // The pages' bytes as they are now: the bitmap goes on changing while the worker writes.
  auto update = std::make_shared<volume::UnsavedUpdate>();
  update->state = action.state;
  update->activity_extents = action.activity_extents;
  for (const std::uint64_t page : action.bitmap_pages) {
    update->pages.emplace_back(page, volume::BitmapPageBytes{});
    replica_->bitmap().page_bytes(page, update->pages.back().second);
  }
  journal_->submitted(update, action.id);
  newest_submitted_id_ = action.id;
  report_journaled();
  // Retried until written (metadata_persister.hpp): the replica must never count as durable
  // what is not.
  auto data_flush_failed = std::make_shared<bool>(false);
  metadata_worker_.submit(
      [this, update, id = action.id, flush_data = action.flush_data_first,
       data_flush_failed]() -> Result<Ok> {
        // The log is about to stop naming an extent: its writes must be on disk first
        // (volume::Persist::flush_data_first). The file stays open until the worker stops.
        if (flush_data && ::fdatasync(disk_->descriptor()) != 0) {
          const int error = errno;
          // A retry that succeeds may not have written what this one dropped: the replica
          // hears of the failure once, and reacts as to any failed flush of its disk.
          if (!std::exchange(*data_flush_failed, true)) {
            asio::post(io_, [this, error] {
              if (stopped_) return;
              disk_failed(error);
              replica_->on_data_flush_failed(error);
              run_actions();
            });
          }
          return Error{"flushing the data before an activity-log update: " + io::errno_text(error)};
        }
        if (auto ready = journal_->before_metadata_write(id); !ready.ok()) return ready.error();
        if (auto written = metadata_->write_bitmap_pages(update->pages); !written.ok()) {
          return Error{"writing the bitmap: " + written.error().message};
        }
        if (auto written = metadata_->write_state(update->state, update->activity_extents);
            !written.ok()) {
          return Error{"writing the metadata: " + written.error().message};
        }
        return Ok{};
      },
      [this](const std::string& why, int attempt) {
        if (attempt == 1 || attempt % 60 == 0) {
          spdlog::error(
              "volume {}: {} (attempt {}); I/O that needs it waits, retrying every second",
              config_.name, why, attempt);
        }
        asio::post(io_, [this, why] {
          if (stopped_) return;
          metadata_error_ = why;
          journal_->activate("a metadata update failed");
          report_journaled();
        });
      },
      [this, id = action.id] {
        asio::post(io_, [this, id] {
          if (stopped_) return;
          journal_->written();
          if (!metadata_error_.empty()) {
            spdlog::info("volume {}: metadata written again", config_.name);
            metadata_error_.clear();
          }
          replica_->on_persisted(id, 0);
          newest_persisted_id_ = std::max(newest_persisted_id_, id);
          run_actions();
          confirm_outdated_when_durable();
        });
      });
}

void VolumeRunner::disk_failed(int error) {
  journal_->activate("a disk operation failed (" + io::errno_text(error) + ")");
  report_journaled();
}

// Posted, as every completion is: the replica may be in the middle of the actions that led here.
// Checked again then: a failed rewrite meanwhile removes the journal (and with nothing pending,
// on_persisted has said more).
void VolumeRunner::report_journaled() {
  if (!journal_->holds_pending()) return;
  asio::post(io_, [this, id = newest_submitted_id_] {
    if (stopped_ || !journal_->holds_pending()) return;
    replica_->on_journaled(id);
    run_actions();
  });
}

void VolumeRunner::disk_done(volume::IoId io, int error) {
  if (error != 0) disk_failed(error);
  replica_->on_disk_done(io, error);
}

void VolumeRunner::complete(const volume::Complete& action) {
  Done done = forget(action.request);
  if (action.error != 0) ++requests_failed_;
  // Posted: a write into the page cache may complete inside the device call that issued it,
  // and BlockDevice promises never to call back from there.
  asio::post(io_, [done = std::move(done), error = action.error] { done(error); });
}

void VolumeRunner::arm_timer() {
  const TimeUs deadline = replica_->next_deadline();
  // Re-arming costs a system call: only for a new deadline (a stale one just ticks early).
  if (deadline == kNever || deadline == armed_for_ || stopped_) return;
  armed_for_ = deadline;
  const TimeUs now = io::monotonic_now_us();
  timer_.expires_after(std::chrono::microseconds(deadline > now ? deadline - now : 0));
  timer_.async_wait([this](const asio::error_code& error) {
    if (error || stopped_) return;
    armed_for_ = kNever;
    replica_->on_tick(io::monotonic_now_us());
    run_actions();
  });
}

}  // namespace keel::agent
