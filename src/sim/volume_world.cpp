// VolumeWorld's event loop, disks, metadata store, crashes and the operator's commands; the
// replication link and the ring are in volume_world_link.cpp.
#include "sim/volume_world.hpp"

#include <algorithm>
#include <cerrno>
#include <span>
#include <utility>

#include "core/common/assert.hpp"

namespace keel::sim {

namespace {

// The agent retries a metadata update that failed after this long (agent/metadata_persister.hpp).
constexpr TimeUs kPersistRetryUs = 1'000'000;
// The most activity-log extents a metadata slot holds (io::kMaxActivityExtents).
constexpr std::size_t kMaxJournalExtents = 4096;

constexpr std::uint32_t kMaxTimersAtOneInstant = 10000;

std::string action_text(const volume::Action& action) {
  return std::visit(
      [](const auto& a) -> std::string {
        using T = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<T, volume::DiskWrite>) {
          return "write io " + std::to_string(a.io) + " at " + std::to_string(a.offset) + "+" +
                 std::to_string(a.data ? a.data->size() : 0) + (a.fua ? " fua" : "");
        } else if constexpr (std::is_same_v<T, volume::DiskZero>) {
          return "zero io " + std::to_string(a.io) + " at " + std::to_string(a.offset) + "+" +
                 std::to_string(a.length);
        } else if constexpr (std::is_same_v<T, volume::DiskFlush>) {
          return "flush io " + std::to_string(a.io);
        } else if constexpr (std::is_same_v<T, volume::DiskRead>) {
          return "read io " + std::to_string(a.io) + " at " + std::to_string(a.offset) + "+" +
                 std::to_string(a.length);
        } else {
          return "action";
        }
      },
      action);
}

}  // namespace

VolumeWorld::VolumeWorld(VolumeWorldOptions options)
    : options_(std::move(options)), rng_(options_.seed), trace_(options_.trace_capacity) {
  KEEL_ASSERT(options_.volume_bytes % volume::kBlockBytes == 0 && options_.volume_bytes > 0);
  const volume::Generation first = mix64(options_.seed) | 1;
  for (int i = 0; i < 2; ++i) {
    Node& n = nodes_[i];
    n.id = static_cast<NodeId>(i + 1);
    n.disk = SimDisk(blocks());
    volume::ReplicaConfig& c = n.config;
    c.self = n.id;
    c.peer = static_cast<NodeId>(2 - i);
    c.size_bytes = options_.volume_bytes;
    c.volume_digest = 0x5eed;
    c.mode = options_.mode;
    c.resync_rate_bytes_s = options_.resync_rate_bytes_s;
    c.activity_log_extents = 4;
    c.resync_chunk_bytes = options_.resync_chunk_bytes;
    c.resync_in_flight_chunks = 4;
    c.max_unacked_epoch_writes = 64;
    c.boot = (std::uint64_t{n.id} << 32) | 1;   // a power loss starts the next boot
    n.saved_state.generations.current = first;  // created together: identical, all zero
    n.saved_state.disk = volume::DiskState::UpToDate;
    n.saved_state.blank = true;  // as `keel volume create` leaves a new copy
  }
  agent_start(kWitness);
  for (int i = 0; i < 2; ++i) start(i);
  views_changed();
  maybe_connect();
}

// ---- the event loop ----

void VolumeWorld::push_event(TimeUs at, std::string label, std::function<void()> action) {
  KEEL_ASSERT(at >= now_);
  queue_.push(at, ScheduledEvent{std::move(label), std::move(action)});
}

void VolumeWorld::later(int node, TimeUs delay_us, std::string label,
                        std::function<void()> action) {
  const std::uint32_t incarnation = nodes_[node].incarnation;
  push_event(now_ + delay_us, std::move(label), [this, node, incarnation, action] {
    if (!nodes_[node].up || nodes_[node].incarnation != incarnation) return;
    action();
  });
}

bool VolumeWorld::step() {
  if (failed() || queue_.empty()) return false;
  Event event = queue_.take();
  KEEL_ASSERT(event.at >= now_);
  now_ = event.at;
  ++steps_;
  auto& scheduled = std::get<ScheduledEvent>(event.body);
  if (!scheduled.label.empty()) {
    trace_.record(TraceEntry{now_, kNoNode, TraceKind::fault, kNoNode, 0, 0, scheduled.label});
  }
  scheduled.action();
  if (after_event && !failed()) after_event();
  return !failed();
}

void VolumeWorld::run_until(TimeUs time) {
  while (!failed() && !queue_.empty() && queue_.top().at <= time) step();
  if (!failed()) now_ = std::max(now_, time);
}

