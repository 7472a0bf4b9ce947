// VolumeWorld: two replicas of one mirrored volume (node ids 1 and 2, indexes 0 and 1) and a
// witness (node 3) on a simulated clock, the shell around two volume::Replica state machines
// that the agent's volume service will be on real hosts.
//
// What it simulates, every delay drawn from the world's Rng:
//   - a disk per replica with a volatile cache (SimDisk): DiskWrite/DiskZero complete after a
//     delay into the cache, DiskFlush makes what had completed when it was issued durable, DiskRead
//     returns the cached view when it completes;
//   - a metadata store per replica: Persist actions complete one after the other, each durable
//     when it completes (the bitmap pages' bytes are taken when the replica asks);
//   - the replication link: one ordered stream per connection with random latency. A break ends
//     the connection (messages in flight are lost, each side hears of it at its own time); a
//     ClosePeer still delivers what the closing side had sent. While both replicas are up and the
//     ring puts them in one group, a new connection follows after a random delay
//     (on_peer_connected on both sides; a second later after a refusal). Every message travels
//     as the real link's frame (volume_wire.hpp): encoded when sent, decoded against the volume's
//     size on arrival, and the decoded message is what the peer receives; a frame that does not
//     decode, or whose message re-encodes to other bytes, fails the run;
//   - the ring under groups of {1,2,3} (node 3 is the witness; its agent may crash and restart):
//     every node's agent
//     runs the real records core (volume::OutdateRecords) as the agent's volume service does
//     (agent/volume_service.cpp), and the ring delivers its messages as extended virtual
//     synchrony allows: in one total order to every member of the view they were sent in, after a
//     random delay. When a view breaks, each part it splits into delivers the messages still in
//     flight in a transitional view (the sender's part always, a part without the sender or all of
//     them at random), then forms its new view, where every agent repeats what it knows. An agent
//     keeps its records in a state file written after a random delay (a Stored message follows),
//     reads them back at a restart, and loses what it had not written when it crashes. A replica
//     announces the record its persisted state says it made when it restarts, and says Durable
//     once the record that outdates it is marked on its disk, as the agent does;
//   - disk errors (fail_disk()): while a burst lasts, a share of the disk operations completing
//     on that node fail with EIO. A failed write or zeroing may have reached any of its blocks
//     (each is written to the cache or left as it was), a failed flush makes nothing durable (the
//     cache keeps its writes for a later flush), a failed read returns no data, and a failed
//     metadata update may have written any of its bitmap pages but not the state; it is retried
//     after a second, as the agent retries it, the replica told nothing. From a disk error or a
//     failed update until every update is written, a crash leaves the updates not yet written in
//     the agent's journal, which the restart applies (volume::recover_unsaved_updates());
//   - crashes: a process crash keeps the disk cache, a power loss keeps only durable data and a
//     random choice of cached blocks; both lose the metadata persists not yet complete. A restart
//     rebuilds the Replica from the metadata store, as the agent does.
// Application requests are the scenario's (submit_*); completions go to `on_complete`.
// Thread-safety: none.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/volume/outdate_records.hpp"
#include "core/volume/replica.hpp"
#include "sim/event_queue.hpp"
#include "sim/random.hpp"
#include "sim/trace.hpp"
#include "sim/volume_coverage.hpp"
#include "sim/volume_disk.hpp"

namespace keel::sim {

struct VolumeWorldOptions {
  std::uint64_t seed = 1;
  std::uint64_t volume_bytes = 1u << 20;
  volume::Mode mode = volume::Mode::Sync;
  TimeUs disk_min_us = 20;
  TimeUs disk_max_us = 2'000;
  TimeUs persist_min_us = 50;
  TimeUs persist_max_us = 3'000;
  TimeUs link_min_us = 30;
  TimeUs link_max_us = 1'500;
  TimeUs reconnect_min_us = 5'000;
  TimeUs reconnect_max_us = 200'000;
  TimeUs ring_min_us = 1'000;
  TimeUs ring_max_us = 40'000;
  std::uint64_t resync_rate_bytes_s = 0;
  std::uint32_t resync_chunk_bytes = 64u << 10;
  std::size_t trace_capacity = 300;
};

constexpr NodeId kWitness = 3;
// A side hears of a broken connection at most this long after it broke.
constexpr TimeUs kBreakNoticeMaxUs = 100'000;

class VolumeWorld {
 public:
  explicit VolumeWorld(VolumeWorldOptions options);
  VolumeWorld(const VolumeWorld&) = delete;
  VolumeWorld& operator=(const VolumeWorld&) = delete;

  // ---- running ----
  TimeUs now() const { return now_; }
  bool step();  // false when no event is left or a check failed
  void run_until(TimeUs time);
  void at(TimeUs time, std::string label, std::function<void()> action);

