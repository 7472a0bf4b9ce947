// ReplicaCore: the state machine behind Replica (replica.hpp), private to src/core/volume. Split
// by concern across replica*.cpp:
//   replica.cpp          construction, status, persistence, completions' dispatch, ticks
//   replica_roles.cpp    promote, demote, outdating, discard-local
//   replica_writes.cpp   the primary's application path: overlap order, activity log, epochs,
//                        barriers, transfer log, completion and suspension
//   replica_peer.cpp     the secondary's side: replicated writes, barriers, resync writes, verify
//                        reads, in arrival order
//   replica_connect.cpp  Hello, decide_on_connect, bitmap exchange, refusals, disconnects
//   replica_resync.cpp   the resync source and the rate limit
//   replica_verify.cpp   online verify
//
// Invariants (asserted where they change): every IoId in io_owner_ belongs to exactly one pending
// operation; app_ is in issue (sequence) order; the transfer log's epochs never decrease; a write
// of epoch e is never sent after Barrier e; every queue is bounded (kMax* below).
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/volume/activity_log.hpp"
#include "core/volume/generations.hpp"
#include "core/volume/replica.hpp"

namespace keel::volume::detail {

// Application requests outstanding on the primary; beyond this they are refused with EBUSY (the
// shell bounds its NBD queue far lower).
constexpr std::size_t kMaxAppRequests = 4096;
// Async mode: payload bytes of writes acknowledged to the application but not yet to this copy
// by the peer, which this copy keeps until the peer's ack. Past it, a write is acknowledged only
// once the peer has it too (as in sync mode), so that a slow link or peer slows the writer down
// instead of filling this host's memory.
constexpr std::uint64_t kMaxAsyncUnackedBytes = 64u << 20;
// And so many writes: each stays in app_ until the peer's ack, and small ones would reach
// kMaxAppRequests (EBUSY, which a client sees as EIO) long before the bytes bound.
constexpr std::size_t kMaxAsyncUnackedWrites = kMaxAppRequests / 2;
// A sequential stream entering a new extent brings this many following extents into the
// activity log with it, when the log holds at least kMinExtentsForPrefetch.
constexpr std::uint64_t kPrefetchExtents = 7;
constexpr std::size_t kMinExtentsForPrefetch = 128;
// Operations the peer may have queued here; a peer exceeding it is disconnected.
constexpr std::size_t kMaxPeerOps = 65536;
// Epochs of replicated writes the primary keeps in its transfer log before it waits for the
// secondary's barrier acks: enough that writing goes on while the secondary flushes a
// checkpoint, and few enough that the secondary's queue stays within kMaxPeerOps.
constexpr std::size_t kTransferLogEpochs = 8;
// A resync source whose flush before ResyncDone fails tries this often before it drops the
// connection (a disk error is often brief; the next connection resyncs the target again). A
// retry that succeeds says nothing of pages the failed one may have dropped (see
// on_local_flush_failed()); it only lets the target, which holds what this copy sent, finish.
// A target never retries: its bitmap still marks every block of the pass, and the next
// connection copies them again.
constexpr std::uint32_t kMaxResyncFlushAttempts = 4;
// Verify reads a chunk whose read failed (on either copy) this often in all before it leaves
// the chunk uncompared: a failed read says nothing about whether the copies differ.
constexpr std::uint32_t kMaxVerifyReadAttempts = 4;

struct AppRequest {
  enum class Kind : std::uint8_t { Write, Zero, Flush };
  enum class Stage : std::uint8_t { Queued, WaitingPersist, Issued, LocalDone };
  Kind kind = Kind::Write;
  RequestId request = 0;
  bool internal = false;  // the demote's own flush: no Complete
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  Payload data;
  bool fua = false;
  Stage stage = Stage::Queued;
  std::uint64_t persist_id = 0;  // WaitingPersist: until on_persisted reaches it
  // Activity-log extents held, [first_extent, first_extent + extent_count), ended when finished.
  // A range, not a list: a request's extents are contiguous, and this costs no allocation.
  std::uint64_t first_extent = 0;
  std::uint64_t extent_count = 0;
  int local_error = 0;
  bool sent = false;           // DataWrite / Barrier sent on the current connection
  bool peer_acked = false;     // WriteAck / BarrierAck came
  std::uint64_t epoch = 0;     // the write's epoch, or the epoch a flush's barrier ends
  bool completed = false;      // Complete was emitted (async writes wait on for the ack)
  bool fails = false;          // Flush: fails whatever its disk says (abandon_step_down())
  bool counted_async = false;  // completed ahead of the peer: counted in async_unacked_bytes_
};

struct TransferEntry {  // a write sent to the peer, not yet covered by a BarrierAck
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

struct PeerOp {  // something the peer asked of this copy, in arrival order
  enum class Kind : std::uint8_t { Write, Zero, Resync, Verify, Barrier, ResyncDone };
  Kind kind = Kind::Write;
  std::uint64_t connection = 0;
  std::uint64_t sequence = 0;  // Write/Zero: the primary's sequence; Barrier: the epoch
  std::uint64_t epoch = 0;     // Write/Zero: its epoch
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  Payload data;
  bool fua = false;
  bool checkpoint = false;  // Barrier: later operations need not wait for it
  Generations generations;  // ResyncDone
  bool issued = false;
  IoId io = 0;
};

struct ChunkIo {  // a resync or verify chunk in flight on the source
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  IoId io = 0;
  bool reading = true;       // the local read has not completed
  bool invalidated = false;  // an application write to it was issued after the read
  // Resync: its blocks were marked out of sync again after its data was read (a write to them
  // failed on either disk): its ack must not clear them.
  bool remarked = false;
  std::optional<std::uint64_t> local_digest;  // verify
  std::optional<std::uint64_t> peer_digest;   // verify
  bool read_failed = false;                   // verify: either side's read, not compared
};

struct IoOwner {
  enum class Kind : std::uint8_t { App, Peer, Resync, Verify, ResyncFlush, SurvivorFlush };
  Kind kind = Kind::App;
  // App: sequence; Peer: op number; Resync/Verify: chunk offset; ResyncFlush, SurvivorFlush:
  // connection
  std::uint64_t key = 0;
};

// Whether a copy loaded with `loaded` held every write of the primary it was in sync with, by
// PersistentState::primary_sync_boot (a restart within that boot).
bool claims_primary_sync(const ReplicaConfig& config, const PersistentState& loaded);

class ReplicaCore {
 public:
  ReplicaCore(const ReplicaConfig& config, const PersistentState& loaded, DirtyBitmap bitmap,
              const std::vector<std::uint64_t>& activity_extents);

