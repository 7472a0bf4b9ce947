// Ring: construction, packet dispatch, timers, and delivery in the operational state.
// Token handling is in token.cpp, membership in membership.cpp, recovery in recovery.cpp and
// reachability probes in probe.cpp.
#include "core/ring/ring.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"

namespace keel::ring {

const char* state_name(State state) {
  switch (state) {
    case State::gather:
      return "gather";
    case State::commit:
      return "commit";
    case State::recovery:
      return "recovery";
    case State::operational:
      return "operational";
  }
  return "?";
}

std::uint64_t Ring::RingLog::highest_held() const {
  if (messages.empty()) return received_up_to;
  return std::max(received_up_to, messages.rbegin()->first);
}

Ring::Ring(NodeId self, std::vector<NodeId> nodes, RingTunables tunables,
           std::uint64_t ring_seq_floor, TimeUs now)
    : self_(self), nodes_(std::move(nodes)), tunables_(tunables), now_(now) {
  std::sort(nodes_.begin(), nodes_.end());
  nodes_.erase(std::unique(nodes_.begin(), nodes_.end()), nodes_.end());
  KEEL_ASSERT(self_ != kNoNode && self_ != kAllNodes);
  KEEL_ASSERT(std::binary_search(nodes_.begin(), nodes_.end(), self_));
  KEEL_ASSERT(nodes_.size() <= kMaxNodes);
  KEEL_ASSERT(nodes_.front() != kNoNode && nodes_.back() != kAllNodes);
  KEEL_ASSERT(!validate(tunables_).has_value());
  ring_seq_seen_ = ring_seq_floor;
  ring_seq_accepted_ = ring_seq_floor;
  probe_at_ = now;
  enter_gather(now);
}

void Ring::advance_clock(TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
}

void Ring::on_packet(NodeId from, std::span<const std::uint8_t> bytes, TimeUs now) {
  advance_clock(now);
  if (left_) return;
  if (from == self_ || !std::binary_search(nodes_.begin(), nodes_.end(), from)) {
    ++stats_.packets_rejected;
    return;
  }
  auto decoded = wire::decode(bytes);
  if (!decoded.ok() || decoded.value().sender != from) {
    ++stats_.packets_rejected;
    return;
  }
  ++stats_.packets_received;
  heard_at_[from] = now;
  handle(from, std::move(decoded).value(), now);
}

void Ring::handle(NodeId from, wire::Packet&& packet, TimeUs now) {
  std::visit(
      [&](auto&& body) {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, wire::McastPacket>) {
          on_mcast(std::move(body), now);
        } else if constexpr (std::is_same_v<T, wire::Token>) {
          on_token(std::move(body), now);
        } else if constexpr (std::is_same_v<T, wire::Join>) {
          on_join(from, std::move(body), now);
        } else if constexpr (std::is_same_v<T, wire::CommitToken>) {
          on_commit_token(std::move(body), now);
        } else if constexpr (std::is_same_v<T, wire::Probe>) {
          on_probe(from, std::move(body), now);
        } else if constexpr (std::is_same_v<T, wire::Wake>) {
          on_wake(body, now);
        } else {
          on_leave(from, now);
        }
      },
      std::move(packet.body));
}

void Ring::on_tick(TimeUs now) {
  advance_clock(now);
  if (left_) return;
  const TimeUs due = next_deadline();
  if (due != kNever && now > due + ms_to_us(tunables_.token_timeout_ms)) mark(Mark::clock_jump);
  if (now >= probe_at_) {
    send_probe(now);
    probe_at_ = now + ms_to_us(tunables_.probe_interval_ms);
  }
  switch (state_) {
    case State::gather:
      if (now >= consensus_at_) {
        on_consensus_timeout(now);
      } else if (now >= join_send_at_) {
        send_join();
        join_send_at_ = now + ms_to_us(tunables_.join_timeout_ms);
        check_consensus(now);
      }
      break;
    case State::commit:
      if (now >= commit_deadline_) {
        mark(Mark::commit_token_lost);
        enter_gather(now);
      } else {
        retransmit_commit_token(now);
      }
      break;
    case State::recovery:
    case State::operational:
      on_token_timers(now);
      break;
  }
}

