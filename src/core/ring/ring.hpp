// Ring: one host's instance of keel's membership and total-order protocol (Totem single-ring
// family), as a pure state machine.
//
// Events go in (a packet from a node, the passing of time, a message to broadcast); actions come
// out through take_actions() (packets to send, views and messages to deliver). It never reads a
// clock, opens a socket, starts a thread or touches a file: the agent and the simulator are its
// two shells. Time is whatever the caller says `now` is, and must not go backwards.
//
// Guarantees (extended virtual synchrony; docs/ring.md): views installed with increasing ids that
// contain this host; members of one view agree on it; messages delivered in one agreed order,
// at most once, own messages in submission order; safe messages only once every member of the
// delivering view holds them; hosts that go from one view to the same next view delivered the
// same messages in between.
//
// Thread-safety: none; one thread drives an instance.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/ring/coverage.hpp"
#include "core/ring/events.hpp"
#include "core/ring/reassembly.hpp"
#include "core/ring/tunables.hpp"
#include "core/ring/wire.hpp"

namespace keel::ring {

enum class State : std::uint8_t { gather, commit, recovery, operational };
const char* state_name(State state);

struct RingStats {
  std::uint64_t packets_sent = 0;
  std::uint64_t packets_received = 0;
  std::uint64_t packets_rejected = 0;  // undecodable or from an unknown node
  std::uint64_t messages_submitted = 0;
  std::uint64_t messages_delivered = 0;
  std::uint64_t ring_messages_broadcast = 0;  // ring messages (packets of chunks) first sent
  std::uint64_t retransmissions = 0;          // ring messages re-sent on request
  std::uint64_t tokens_received = 0;
  std::uint64_t tokens_retransmitted = 0;
  std::uint64_t views_installed = 0;
  std::uint64_t gathers_entered = 0;
};

class Ring {
 public:
  // `nodes` is the configured cluster (sorted or not, must include `self`, at most kMaxNodes).
  // `ring_seq_floor` must exceed every ring sequence number this host used before a restart
  // (the agent passes its boot time in microseconds, so that restarts never reuse a ring id).
  Ring(NodeId self, std::vector<NodeId> nodes, RingTunables tunables, std::uint64_t ring_seq_floor,
       TimeUs now);

  void on_packet(NodeId from, std::span<const std::uint8_t> bytes, TimeUs now);
  void on_tick(TimeUs now);
  // Queues a message for broadcast. Fails if it is larger than kMaxApplicationMessageBytes or the
  // send queue is full; nothing is queued then.
  Result<Ok> submit(Bytes payload, DeliveryKind kind, TimeUs now);

  // Announces that this host is shutting down, so that the others form a ring without it at
  // once instead of after a token timeout. Afterwards the instance ignores every event.
  void leave(TimeUs now);
  bool has_left() const { return left_; }

  // The next time on_tick() has work to do.
  TimeUs next_deadline() const;
  std::vector<Action> take_actions();

  NodeId self() const { return self_; }
  State state() const { return state_; }
  // The last regular view installed, if any.
  const std::optional<View>& view() const { return view_; }
  std::size_t send_queue_length() const { return send_queue_.size(); }
  const RingStats& stats() const { return stats_; }
  const Coverage& coverage() const { return coverage_; }
  const RingTunables& tunables() const { return tunables_; }

 private:
  // Everything this host knows of one ring: the messages it holds and how far it got.
  struct RingLog {
    RingId id;
    std::vector<NodeId> members;  // sorted; the token travels in this order
    std::size_t my_index = 0;
    std::map<std::uint64_t, wire::McastPacket> messages;  // held, not yet freed
    std::uint64_t received_up_to = 0;   // every seq <= this is held (or was, and freed)
    std::uint64_t high_seq = 0;         // highest seq known to exist on this ring
    std::uint64_t delivered_up_to = 0;  // every seq <= this was delivered or passed over
    std::uint64_t safe_up_to = 0;       // every member held every seq <= this at the last token
    std::uint64_t last_token_seq = 0;
    std::uint32_t sent_last_visit = 0;
    std::uint32_t sent_visit_before = 0;  // what it broadcast at the visit before the last
    std::uint32_t backlog_last_visit = 0;
    std::optional<wire::Token> token_copy;  // the token last passed on (or held)
    std::uint64_t token_copy_seq = 0;       // its `seq` when passed: later broadcasts prove receipt
    TimeUs token_retransmit_at = kNever;
    TimeUs token_release_at = kNever;  // representative holding an idle token until then
    std::uint32_t idle_rotations = 0;  // representative: idle rotations in a row, up to now

    bool valid() const { return id.valid(); }
    NodeId successor() const { return members[(my_index + 1) % members.size()]; }
    std::uint64_t highest_held() const;
  };

  struct Outgoing {
    Bytes payload;
    bool safe = false;
    std::uint32_t sent_bytes = 0;  // how much of it went out in chunks on the current ring
  };

  struct ProbeInfo {
    TimeUs at = 0;
    wire::Probe probe;
  };