  void on_write(RequestId request, std::uint64_t offset, Payload data, bool fua);
  void on_write_zeroes(RequestId request, std::uint64_t offset, std::uint64_t length, bool fua);
  void on_flush(RequestId request);
  bool serves_io() const;
  void on_disk_done(IoId io, int error);
  void on_disk_read_done(IoId io, int error, Payload data);
  void on_persisted(std::uint64_t persist_id, int error);
  void on_data_flush_failed(int error);
  void on_journaled(std::uint64_t persist_id);
  void on_peer_connected();
  void on_peer_message(const PeerMessage& message);
  void on_peer_disconnected();
  void on_peer_outdated_recorded(Generation generation);
  void on_own_record_repeated(Generation generation);
  void on_told_outdated(Generation as_of);  // 0: unconditional
  Result<bool> promote(bool force);
  Result<bool> demote();
  Result<bool> discard_local_data();
  Result<bool> start_verify();
  void on_tick(TimeUs now);
  TimeUs next_deadline() const;
  std::vector<Action> take_actions();
  ReplicaStatus status() const;
  LinkState link_state() const { return link_; }
  const DirtyBitmap& bitmap() const { return bitmap_; }
  const PersistentState& persistent_state() const { return state_; }

 private:
  // ---- replica.cpp ----
  void progress();  // issue and complete whatever can go now (called after every event)
  std::uint64_t persist();
  IoId new_io(IoOwner owner);
  Generation fresh_generation();
  void notice(Notice::Level level, std::string text);
  void send(PeerMessage message);
  bool replicating() const;  // the peer receives application writes
  // The peer's copy is UpToDate and in sync: it holds every acknowledged write should this
  // node lose power.
  bool peer_stands_in() const;
  bool peer_ready() const;  // handshake done on the current connection
  bool rate_allows() const;
  void rate_charge(std::uint64_t bytes);
  bool app_write_in_flight(std::uint64_t offset, std::uint64_t length) const;
  // Replicated writes an earlier connection's peer sent are still on their way to this disk:
  // what a resync or verify read here now may change under it.
  bool applying_earlier_peer_ops() const;

