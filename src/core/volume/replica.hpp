// Replica: one node's side of one mirrored volume, as a pure state machine (no I/O, no clock, no
// threads). The volume service (agent/volume_service) and the simulator (sim/volume_*) are its
// two shells.
//
// Events in: application requests (on the primary), completions of the disk operations and
// persistence it asked for, the replication link's connect/messages/disconnect, the ring's
// answers about outdating, operator commands, and ticks. Actions out (take_actions()), executed
// by the shell in the order given:
//   DiskWrite / DiskZero / DiskFlush / DiskRead  -> answer with on_disk_done / on_disk_read_done
//   Persist                                       -> answer with on_persisted (durable, in order)
//   SendToPeer                                    -> the link sends it (in order)
//   ClosePeer                                     -> the link drops the connection
//   Complete                                      -> answer the application request
//   RecordPeerOutdated                            -> through the ring, on_peer_outdated_recorded
//   WithdrawPeerOutdated                          -> through the ring: the record is obsolete
//   Notice                                        -> log it
//
// Guarantees (the simulator's checkers assert them; docs/volume.md explains them):
//   - Sync mode: a write, FUA write or flush completes only when both copies have it (durably
//     for FUA and flush), or, with the peer unreachable, after the peer was recorded outdated
//     through a majority of the cluster; until then I/O is suspended, never acknowledged.
//   - Overlapping writes are applied in issue order on both copies; the secondary's copy is a
//     crash-consistent prefix of the primary's at epoch (flush) granularity.
//   - Resync copies the dirty bitmap's blocks (all blocks for a full sync) from the source, in
//     the background at the configured rate, and never overwrites a newer application write.
//   - Split brain and unrelated data are detected at connect and refused, never merged. A copy
//     that acknowledged nothing apart (a sync primary that crashed before its peer was recorded
//     outdated) is no split brain: it becomes the resync target.
//   - Every RecordPeerOutdated is withdrawn (WithdrawPeerOutdated, same generation) once the
//     peer's copy is up to date again; a record persisted as peer_outdated is the shell's to
//     announce again at start (generation: the persisted current one).
//   - Promotion refuses an Outdated or Inconsistent copy, a peer that is primary, and (through
//     the caller) a node without quorum; `force` overrides the disk-state check only.
//
// Thread-safety: none; one thread drives a Replica.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/dirty_bitmap.hpp"
#include "core/volume/peer_messages.hpp"
#include "core/volume/types.hpp"

namespace keel::volume {

using RequestId = std::uint64_t;  // an application request, numbered by the shell
using IoId = std::uint64_t;       // a local disk operation, numbered by the replica

struct ReplicaConfig {
  NodeId self = kNoNode;
  NodeId peer = kNoNode;
  std::uint64_t size_bytes = 0;     // a multiple of kBlockBytes
  std::uint64_t volume_digest = 0;  // of name and size; both sides must agree
  Mode mode = Mode::Sync;
  std::uint64_t resync_rate_bytes_s = 100u << 20;  // 0: unlimited
  std::size_t activity_log_extents = 64;
  std::uint32_t resync_chunk_bytes = 1u << 20;  // one ResyncData at most
  std::uint32_t resync_in_flight_chunks = 8;    // resync pipeline depth
  std::size_t max_unacked_epoch_writes = 4096;  // then the primary inserts its own barrier
  std::uint64_t generation_seed = 1;            // seeds fresh generations (deterministic)
  // This host's boot (a hash of the kernel's boot id; 0: unknown). Never the same after a power
  // loss or a kernel crash, the same across restarts of the agent (PersistentState::
  // primary_sync_boot).
  std::uint64_t boot = 0;
};

struct DiskWrite {
  IoId io = 0;
  std::uint64_t offset = 0;
  Payload data;
  bool fua = false;  // durable before completion (the shell writes then fdatasyncs)
};
struct DiskZero {
  IoId io = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;  // reads back as zeroes afterwards, still allocated
  bool fua = false;
};
struct DiskFlush {
  IoId io = 0;
};
struct DiskRead {
  IoId io = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};
// Make durable, in this order: the listed bitmap pages (their current bytes from bitmap()), then
// the state and activity log. Persists complete in the order they were asked for.
struct Persist {
  std::uint64_t id = 0;
  std::vector<std::uint64_t> bitmap_pages;
  PersistentState state;
  std::vector<std::uint64_t> activity_extents;
  // The activity log no longer names an extent the previous update named: before writing this
  // one, flush the data (fdatasync the backing), so that every write completed before this
  // action was taken is durable. Otherwise a power loss could take unflushed writes in an extent
  // the log on disk no longer names, and the resync after the restart would never copy them.
  bool flush_data_first = false;
};
struct SendToPeer {
  PeerMessage message;
};
struct ClosePeer {
  std::string reason;
};
struct Complete {
  RequestId request = 0;
  int error = 0;  // 0, EIO (a disk failed), ESHUTDOWN (not, or no longer, primary)
  // The peer received this write or flush on the current connection and answered it (what the
  // simulator's checkers hold the peer to).
  bool peer_acked = false;
};
// Record through the ring, by a majority of the cluster, that the peer's copy is outdated as of
// `generation` (this replica's new current generation).
struct RecordPeerOutdated {
  Generation generation = 0;
  bool again = false;  // said again over an obsolete record an agent repeated (not a new split)
};
// The peer's copy is up to date again (a resync to it completed, or it connected in sync): withdraw
// the record this replica made with `generation` (the generation RecordPeerOutdated named).
struct WithdrawPeerOutdated {
  Generation generation = 0;
};
struct Notice {
  enum class Level { Info, Warning, Error } level = Level::Info;
  std::string text;
};

using Action = std::variant<DiskWrite, DiskZero, DiskFlush, DiskRead, Persist, SendToPeer,
                            ClosePeer, Complete, RecordPeerOutdated, WithdrawPeerOutdated, Notice>;

struct ReplicaStatus {
  Role role = Role::Secondary;
  DiskState disk = DiskState::Inconsistent;
  LinkState link = LinkState::StandAlone;
  std::optional<Role> peer_role;       // when connected
  std::optional<DiskState> peer_disk;  // when connected
  Generations generations;
  bool suspended = false;  // I/O held until the peer is recorded outdated
  bool peer_outdated = false;
  std::uint64_t out_of_sync_bytes = 0;   // set bits of the dirty bitmap, in bytes
  std::uint64_t resync_total_bytes = 0;  // of the running resync (0: none)
  std::uint64_t resync_done_bytes = 0;
  std::uint64_t resynced_blocks = 0;  // blocks copied by the last (or running) resync
  std::uint64_t writes_in_flight = 0;
  std::uint64_t verify_done_bytes = 0;  // of the running or last verify
  std::uint64_t verify_mismatched_blocks = 0;
  bool verify_running = false;
  std::string refused_reason;  // split brain / unrelated: what a person must do
  // The last failure of this copy's disk and what it did, until a resync rewrote the copy
  // (empty: none since the replica started).
  std::string disk_error;
  bool stepping_down = false;  // giving way to the peer after its own disk failed
};

namespace detail {
class ReplicaCore;  // the state machine itself (replica_core.hpp)
}

using BitmapPageBytes = std::array<std::byte, kBitmapPageBytes>;

// A metadata update (a Persist) the shell had handed on but not seen written when it stopped:
// the state, the activity log and the bitmap pages it carried.
struct UnsavedUpdate {
  PersistentState state;
  std::vector<std::uint64_t> activity_extents;
  std::vector<std::pair<std::uint64_t, BitmapPageBytes>> pages;
};

// What the metadata would hold had `updates` (oldest first) all been written over what is on
// disk (`state`, `bitmap`, `extents`): the newest state, every update's pages over the bitmap in
// order, and an activity log that keeps every extent the disk or any update named, newest
// first: an update that drops an extent from the log does so after its flush of the data, which
// may have failed, so the extent stays for a resync to look at. Past `max_extents` the extents
// left out are marked out of sync in `bitmap` instead.
void recover_unsaved_updates(const std::vector<UnsavedUpdate>& updates, PersistentState& state,
                             DirtyBitmap& bitmap, std::vector<std::uint64_t>& extents,
                             std::size_t max_extents);

class Replica {
 public:
  // `loaded` is what the metadata file held (a freshly created volume: UpToDate or Inconsistent
  // with its first generation). A node that crashed as primary marks its activity log dirty here.
  Replica(const ReplicaConfig& config, const PersistentState& loaded, DirtyBitmap bitmap,
          const std::vector<std::uint64_t>& activity_extents);
  ~Replica();
  Replica(Replica&&) noexcept;
  Replica& operator=(Replica&&) noexcept;