  // ---- faults ----
  void break_link(const std::string& why);
  // Ring groups of node ids 1..3 (a replica link needs 1 and 2 in one group).
  void set_groups(const std::vector<std::vector<NodeId>>& groups);
  void crash(int node, bool power_loss);
  void restart(int node);
  // The witness's agent (it holds no copy): a crash loses the records it had not written yet.
  void crash_witness();
  void restart_witness();
  // Until `until`, each disk operation completing on `node` fails with EIO with chance `share`.
  void fail_disk(int node, double share, TimeUs until);
  // Writes and zeroings that failed so far on either node: only they make the copies' content
  // differ without the shell knowing where (a failed flush or read changes no content).
  std::uint64_t failed_writes() const { return failed_writes_; }
  std::optional<TimeUs> last_write_failure_at() const { return last_write_failure_at_; }
  // The first tag of every DiskWrite that failed on `node` (the workload's tags are unique, so
  // this names the application write whose local write failed).
  bool write_failed(int node, BlockTag first_tag) const {
    return nodes_[node].failed_write_tags.contains(first_tag);
  }

  // ---- operator and application ----
  Result<bool> promote(int node, bool force);
  Result<bool> demote(int node);
  Result<bool> discard_local(int node);
  Result<bool> start_verify(int node);
  void submit_write(int node, volume::RequestId request, std::uint64_t first_block,
                    const std::vector<BlockTag>& tags, bool fua);
  void submit_zero(int node, volume::RequestId request, std::uint64_t first_block,
                   std::uint64_t blocks, bool fua);
  void submit_flush(int node, volume::RequestId request);
  std::function<void(int node, const volume::Complete& completion)> on_complete;
  // A flush failed on `node`'s disk (before the replica hears of it).
  std::function<void(int node)> on_flush_failed;
  // Called after every event (the checkers).
  std::function<void()> after_event;

  // ---- inspection ----
  const VolumeWorldOptions& options() const { return options_; }
  std::uint64_t blocks() const { return options_.volume_bytes / volume::kBlockBytes; }
  bool up(int node) const { return nodes_[node].up; }
  const volume::Replica& replica(int node) const { return *nodes_[node].replica; }
  // The disk state in `node`'s metadata (what it comes back with, while it is down).
  volume::DiskState saved_disk(int node) const { return nodes_[node].saved_state.disk; }
  const SimDisk& disk(int node) const { return nodes_[node].disk; }
  bool quorate(NodeId id) const;  // its group holds two up nodes (the agent's view is a majority)
  bool link_possible() const;     // both up, in one ring group
  bool connected(int node) const { return nodes_[node].connection != 0; }
  std::uint64_t connection_of(int node) const { return nodes_[node].connection; }
  std::uint64_t pending_ios(int node) const { return nodes_[node].ios.size(); }
  std::uint64_t pending_persists(int node) const { return nodes_[node].persists.size(); }

  // ---- checking ----
  void fail(const std::string& text);
  bool failed() const { return violation_.has_value(); }
  const std::optional<std::string>& violation() const { return violation_; }
  void note(int node, std::string text);
  Trace& trace() { return trace_; }
  VolumeCoverage& coverage() { return coverage_; }
  std::uint64_t steps() const { return steps_; }
  std::uint64_t messages() const { return messages_; }

 private:
  struct Io {
    volume::Action action;
    std::uint64_t flush_cut = 0;  // DiskFlush: SimDisk::completed() when issued
  };
  struct PendingPersist {
    volume::Persist persist;
    std::map<std::uint64_t, std::array<std::byte, volume::kBitmapPageBytes>> pages;
    std::uint64_t data_cut = 0;  // flush_data_first: the data writes completed when it was taken
    bool data_flush_failed = false;  // the replica has heard (on_data_flush_failed)
    bool pages_written = false;      // a failed attempt left some of `pages` on disk
  };
  struct Node {
    NodeId id = kNoNode;
    volume::ReplicaConfig config;
    bool up = false;
    std::uint32_t incarnation = 0;
    std::optional<volume::Replica> replica;
    SimDisk disk{0};
    volume::PersistentState saved_state;
    std::map<std::uint64_t, std::array<std::byte, volume::kBitmapPageBytes>> saved_pages;
    std::vector<std::uint64_t> saved_extents;
    std::vector<PendingPersist> persists;  // in order; the first is being written
    // The agent's journal in its state directory (another disk, never failing here): from a
    // disk error or a failed metadata update until every update handed on is written, it holds
    // them all (agent/volume_unsaved_metadata.hpp). `journal` is what a crash left of it.
    bool journaling = false;
    std::vector<volume::UnsavedUpdate> journal;
    std::map<volume::IoId, Io> ios;
    std::uint64_t connection = 0;  // the connection this side is on (0: none)
    std::uint64_t timer_generation = 0;
    TimeUs timer_at = kNever;
    std::uint32_t ticks_at_instant = 0;
    TimeUs last_tick_at = kNever;
    bool was_suspended = false;
    bool release_pending = false;  // the ring recorded the peer while this node was suspended
    // Metadata updates asked for and written since the start (the agent's persist ids), and the
    // record that outdates this copy, to confirm (Durable) once the update then asked is written.
    std::uint64_t persists_asked = 0;
    std::uint64_t persists_written = 0;
    std::optional<std::pair<volume::Generation, std::uint64_t>> outdated_to_confirm;
    TimeUs disk_errors_until = 0;  // a burst of disk errors lasts until then
    double disk_error_share = 0;
    std::set<BlockTag> failed_write_tags;
  };
  struct Connection {
    std::uint64_t id = 0;
    bool alive = false;
    int closer = -1;                       // a ClosePeer from this side: its messages still arrive
    std::array<TimeUs, 2> last_arrival{};  // per receiving side
  };
  // A node's agent, as far as volumes go: its records core and state file (node ids 1..3).
  struct Agent {
    std::optional<volume::OutdateRecords> records;  // while the agent runs
    std::vector<volume::OutdateRecord> file;        // the records file in its state directory
    volume::OutdateRecords::Map submitted;          // what the last write queued holds
    std::uint32_t incarnation = 0;
    std::uint64_t view = 0;         // the regular view it is in (0: none, or between two)
    std::vector<keel::Bytes> held;  // sent between two views: they go out in the next one
    // Writes of the records file, in order, each followed by a Stored message for what it holds.
    struct Store {
      std::optional<std::vector<volume::OutdateRecord>> snapshot;
      std::vector<volume::OutdateRecord> delivered;
    };
    std::vector<Store> stores;
  };
  struct RingMessage {
    NodeId origin = kNoNode;
    keel::Bytes payload;
  };
  struct RingView {
    std::vector<NodeId> members;
    std::vector<RingMessage> in_flight;  // in the ring's order
    TimeUs last_delivery = 0;
  };