  // ---- replica_writes.cpp ----
  void submit(AppRequest request);
  void issue_app_requests();
  // Every write and zeroing before `before_sequence` has completed on the local disk.
  bool all_local_done(std::uint64_t before_sequence) const;
  bool try_admit(AppRequest& request);
  void end_extents(AppRequest& request);  // ends the activity-log extents it holds
  // Adds the extents it brought into the log to `added`.
  void prefetch_extents_after(std::uint64_t first, std::uint64_t last,
                              std::vector<std::uint64_t>& added);
  void issue_write(std::uint64_t sequence, AppRequest& request);
  void issue_flush(std::uint64_t sequence, AppRequest& request);
  void maybe_auto_barrier();
  void force_checkpoint();
  void hold_sends_until_persisted();
  void release_held_sends();
  void pin_extents_for_peer(const TransferEntry& entry, bool pin);
  void complete_app_requests();
  bool finished(const AppRequest& request) const;
  void app_io_done(std::uint64_t sequence, int error);
  void on_local_flush_failed(int error);
  bool step_down_for_disk_error(std::string_view what, int error);
  void abandon_step_down();
  void mark_activity_extents();
  void on_write_ack(const WriteAck& ack);
  void on_barrier_ack(const BarrierAck& ack);
  void forget_peer_for_writes();
  bool peer_recorded_outdated() const;
  // Sync mode without the peer and without the ring's record: nothing is acknowledged.
  bool suspended() const;
  bool held_for_peer(const AppRequest& request) const;

  // ---- replica_roles.cpp ----
  void finish_demote_if_ready();
  void track_without_peer();
  void peer_up_to_date_again();
  void on_state_update(const StateUpdate& update);
  void send_state_update();

  // ---- replica_peer.cpp ----
  static std::optional<PeerOp> peer_op_from(const PeerMessage& message);
  void queue_peer_op(PeerOp op);
  void cover_resync_blocks(std::uint64_t offset, std::uint64_t length);
  void issue_peer_ops();
  bool peer_op_blocked(std::map<std::uint64_t, PeerOp>::iterator it) const;
  void issue_peer_op(std::uint64_t number, PeerOp& op);
  void peer_op_done(std::uint64_t number, int error, const Payload& data);
  void finish_as_target(const PeerOp& op, int error);
  void on_local_disk_error(std::string_view what, int error);

  // ---- replica_connect.cpp ----
  bool peer_range_ok(std::uint64_t offset, std::uint64_t length);
  void on_hello(const Hello& hello);
  void on_bitmap_words(const BitmapWords& words);
  void on_refuse(const Refuse& refuse);
  void send_bitmap();
  void start_after_handshake();
  void refuse(LinkState reason, std::string text);
  void drop_connection();
  bool link_alive() const;  // a connection exists (handshake or later)
  ConnectSide local_side() const;

  // ---- replica_resync.cpp ----
  void start_resync_source(bool full);
  void start_resync_target(bool full);
  void resync_marked_blocks();
  void issue_resync_reads();
  void resync_read_done(IoId io, std::uint64_t offset, int error, const Payload& data);
  void on_resync_ack(const ResyncAck& ack);
  void finish_resync_if_done();
  // After the flush of this copy and the persist of the finished resync's state.
  void send_resync_done_when_durable();
  void resync_flush_done(std::uint64_t connection, int error);
  void survivor_flush_done(std::uint64_t connection, int error);
  void forget_survived_primary();
  // A secondary in sync with a primary records the boot (PersistentState::primary_sync_boot)
  // before it applies that primary's writes; false until that record is durable.
  bool record_primary_sync();
  void invalidate_chunks(std::uint64_t offset, std::uint64_t length);
  // Sets the blocks in the bitmap, and keeps a resync chunk in flight over them from clearing
  // them when its ack comes.
  void mark_out_of_sync(std::uint64_t offset, std::uint64_t length);
  bool chunk_in_flight(std::uint64_t offset, std::uint64_t length) const;