  // Application requests: only a primary serves them (otherwise Complete with ESHUTDOWN).
  void on_write(RequestId request, std::uint64_t offset, Payload data, bool fua);
  void on_write_zeroes(RequestId request, std::uint64_t offset, std::uint64_t length, bool fua);
  void on_flush(RequestId request);
  bool serves_io() const;  // primary, UpToDate, not suspended for good: reads may go to disk

  // Completions of actions.
  void on_disk_done(IoId io, int error);
  void on_disk_read_done(IoId io, int error, Payload data);
  void on_persisted(std::uint64_t persist_id, int error);
  // The shell's flush of the data before a Persist with flush_data_first failed (it retries
  // that Persist): the disk may have dropped writes, as after a failed DiskFlush.
  void on_data_flush_failed(int error);
  // Every Persist up to persist_id is in the shell's journal of unsaved metadata (synced, and
  // applied by a restart before anything else), though perhaps not yet in the metadata. Only a
  // step-down rests on it: the copy may then say Secondary, so that its peer can be promoted
  // while this copy's disk, metadata included, is failing. All else waits for on_persisted.
  void on_journaled(std::uint64_t persist_id);

  // The replication link.
  void on_peer_connected();
  void on_peer_message(const PeerMessage& message);
  void on_peer_disconnected();

  // The ring.
  void on_peer_outdated_recorded(Generation generation);
  void on_told_outdated();  // the peer recorded this copy as outdated (learnt through the ring)
  // The same with the record's generation (the recorder's current when it recorded): a record
  // this copy has since caught up with (its current, bitmap or history generation, after a
  // resync) is stale and ignored.
  void on_told_outdated(Generation as_of);
  // An agent repeated a record this replica made about its peer (agents repeat what they know
  // after every view). One this replica no longer holds was superseded or withdrawn in a
  // partition that agent missed: the answer says again what holds, RecordPeerOutdated (again)
  // with the live record, which supersedes it, or else, once the peer is connected and in sync
  // (it needs no record then), WithdrawPeerOutdated with its generation.
  void on_own_record_repeated(Generation generation);

  // Operator commands; errors say why not, in words for a person.
  Result<bool> promote(bool force);
  Result<bool> demote();
  Result<bool> discard_local_data();  // after a split brain: the next connect resyncs from peer
  Result<bool> start_verify();

  void on_tick(TimeUs now);
  TimeUs next_deadline() const;

  std::vector<Action> take_actions();
  ReplicaStatus status() const;
  LinkState link_state() const;  // status().link, without building the rest
  const DirtyBitmap& bitmap() const;
  const PersistentState& persistent_state() const;

 private:
  std::unique_ptr<detail::ReplicaCore> core_;
};

}  // namespace keel::volume