void VolumeWorld::at(TimeUs time, std::string label, std::function<void()> action) {
  push_event(std::max(time, now_), std::move(label), std::move(action));
}

void VolumeWorld::fail(const std::string& text) {
  if (violation_) return;
  violation_ = text;
  trace_.record(TraceEntry{now_, kNoNode, TraceKind::note, kNoNode, 0, 0, "VIOLATION: " + text});
}

void VolumeWorld::note(int node, std::string text) {
  const NodeId id = node < 0 ? kNoNode : nodes_[node].id;
  trace_.record(TraceEntry{now_, id, TraceKind::note, kNoNode, 0, 0, std::move(text)});
}

// ---- a replica's shell ----

void VolumeWorld::start(int node) {
  Node& n = nodes_[node];
  n.up = true;
  ++n.incarnation;
  n.config.generation_seed = mix64(options_.seed * 4 + n.id) ^ n.incarnation;
  volume::DirtyBitmap bitmap(options_.volume_bytes);
  for (const auto& [page, bytes] : n.saved_pages) bitmap.load_page(page, bytes);
  if (!n.journal.empty()) {
    // As the agent at start: the journal's updates are applied and written, then it goes.
    note(node, "applies " + std::to_string(n.journal.size()) + " unwritten metadata updates");
    hit(coverage_, VolumeMark::unsaved_metadata_recovered);
    volume::recover_unsaved_updates(n.journal, n.saved_state, bitmap, n.saved_extents,
                                    kMaxJournalExtents);
    for (std::uint64_t page = 0; page < bitmap.page_count(); ++page) {
      bitmap.page_bytes(page, n.saved_pages[page]);
    }
    n.journal.clear();
  }
  n.replica.emplace(n.config, n.saved_state, std::move(bitmap), n.saved_extents);
  n.persists_asked = 0;
  n.persists_written = 0;
  n.outdated_to_confirm.reset();
  agent_start(n.id);
  n.connection = 0;
  n.timer_at = kNever;
  n.was_suspended = false;
  n.release_pending = false;
  if (n.saved_state.primary_at_crash && !n.saved_extents.empty()) {
    hit(coverage_, VolumeMark::primary_crash_al);
  }
  pump(node);
}

void VolumeWorld::pump(int node) {
  Node& n = nodes_[node];
  for (int round = 0; round < 100 && n.up; ++round) {
    std::vector<volume::Action> actions = n.replica->take_actions();
    if (actions.empty()) break;
    for (volume::Action& action : actions) run_action(node, action);
  }
  if (!n.up) return;
  rearm_timer(node);
  observe(node);
}

void VolumeWorld::run_action(int node, volume::Action& action) {
  Node& n = nodes_[node];
  if (auto* persist = std::get_if<volume::Persist>(&action)) {
    PendingPersist pending{*persist, {}, n.disk.completed()};
    for (std::uint64_t page : persist->bitmap_pages) {
      n.replica->bitmap().page_bytes(page, pending.pages[page]);
    }
    n.persists.push_back(std::move(pending));
    ++n.persists_asked;
    if (n.persists.size() == 1) start_persist(node);
    journal_pending(node);
  } else if (auto* message = std::get_if<volume::SendToPeer>(&action)) {
    send(node, std::move(message->message));
  } else if (auto* close = std::get_if<volume::ClosePeer>(&action)) {
    close_from(node, close->reason);
  } else if (auto* complete = std::get_if<volume::Complete>(&action)) {
    if (on_complete) on_complete(node, *complete);
  } else if (auto* record = std::get_if<volume::RecordPeerOutdated>(&action)) {
    ring_record(node, record->generation);
  } else if (auto* withdraw = std::get_if<volume::WithdrawPeerOutdated>(&action)) {
    ring_withdraw(node, withdraw->generation);
  } else if (auto* notice = std::get_if<volume::Notice>(&action)) {
    note(node, "notice: " + notice->text);
  } else {
    run_disk(node, std::move(action));
  }
}