  // ---- replica_verify.cpp ----
  void issue_verify_reads();
  void verify_read_done(IoId io, std::uint64_t offset, int error, const Payload& data);
  void on_verify_reply(const VerifyReply& reply);
  void check_verify_chunk(std::uint64_t offset);
  void finish_verify_if_done();

  ReplicaConfig config_;
  PersistentState state_;  // what the next Persist writes; the in-memory truth
  DirtyBitmap bitmap_;
  ActivityLog activity_;
  std::uint64_t generation_state_ = 0;  // splitmix64
  TimeUs now_ = 0;
  std::vector<Action> actions_;

  Role role_ = Role::Secondary;
  bool promote_persisted_ = true;  // false until primary_at_crash is durable after promote
  std::uint64_t promote_persist_id_ = 0;
  bool demoting_ = false;
  // This primary's disk failed a write or a flush while its peer stood in: it demotes, and every
  // flush that completes meanwhile fails too (on_local_flush_failed()). Its Inconsistent state is
  // durable once persisted_id_ or journaled_id_ reaches step_down_persist_id_.
  bool stepping_down_ = false;
  // The demote's own flush failed: this copy may lack writes its hot extents held, so it keeps
  // primary_at_crash (their resync at the next connection).
  bool demote_flush_failed_ = false;
  std::uint64_t step_down_persist_id_ = 0;
  std::uint64_t next_persist_id_ = 1;
  std::uint64_t departures_persisted_ = 0;  // activity_.departures() at the last Persist
  std::uint64_t persisted_id_ = 0;          // the highest completed Persist
  std::uint64_t journaled_id_ = 0;          // the highest Persist in the shell's journal
  // Messages to the peer wait, in order, until persisted_id_ reaches this
  // (hold_sends_until_persisted()).
  std::uint64_t sends_wait_for_persist_ = 0;
  std::deque<PeerMessage> held_sends_;
  // Extents in the activity log in memory whose persist has not completed: extent -> that
  // Persist's id. Writes into them wait for it (try_admit()).
  std::map<std::uint64_t, std::uint64_t> extents_persisting_;
  // The activity log as the newest completed Persist wrote it, and each pending Persist's log by
  // id: a log update that drops an extent is pending while its flush of the data runs, and if
  // that flush fails the dropped extent's writes are as much at risk as the log's.
  std::vector<std::uint64_t> durable_log_;
  std::deque<std::pair<std::uint64_t, std::vector<std::uint64_t>>> logs_persisting_;
  IoId next_io_ = 1;
  std::map<IoId, IoOwner> io_owner_;

  // Primary application path.
  std::map<std::uint64_t, AppRequest> app_;  // by sequence
  // Requests in app_ still Queued or WaitingPersist: with none, issue_app_requests() has nothing
  // to do and skips its walk over app_.
  std::size_t unissued_ = 0;
  std::uint64_t async_unacked_bytes_ = 0;  // see kMaxAsyncUnackedBytes
  std::size_t async_unacked_writes_ = 0;   // see kMaxAsyncUnackedWrites
  std::uint64_t next_sequence_ = 1;
  std::uint64_t epoch_ = 1;
  std::uint64_t epoch_writes_ = 0;  // writes sent in the current epoch
  std::deque<TransferEntry> transfer_log_;
  Generation outdating_ = 0;  // RecordPeerOutdated asked for this generation, not yet answered
  // The record the ring holds from this replica (answered, or re-announced by the shell at start
  // from the persisted peer_outdated and current generation); 0: none known.
  Generation record_generation_ = 0;
  // An obsolete record of this replica's that the ring repeated while it could not be withdrawn
  // (on_own_record_repeated()): withdrawn once the peer is in sync again; 0: none.
  Generation obsolete_record_ = 0;
  // Sync mode, between the split and the ring's record: nothing is acknowledged, so what is
  // persisted keeps naming the data state before the split (these generations) while the bitmap
  // marks the unacknowledged changes; see track_without_peer(). Unset: persist state_'s own.
  std::optional<Generations> durable_generations_;
  std::uint64_t outdated_persist_id_ = 0;  // writes stay suspended until peer_outdated is durable