  // ring.cpp: dispatch, timers, sending, delivery
  void advance_clock(TimeUs now);
  void handle(NodeId from, wire::Packet&& packet, TimeUs now);
  void send(NodeId to, wire::Body body);
  void mark(Mark m) { ++coverage_[static_cast<std::size_t>(m)]; }
  void install_view(View view);
  void deliver_message(const wire::Message& message);
  void deliver_operational();
  void free_delivered(RingLog& log);

  // token.cpp: the operational and recovery token
  void on_mcast(wire::McastPacket&& packet, TimeUs now);
  void store_message(RingLog& log, wire::McastPacket&& packet);
  void adopt_recovered(const wire::Message& message);
  void pass_over_carriers(RingLog& log);
  void on_token(wire::Token&& token, TimeUs now);
  std::uint32_t serve_retransmits(RingLog& log, wire::Token& token, std::uint32_t allowance);
  wire::Message pack_message(const RingLog& log, std::uint64_t seq);
  std::uint32_t broadcast_new(RingLog& log, wire::Token& token, std::uint32_t allowance);
  std::uint32_t broadcast_recovery(RingLog& log, wire::Token& token, std::uint32_t allowance);
  void request_missing(RingLog& log, wire::Token& token);
  bool ring_idle(const RingLog& log, const wire::Token& token) const;
  void pass_token(RingLog& log, wire::Token&& token, TimeUs now);
  void forward_token(RingLog& log, TimeUs now);
  void release_token(RingLog& log, TimeUs now);
  void on_token_timers(TimeUs now);
  void wake_token(TimeUs now);
  void on_wake(const wire::Wake& wake, TimeUs now);
  void on_leave(NodeId from, TimeUs now);
  RingLog* active_log();

  // membership.cpp: gather and commit
  void enter_gather(TimeUs now);
  void on_join(NodeId from, wire::Join&& join, TimeUs now);
  void merge_join(NodeId from, const wire::Join& join, TimeUs now);
  bool member_abandoned_ring(NodeId from, const wire::Join& join, RingId ring,
                             const std::vector<NodeId>& members) const;
  void send_join();
  void check_consensus(TimeUs now);
  void on_consensus_timeout(TimeUs now);
  void on_commit_token(wire::CommitToken&& token, TimeUs now);
  void forward_commit_token(wire::CommitToken token, TimeUs now);
  void retransmit_commit_token(TimeUs now);
  void stop_commit_retransmits();
  std::vector<NodeId> gather_members() const;

  // recovery.cpp: moving from the old ring to the new one
  void enter_recovery(const wire::CommitToken& token, TimeUs now);
  bool update_recovery_progress(RingLog& log, wire::Token& token);
  void enter_operational(TimeUs now);
  void deliver_old_ring();

  // probe.cpp: reachability and merging of rings
  void on_probe(NodeId from, wire::Probe&& probe, TimeUs now);
  void send_probe(TimeUs now);
  std::vector<NodeId> heard_set(TimeUs now) const;
  bool fully_connected(const std::vector<NodeId>& hosts, TimeUs now) const;
  bool is_member_of_current(NodeId node) const;

  NodeId self_;
  std::vector<NodeId> nodes_;
  RingTunables tunables_;
  State state_ = State::gather;
  bool left_ = false;
  TimeUs now_ = 0;

  std::uint64_t ring_seq_seen_ = 0;      // highest ring seq seen in any join or commit token
  std::uint64_t ring_seq_accepted_ = 0;  // highest ring seq this host committed to

  RingLog current_;                 // the last regular ring installed (live when operational)
  std::optional<RingLog> forming_;  // recovery: the new ring
  std::optional<View> view_;

  // gather
  std::set<NodeId> proc_;
  std::set<NodeId> fail_;
  std::set<NodeId> consensus_;
  TimeUs gather_entered_at_ = 0;
  TimeUs join_send_at_ = kNever;
  TimeUs consensus_at_ = kNever;
  // commit
  std::optional<wire::CommitToken> commit_;
  TimeUs commit_deadline_ = kNever;
  struct SentCommitToken {
    NodeId to = kNoNode;
    wire::CommitToken token;
  };
  std::optional<SentCommitToken> commit_sent_;  // the commit token last passed on
  TimeUs commit_retransmit_at_ = kNever;
  // recovery
  std::vector<NodeId> transitional_members_;
  std::deque<wire::Message> recovery_queue_;
  std::uint64_t old_safe_up_to_ = 0;  // the old ring's safe mark, the highest any survivor knew
  // operational and recovery
  TimeUs token_loss_at_ = kNever;
  bool wake_sent_ = false;  // a wake went to the representative since the last token visit

  std::deque<Outgoing> send_queue_;
  Reassembler reassembler_;

  std::map<NodeId, TimeUs> heard_at_;
  std::map<NodeId, ProbeInfo> probes_;
  TimeUs probe_at_ = 0;

  std::vector<Action> actions_;
  RingStats stats_;
  Coverage coverage_{};
};

}  // namespace keel::ring