void VolumeWorld::run_disk(int node, volume::Action action) {
  Node& n = nodes_[node];
  Io io{std::move(action), n.disk.completed()};
  volume::IoId id = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::visit(
      [&](const auto& a) {
        using T = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<T, volume::DiskWrite> || std::is_same_v<T, volume::DiskZero> ||
                      std::is_same_v<T, volume::DiskRead> || std::is_same_v<T, volume::DiskFlush>) {
          id = a.io;
        }
        if constexpr (std::is_same_v<T, volume::DiskWrite>) {
          offset = a.offset;
          length = a.data ? a.data->size() : 0;
        } else if constexpr (std::is_same_v<T, volume::DiskZero> ||
                             std::is_same_v<T, volume::DiskRead>) {
          offset = a.offset;
          length = a.length;
        }
      },
      io.action);
  note(node, "disk " + action_text(io.action));
  if (offset % volume::kBlockBytes != 0 || length % volume::kBlockBytes != 0 ||
      offset + length > options_.volume_bytes) {
    return fail("node " + std::to_string(n.id) +
                " issued a disk operation outside whole blocks "
                "of the volume: " +
                action_text(io.action));
  }
  if (n.ios.count(id) != 0) {
    return fail("node " + std::to_string(n.id) + " reused io id " + std::to_string(id));
  }
  const bool is_flush = std::holds_alternative<volume::DiskFlush>(io.action);
  n.ios.emplace(id, std::move(io));
  const TimeUs extra = is_flush ? options_.disk_max_us : 0;
  later(node, delay(options_.disk_min_us, options_.disk_max_us + extra), "",
        [this, node, id] { disk_done(node, id); });
}

void VolumeWorld::disk_done(int node, volume::IoId id) {
  Node& n = nodes_[node];
  auto found = n.ios.find(id);
  KEEL_ASSERT(found != n.ios.end());
  Io io = std::move(found->second);
  n.ios.erase(found);
  const int error = disk_error(node);
  if (const auto* write = std::get_if<volume::DiskWrite>(&io.action)) {
    std::vector<BlockTag> tags;
    if (!write->data || !tags_of_payload(*write->data, tags)) {
      return fail("node " + std::to_string(n.id) + " wrote data that is not whole tagged blocks " +
                  "(torn or corrupted): " + action_text(io.action));
    }
    if (error != 0) {
      if (!tags.empty()) n.failed_write_tags.insert(tags.front());
      fail_write(node, write->offset / volume::kBlockBytes, tags);
    } else {
      n.disk.complete_write(write->offset / volume::kBlockBytes, tags, write->fua);
    }
    n.replica->on_disk_done(id, error);
  } else if (const auto* zero = std::get_if<volume::DiskZero>(&io.action)) {
    const std::vector<BlockTag> zeroes(zero->length / volume::kBlockBytes, 0);
    if (error != 0) {
      fail_write(node, zero->offset / volume::kBlockBytes, zeroes);
    } else {
      n.disk.complete_write(zero->offset / volume::kBlockBytes, zeroes, zero->fua);
    }
    n.replica->on_disk_done(id, error);
  } else if (std::holds_alternative<volume::DiskFlush>(io.action)) {
    if (error == 0) {
      n.disk.complete_flush(io.flush_cut);
    } else {
      flush_failed(node, io.flush_cut);
    }
    n.replica->on_disk_done(id, error);
  } else if (const auto* read = std::get_if<volume::DiskRead>(&io.action)) {
    if (error != 0) {
      n.replica->on_disk_read_done(id, error, nullptr);
    } else {
      const auto first = static_cast<std::ptrdiff_t>(read->offset / volume::kBlockBytes);
      const auto count = static_cast<std::ptrdiff_t>(read->length / volume::kBlockBytes);
      const std::vector<BlockTag> tags(n.disk.view().begin() + first,
                                       n.disk.view().begin() + first + count);
      n.replica->on_disk_read_done(id, 0, payload_of_tags(tags));
    }
  }
  pump(node);
}

// Draws from the world's Rng only during a burst, so that a run without disk errors makes the
// same draws as before they existed.
int VolumeWorld::disk_error(int node) {
  Node& n = nodes_[node];
  if (now_ >= n.disk_errors_until || !rng_.chance(n.disk_error_share)) return 0;
  note(node, "disk error: EIO");
  hit(coverage_, VolumeMark::disk_error);
  n.journaling = true;
  journal_pending(node);
  return EIO;
}

// As the agent: while it journals, every update handed on is in the journal, which survives a
// crash here (Node::journal); the replica hears so as a completion (volume::Replica::on_journaled).
void VolumeWorld::journal_pending(int node) {
  Node& n = nodes_[node];
  if (!n.journaling || n.persists.empty()) return;
  later(node, 0, "", [this, node, id = n.persists.back().persist.id] {
    nodes_[node].replica->on_journaled(id);
    pump(node);
  });
}