  // Link.
  LinkState link_ = LinkState::StandAlone;
  std::uint64_t connection_ = 0;  // counts connections; peer ops remember theirs
  bool hello_received_ = false;
  bool bitmap_received_ = false;
  ConnectSide hello_side_;  // what our Hello said
  Role hello_role_ = Role::Secondary;
  ConnectPlan plan_ = ConnectPlan::InSync;
  std::optional<Role> peer_role_;
  std::optional<DiskState> peer_disk_;
  DiskState peer_hello_disk_ = DiskState::Inconsistent;  // what the peer's Hello said
  bool peer_blank_ = false;                              // what the peer's Hello said
  std::string refused_reason_;
  std::string disk_error_;  // ReplicaStatus::disk_error
  // ConnectSide::survived_primary: set when the link to a primary this copy was in sync with
  // breaks (sync mode), cleared once connected in sync again, when told outdated, when promoted.
  // Persisted (PersistentState::survived_primary) only once a flush made this copy durable: a
  // restart after a power loss here would otherwise claim writes the cache took with it. Also
  // set at load by claims_primary_sync() (a restart within the boot this copy was in sync in).
  bool survived_primary_ = false;

  // Secondary: the peer's operations.
  std::map<std::uint64_t, PeerOp> peer_ops_;
  std::uint64_t next_peer_op_ = 1;
  std::uint64_t target_persist_id_ = 0;        // resync writes wait until Inconsistent is durable
  std::uint64_t primary_sync_persist_id_ = 0;  // peer writes wait until primary_sync_boot is

  // Resync source and verify (shared rate limit).
  bool resync_running_ = false;
  std::uint64_t resync_cursor_ = 0;                 // block
  std::map<std::uint64_t, ChunkIo> resync_chunks_;  // by offset
  std::uint64_t resync_total_bytes_ = 0;
  std::uint64_t resync_done_bytes_ = 0;
  std::uint64_t resynced_blocks_ = 0;
  bool target_resync_ = false;  // SyncTarget: counts resync_done_bytes_ as blocks arrive
  // A peer's write or barrier failed on this disk since the last ResyncDone here.
  bool disk_failed_in_resync_ = false;
  // On this connection: the highest epoch of the peer's writes completed on this disk, and
  // that epoch when a flush last failed. A failed flush may have dropped any write completed
  // before it, of an epoch whose own barrier comes later too (a checkpoint's flush covers
  // whatever had completed, and the I/O threads decide that moment), and that barrier's flush
  // would succeed without them: its ack reports the failure as well.
  std::uint64_t applied_epoch_ = 0;
  std::uint64_t lost_epoch_ = 0;
  // Source: the finished resync's ResyncDone, sent once its generations are on disk.
  struct PendingResyncDone {
    std::uint64_t persist_id = 0;
    std::uint64_t connection = 0;
    ResyncDone message;
    bool flushed = false;  // this copy's data, which the target now equals, is durable
    std::uint32_t flush_failures = 0;
  };
  std::optional<PendingResyncDone> resync_done_;
  TimeUs rate_next_us_ = 0;
  bool verify_running_ = false;
  std::uint64_t verify_cursor_ = 0;         // bytes
  std::deque<std::uint64_t> verify_retry_;  // chunk offsets to verify again
  std::map<std::uint64_t, ChunkIo> verify_chunks_;
  std::uint64_t verify_done_bytes_ = 0;
  std::uint64_t verify_mismatched_blocks_ = 0;
  // Chunks whose read failed on either side, by offset: the failures so far. Read again up to
  // kMaxVerifyReadAttempts times, then left uncompared.
  std::map<std::uint64_t, std::uint32_t> verify_read_failures_;
  std::uint64_t verify_unread_bytes_ = 0;  // of the running or last verify: not compared
};

}  // namespace keel::volume::detail