TimeUs Ring::next_deadline() const {
  if (left_) return kNever;
  TimeUs due = probe_at_;
  switch (state_) {
    case State::gather:
      due = std::min({due, join_send_at_, consensus_at_});
      break;
    case State::commit:
      due = std::min({due, commit_deadline_, commit_retransmit_at_});
      break;
    case State::recovery:
    case State::operational: {
      const RingLog& log = state_ == State::recovery ? *forming_ : current_;
      due = std::min({due, token_loss_at_, log.token_retransmit_at, log.token_release_at,
                      commit_retransmit_at_});
      break;
    }
  }
  return due;
}

std::vector<Action> Ring::take_actions() {
  std::vector<Action> out;
  out.swap(actions_);
  return out;
}

Result<Ok> Ring::submit(Bytes payload, DeliveryKind kind, TimeUs now) {
  advance_clock(now);
  if (left_) return Error{"this host has left the ring"};
  if (payload.size() > kMaxApplicationMessageBytes) {
    return Error{"message of " + std::to_string(payload.size()) + " bytes exceeds the limit of " +
                 std::to_string(kMaxApplicationMessageBytes) + " bytes"};
  }
  if (send_queue_.size() >= tunables_.max_send_queue_messages) {
    return Error{"send queue full (" + std::to_string(send_queue_.size()) + " messages waiting)"};
  }
  send_queue_.push_back(Outgoing{std::move(payload), kind == DeliveryKind::safe, 0});
  ++stats_.messages_submitted;
  if (state_ == State::operational) wake_token(now);
  return Ok{};
}

void Ring::leave(TimeUs now) {
  advance_clock(now);
  if (left_) return;
  // Sent twice: one lost packet should not cost the others a token timeout.
  for (int copy = 0; copy < 2; ++copy) send(kAllNodes, wire::Leave{current_.id});
  left_ = true;
}

void Ring::send(NodeId to, wire::Body body) {
  Bytes bytes = wire::encode(wire::Packet{self_, std::move(body)});
  KEEL_ASSERT(bytes.size() <= tunables_.max_packet_bytes);
  ++stats_.packets_sent;
  actions_.push_back(Send{to, std::move(bytes)});
}

void Ring::install_view(View view) {
  KEEL_ASSERT(std::is_sorted(view.members.begin(), view.members.end()));
  KEEL_ASSERT(std::binary_search(view.members.begin(), view.members.end(), self_));
  ++stats_.views_installed;
  if (view.regular()) view_ = view;
  actions_.push_back(std::move(view));
}

void Ring::deliver_message(const wire::Message& message) {
  std::uint32_t index = 0;
  for (const wire::Chunk& chunk : message.chunks) {
    const std::uint64_t dropped_before = reassembler_.dropped_chains();
    std::optional<Bytes> whole = reassembler_.add(message.origin, chunk);
    if (reassembler_.dropped_chains() != dropped_before) mark(Mark::fragment_chain_dropped);
    if (!whole) continue;
    ++stats_.messages_delivered;
    actions_.push_back(DeliveredMessage{message.origin, message.ring, message.seq, index++,
                                        message.safe, std::move(*whole)});
  }
}

// Delivers, in sequence order, every held message that agreed (or safe) order allows.
void Ring::deliver_operational() {
  RingLog& log = current_;
  for (;;) {
    auto it = log.messages.find(log.delivered_up_to + 1);
    if (it == log.messages.end()) break;
    const wire::McastPacket& packet = it->second;
    if (!packet.recovered) {
      if (packet.message.safe && it->first > log.safe_up_to) break;
      deliver_message(packet.message);
    }
    ++log.delivered_up_to;
  }
  free_delivered(log);
}

// A message every member holds and this host delivered can never be asked for again.
void Ring::free_delivered(RingLog& log) {
  const std::uint64_t limit = std::min(log.delivered_up_to, log.safe_up_to);
  log.messages.erase(log.messages.begin(), log.messages.upper_bound(limit));
}

}  // namespace keel::ring