void VolumeWorld::flush_failed(int node, std::uint64_t cut) {
  if (const std::uint64_t dropped = nodes_[node].disk.fail_flush(cut, rng_); dropped > 0) {
    note(node, "the failed flush dropped " + std::to_string(dropped) + " cached blocks");
    hit(coverage_, VolumeMark::flush_lost_writes);
  }
  if (on_flush_failed) on_flush_failed(node);
}

// A failed write may have reached any of its blocks: each is written to the cache, or not.
void VolumeWorld::fail_write(int node, std::uint64_t first_block,
                             const std::vector<BlockTag>& tags) {
  ++failed_writes_;
  last_write_failure_at_ = now_;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (rng_.chance(0.5)) nodes_[node].disk.complete_write(first_block + i, {tags[i]}, false);
  }
}

void VolumeWorld::start_persist(int node) {
  later(node, delay(options_.persist_min_us, options_.persist_max_us), "",
        [this, node] { persist_done(node); });
}

void VolumeWorld::persist_done(int node) {
  Node& n = nodes_[node];
  KEEL_ASSERT(!n.persists.empty());
  // As the shell does (the persister fdatasyncs the backing first): the data, then the log. A
  // failed data flush is the disk's like any other (fail_flush()); the shell tells the replica
  // once and retries the whole update every second.
  if (n.persists.front().persist.flush_data_first) {
    PendingPersist& pending = n.persists.front();
    if (const int error = disk_error(node); error != 0) {
      hit(coverage_, VolumeMark::data_flush_failed);
      n.journaling = true;
      journal_pending(node);
      flush_failed(node, pending.data_cut);
      if (!std::exchange(pending.data_flush_failed, true)) {
        n.replica->on_data_flush_failed(error);
        pump(node);
      }
      later(node, kPersistRetryUs, "", [this, node] { persist_done(node); });
      return;
    }
    n.disk.complete_flush(pending.data_cut);
  }
  if (disk_error(node) != 0) {
    // The agent writes the bitmap pages, then the state and the log (agent/volume_runner.cpp): a
    // failure may leave any of the pages on disk beside the old state until the retry, or a
    // crash before it. The replica hears nothing; the whole update is tried again.
    hit(coverage_, VolumeMark::metadata_write_failed);
    n.journaling = true;
    journal_pending(node);
    for (const auto& [page, bytes] : n.persists.front().pages) {
      if (!rng_.chance(0.5)) continue;
      n.saved_pages[page] = bytes;
      n.persists.front().pages_written = true;
    }
    later(node, kPersistRetryUs, "", [this, node] { persist_done(node); });
    return;
  }
  PendingPersist done = std::move(n.persists.front());
  n.persists.erase(n.persists.begin());
  if (n.persists.empty()) n.journaling = false;
  for (auto& [page, bytes] : done.pages) n.saved_pages[page] = bytes;
  n.saved_state = done.persist.state;
  n.saved_extents = done.persist.activity_extents;
  n.replica->on_persisted(done.persist.id, 0);
  ++n.persists_written;
  if (!n.persists.empty()) start_persist(node);
  pump(node);
  confirm_outdated_when_durable(node);
}

void VolumeWorld::rearm_timer(int node) {
  Node& n = nodes_[node];
  const TimeUs deadline = n.replica->next_deadline();
  if (deadline == kNever || deadline == n.timer_at) return;
  n.timer_at = deadline;
  const std::uint64_t generation = ++n.timer_generation;
  later(node, deadline > now_ ? deadline - now_ : 0, "", [this, node, generation] {
    Node& h = nodes_[node];
    if (h.timer_generation != generation) return;
    h.timer_at = kNever;
    h.ticks_at_instant = h.last_tick_at == now_ ? h.ticks_at_instant + 1 : 0;
    h.last_tick_at = now_;
    if (h.ticks_at_instant > kMaxTimersAtOneInstant) {
      return fail("node " + std::to_string(h.id) + " spins: its deadline stays at " +
                  format_time(now_));
    }
    h.replica->on_tick(now_);
    pump(node);
  });
}

void VolumeWorld::observe(int node) {
  Node& n = nodes_[node];
  const bool suspended = n.replica->status().suspended;
  if (suspended && !n.was_suspended) {
    hit(coverage_, VolumeMark::suspended);
    note(node, "suspended");
  }
  if (!suspended && n.release_pending) hit(coverage_, VolumeMark::outdate_recorded_after_suspend);
  if (!suspended) n.release_pending = false;
  n.was_suspended = suspended;
}

// ---- faults ----