  // volume_world.cpp
  void push_event(TimeUs at, std::string label, std::function<void()> action);
  // Runs `action` after `delay_us` unless the node crashed (or restarted) since.
  void later(int node, TimeUs delay_us, std::string label, std::function<void()> action);
  void start(int node);
  void pump(int node);
  void run_action(int node, volume::Action& action);
  void run_disk(int node, volume::Action action);
  void disk_done(int node, volume::IoId io);
  int disk_error(int node);  // EIO when a burst fails this operation, else 0
  void fail_write(int node, std::uint64_t first_block, const std::vector<BlockTag>& tags);
  // A flush (DiskFlush, or a Persist's data flush) that covered completed() == cut failed.
  void flush_failed(int node, std::uint64_t cut);
  void journal_pending(int node);  // the replica hears that the journal holds its updates
  void start_persist(int node);
  void persist_done(int node);
  void rearm_timer(int node);
  void observe(int node);
  TimeUs delay(TimeUs lo, TimeUs hi) { return rng_.uniform(lo, hi); }

  // volume_world_link.cpp
  void send(int from, volume::PeerMessage message);
  void close_from(int node, const std::string& why);
  void end_connection(int closer, const std::string& why);
  void disconnect_side(int node, std::uint64_t connection);
  void maybe_connect();
  void connect_now();
  std::set<NodeId> group_of(NodeId id) const;
  // volume_world_ring.cpp
  Agent& agent(NodeId id) { return agents_[id - 1]; }
  void agent_start(NodeId id);
  void agent_crash(NodeId id);
  void views_changed();
  void end_view(std::uint64_t view, const std::map<NodeId, std::set<NodeId>>& next);
  void broadcast(NodeId from, keel::Bytes payload);
  void deliver_next(std::uint64_t view);
  void deliver(NodeId to, const RingMessage& message);
  void store_records(NodeId id, std::vector<volume::OutdateRecord> delivered);
  void store_next(NodeId id);
  void ring_record(int node, volume::Generation generation);
  void ring_withdraw(int node, volume::Generation generation);
  std::vector<volume::Generation> records_about(int node) const;
  void release_recorded(int node, volume::Generation generation);
  void told_outdated(int node, volume::Generation generation);
  void confirm_outdated_when_durable(int node);
  void ring_note(NodeId id, std::string text);

  VolumeWorldOptions options_;
  Rng rng_;
  Trace trace_;
  EventQueue queue_;
  TimeUs now_ = 0;
  std::uint64_t steps_ = 0;
  std::uint64_t messages_ = 0;
  std::uint64_t failed_writes_ = 0;
  std::optional<TimeUs> last_write_failure_at_;
  std::array<Node, 2> nodes_;
  Connection link_;
  std::uint64_t next_connection_ = 1;
  bool connect_scheduled_ = false;
  std::array<int, 4> group_{0, 0, 0, 0};  // by node id
  std::array<Agent, 3> agents_;
  bool witness_up_ = true;
  std::map<std::uint64_t, RingView> views_;
  std::uint64_t next_view_ = 1;
  std::optional<std::string> violation_;
  VolumeCoverage coverage_{};
};

}  // namespace keel::sim