void VolumeWorld::crash(int node, bool power_loss) {
  Node& n = nodes_[node];
  if (!n.up) return;
  note(node, power_loss ? "POWER LOSS" : "PROCESS CRASH");
  hit(coverage_, power_loss ? VolumeMark::power_loss : VolumeMark::process_crash);
  if (!n.persists.empty() && n.persists.front().pages_written) {
    hit(coverage_, VolumeMark::crash_with_partial_metadata);
  }
  if (n.connection != 0 && n.connection == link_.id && link_.alive) {
    end_connection(-1, "node " + std::to_string(n.id) + " crashed");
  }
  n.up = false;
  ++n.incarnation;  // every pending event of the old process is void
  n.connection = 0;
  // Writes the process had handed to the kernel may or may not have reached the cache.
  for (auto& [id, io] : n.ios) {
    (void)id;
    if (const auto* write = std::get_if<volume::DiskWrite>(&io.action); write && rng_.chance(0.5)) {
      std::vector<BlockTag> tags;
      if (write->data && tags_of_payload(*write->data, tags)) {
        n.disk.complete_write(write->offset / volume::kBlockBytes, tags, false);
      }
    }
  }
  n.ios.clear();
  if (n.journaling) {
    for (const PendingPersist& pending : n.persists) {
      volume::UnsavedUpdate& update = n.journal.emplace_back();
      update.state = pending.persist.state;
      update.activity_extents = pending.persist.activity_extents;
      update.pages.assign(pending.pages.begin(), pending.pages.end());
    }
    n.journaling = false;
  }
  n.persists.clear();
  if (power_loss && n.disk.power_loss(rng_) > 0) hit(coverage_, VolumeMark::cached_write_lost);
  if (power_loss) ++n.config.boot;
  n.replica.reset();
  agent_crash(n.id);
  views_changed();
}

void VolumeWorld::fail_disk(int node, double share, TimeUs until) {
  nodes_[node].disk_errors_until = until;
  nodes_[node].disk_error_share = share;
}

void VolumeWorld::restart(int node) {
  if (nodes_[node].up) return;
  note(node, "restarts from its metadata");
  start(node);
  views_changed();
  maybe_connect();
}

// ---- operator and application ----

Result<bool> VolumeWorld::promote(int node, bool force) {
  KEEL_ASSERT(nodes_[node].up);
  if (!force && !agent(nodes_[node].id).records->quorate()) {
    note(node, "promote: refused, not in a majority");
    return Error{"not in a majority"};
  }
  // As the agent: the records about this copy reach the replica first.
  for (volume::Generation generation : records_about(node)) told_outdated(node, generation);
  auto result = nodes_[node].replica->promote(force);
  note(node, std::string(force ? "promote --force: " : "promote: ") +
                 (result.ok() ? "ok" : result.error().message));
  pump(node);
  return result;
}

Result<bool> VolumeWorld::demote(int node) {
  KEEL_ASSERT(nodes_[node].up);
  auto result = nodes_[node].replica->demote();
  note(node, "demote: " + std::string(result.ok() ? "ok" : result.error().message));
  pump(node);
  return result;
}

Result<bool> VolumeWorld::discard_local(int node) {
  KEEL_ASSERT(nodes_[node].up);
  auto result = nodes_[node].replica->discard_local_data();
  note(node, "discard local: " + std::string(result.ok() ? "ok" : result.error().message));
  pump(node);
  maybe_connect();
  return result;
}

Result<bool> VolumeWorld::start_verify(int node) {
  KEEL_ASSERT(nodes_[node].up);
  auto result = nodes_[node].replica->start_verify();
  note(node, "verify: " + std::string(result.ok() ? "started" : result.error().message));
  pump(node);
  return result;
}

void VolumeWorld::submit_write(int node, volume::RequestId request, std::uint64_t first_block,
                               const std::vector<BlockTag>& tags, bool fua) {
  KEEL_ASSERT(nodes_[node].up);
  nodes_[node].replica->on_write(request, first_block * volume::kBlockBytes, payload_of_tags(tags),
                                 fua);
  pump(node);
}

void VolumeWorld::submit_zero(int node, volume::RequestId request, std::uint64_t first_block,
                              std::uint64_t blocks, bool fua) {
  KEEL_ASSERT(nodes_[node].up);
  nodes_[node].replica->on_write_zeroes(request, first_block * volume::kBlockBytes,
                                        blocks * volume::kBlockBytes, fua);
  pump(node);
}

void VolumeWorld::submit_flush(int node, volume::RequestId request) {
  KEEL_ASSERT(nodes_[node].up);
  nodes_[node].replica->on_flush(request);
  pump(node);
}

}  // namespace keel::sim
