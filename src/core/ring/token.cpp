// The regular token: ordering, retransmission, flow control and the token's own loss and
// retransmission. Used in the operational state and, on the new ring, in recovery.
#include <algorithm>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"
#include "core/ring/ring.hpp"

namespace keel::ring {

namespace {

std::uint64_t min_received(const wire::Token& token) {
  KEEL_ASSERT(!token.received_up_to.empty());
  return *std::min_element(token.received_up_to.begin(), token.received_up_to.end());
}

}  // namespace

Ring::RingLog* Ring::active_log() {
  if (state_ == State::operational) return &current_;
  if (state_ == State::recovery) return &*forming_;
  return nullptr;
}

void Ring::store_message(RingLog& log, wire::McastPacket&& packet) {
  const std::uint64_t seq = packet.message.seq;
  if (seq <= log.received_up_to || log.messages.count(seq) != 0) return;
  // A member broadcasts only while fewer than max_outstanding messages are missing somewhere,
  // so anything further ahead is not from a correct member: refuse it rather than hold it.
  if (seq > log.received_up_to + tunables_.max_outstanding_messages + tunables_.window_size) {
    ++stats_.packets_rejected;
    return;
  }
  if (tunables_.report_receipts) actions_.push_back(Received{log.id, seq});
  log.messages.emplace(seq, std::move(packet));
  log.high_seq = std::max(log.high_seq, seq);
  while (log.messages.count(log.received_up_to + 1) != 0) ++log.received_up_to;
}

void Ring::on_mcast(wire::McastPacket&& packet, TimeUs now) {
  const RingId ring = packet.message.ring;
  RingLog* log = nullptr;
  if (forming_ && ring == forming_->id) {
    log = &*forming_;
  } else if (current_.valid() && ring == current_.id &&
             (state_ == State::operational || state_ == State::gather)) {
    // Live when operational; in gather, late old-ring traffic is still useful. From the commit
    // token's first pass on, the old ring's messages arrive only through recovery, so that
    // every survivor finishes the old ring with the same messages.
    log = &current_;
  }
  if (log == nullptr) return;
  const std::uint64_t seq = packet.message.seq;
  // Only a later token holder broadcasts new sequence numbers: the token got through.
  if (log->token_copy && log->token_release_at == kNever && seq > log->token_copy_seq) {
    log->token_retransmit_at = kNever;
    log->token_copy.reset();
  }
  const bool on_forming_ring = forming_ && log == &*forming_;
  if (on_forming_ring && packet.recovered) adopt_recovered(*packet.recovered);
  const bool gap = seq > log->received_up_to + 1;
  store_message(*log, std::move(packet));
  if (state_ == State::operational && log == &current_) {
    deliver_operational();
    if (gap) wake_token(now);
  } else if (on_forming_ring) {
    pass_over_carriers(*log);
  }
}

// Recovery: an old-ring message re-broadcast by a survivor of this host's old ring.
void Ring::adopt_recovered(const wire::Message& message) {
  if (!current_.valid() || message.ring != current_.id) return;
  const std::uint64_t seq = message.seq;
  if (seq <= current_.received_up_to || current_.messages.count(seq) != 0) return;
  mark(Mark::old_message_recovered);
  store_message(current_, wire::McastPacket{message, std::nullopt});
}

// Recovery: carriers of old-ring messages are consumed as they come; application messages of
// the new ring wait until this host is operational.
void Ring::pass_over_carriers(RingLog& log) {
  for (;;) {
    auto it = log.messages.find(log.delivered_up_to + 1);
    if (it == log.messages.end() || !it->second.recovered) break;
    ++log.delivered_up_to;
  }
}

void Ring::on_token(wire::Token&& token, TimeUs now) {
  RingLog* log = active_log();
  if (log == nullptr || token.ring != log->id) return;
  if (token.token_seq <= log->last_token_seq) {
    mark(Mark::stale_token_dropped);
    return;
  }
  if (token.received_up_to.size() != log->members.size()) {
    ++stats_.packets_rejected;
    return;
  }
  ++stats_.tokens_received;
  stop_commit_retransmits();  // the ring's token runs: every member got the commit token
  log->last_token_seq = token.token_seq;
  log->token_retransmit_at = kNever;
  log->token_copy.reset();
  token_loss_at_ = now + ms_to_us(tunables_.token_timeout_ms);
  wake_sent_ = false;
  log->high_seq = std::max(log->high_seq, token.seq);

  token.fcc -= std::min(token.fcc, log->sent_last_visit);
  std::uint32_t allowance =
      tunables_.window_size > token.fcc
          ? std::min(tunables_.max_messages_per_visit, tunables_.window_size - token.fcc)
          : 0;
  if (allowance == 0) mark(Mark::window_full);
  std::uint32_t sent = serve_retransmits(*log, token, allowance);
  allowance -= sent;
  if (state_ == State::recovery) {
    sent += broadcast_recovery(*log, token, allowance);
  } else {
    sent += broadcast_new(*log, token, allowance);
  }
  request_missing(*log, token);
  token.received_up_to[log->my_index] = log->received_up_to;
  log->safe_up_to = std::max(log->safe_up_to, min_received(token));
  token.fcc += sent;
  log->sent_visit_before = log->sent_last_visit;
  log->sent_last_visit = sent;
  const auto backlog = static_cast<std::uint32_t>(send_queue_.size());
  token.backlog = token.backlog - std::min(token.backlog, log->backlog_last_visit) + backlog;
  log->backlog_last_visit = backlog;

  bool recovered = false;
  if (state_ == State::recovery) recovered = update_recovery_progress(*log, token);
  if (state_ == State::operational) {
    deliver_operational();
  } else {
    pass_over_carriers(*log);
  }
  pass_token(*log, std::move(token), now);
  if (recovered) enter_operational(now);
}

std::uint32_t Ring::serve_retransmits(RingLog& log, wire::Token& token, std::uint32_t allowance) {
  const std::uint64_t everyone_has = min_received(token);
  std::vector<std::uint64_t> still_wanted;
  std::uint32_t served = 0;
  for (std::uint64_t seq : token.retransmit_requests) {
    if (seq <= everyone_has) continue;  // the requester has it by now
    auto it = log.messages.find(seq);
    if (it != log.messages.end() && served < allowance) {
      send(kAllNodes, it->second);
      ++served;
      ++stats_.retransmissions;
      mark(Mark::retransmit_served);
    } else {
      still_wanted.push_back(seq);
    }
  }
  token.retransmit_requests = std::move(still_wanted);
  return served;
}

// Takes chunks from the head of the send queue until the packet is full. Safe and agreed
// messages never share a packet, so a packet's `safe` flag is true of every chunk in it.
wire::Message Ring::pack_message(const RingLog& log, std::uint64_t seq) {
  wire::Message message{log.id, seq, self_, send_queue_.front().safe, {}};
  std::size_t budget = tunables_.max_packet_bytes - wire::kMcastOverheadBytes;
  constexpr std::size_t kSmallestUsefulChunk = 64;
  while (!send_queue_.empty() && message.chunks.size() < kMaxChunksPerMessage) {
    Outgoing& head = send_queue_.front();
    if (head.safe != message.safe || budget <= wire::kChunkOverheadBytes) break;
    const std::size_t left = head.payload.size() - head.sent_bytes;
    const std::size_t room = budget - wire::kChunkOverheadBytes;
    const std::size_t take = std::min(left, room);
    if (take < left && take < kSmallestUsefulChunk && !message.chunks.empty()) break;
    wire::Chunk chunk;
    chunk.offset = head.sent_bytes;
    chunk.total_bytes = static_cast<std::uint32_t>(head.payload.size());
    chunk.data.assign(head.payload.begin() + head.sent_bytes,
                      head.payload.begin() + static_cast<std::ptrdiff_t>(head.sent_bytes + take));
    message.chunks.push_back(std::move(chunk));
    budget -= take + wire::kChunkOverheadBytes;
    head.sent_bytes += static_cast<std::uint32_t>(take);
    if (head.sent_bytes < head.payload.size()) break;  // the packet is full
    send_queue_.pop_front();
  }
  KEEL_ASSERT(!message.chunks.empty());
  return message;
}

std::uint32_t Ring::broadcast_new(RingLog& log, wire::Token& token, std::uint32_t allowance) {
  std::uint32_t sent = 0;
  while (sent < allowance && !send_queue_.empty()) {
    if (token.seq - min_received(token) >= tunables_.max_outstanding_messages) {
      mark(Mark::outstanding_limit);
      break;
    }
    wire::McastPacket packet{pack_message(log, token.seq + 1), std::nullopt};
    ++token.seq;
    send(kAllNodes, packet);
    store_message(log, std::move(packet));
    ++stats_.ring_messages_broadcast;
    ++sent;
  }
  return sent;
}

std::uint32_t Ring::broadcast_recovery(RingLog& log, wire::Token& token, std::uint32_t allowance) {
  std::uint32_t sent = 0;
  while (sent < allowance && !recovery_queue_.empty()) {
    if (token.seq - min_received(token) >= tunables_.max_outstanding_messages) {
      mark(Mark::outstanding_limit);
      break;
    }
    wire::McastPacket packet{wire::Message{log.id, token.seq + 1, self_, false, {}},
                             std::move(recovery_queue_.front())};
    recovery_queue_.pop_front();
    ++token.seq;
    send(kAllNodes, packet);
    store_message(log, std::move(packet));
    ++sent;
  }
  return sent;
}

void Ring::request_missing(RingLog& log, wire::Token& token) {
  auto& requests = token.retransmit_requests;
  for (std::uint64_t seq = log.received_up_to + 1; seq <= token.seq; ++seq) {
    if (log.messages.count(seq) != 0) continue;
    auto at = std::lower_bound(requests.begin(), requests.end(), seq);
    if (at != requests.end() && *at == seq) continue;
    if (requests.size() >= kMaxRetransmitRequests) {
      mark(Mark::retransmit_list_full);
      break;
    }
    requests.insert(at, seq);
  }
}

// Idle means nothing was broadcast for a whole rotation, this host's previous visit included:
// after a broadcast, one more rotation must run unheld so that every member learns that every
// other member holds it (safe delivery waits for that).
bool Ring::ring_idle(const RingLog& log, const wire::Token& token) const {
  return state_ == State::operational && token.fcc == 0 && log.sent_visit_before == 0 &&
         token.retransmit_requests.empty() && send_queue_.empty() &&
         min_received(token) == token.seq && log.received_up_to == token.seq;
}

// Passes the token on, or holds it: the representative of a ring that has been idle for
// idle_rotations_before_hold rotations holds it for token_hold_ms (a host with work wakes it); a
// one-host ring "passes" it to itself by timer.
void Ring::pass_token(RingLog& log, wire::Token&& token, TimeUs now) {
  ++token.token_seq;
  const bool idle = ring_idle(log, token);
  const bool alone = log.members.size() == 1;
  TimeUs hold = 0;
  if (log.my_index == 0) {
    log.idle_rotations = idle ? log.idle_rotations + 1 : 0;
    if (idle && log.idle_rotations > tunables_.idle_rotations_before_hold) {
      hold = ms_to_us(tunables_.token_hold_ms);
    }
  }
  if (alone) hold = idle ? std::max<TimeUs>(hold, ms_to_us(1)) : 0;
  log.token_copy = std::move(token);
  log.token_copy_seq = log.token_copy->seq;
  if (hold > 0 || alone) {
    if (hold > 0) mark(Mark::token_held_idle);
    log.token_release_at = now + hold;
    return;
  }
  forward_token(log, now);
}

void Ring::forward_token(RingLog& log, TimeUs now) {
  KEEL_ASSERT(log.token_copy.has_value());
  send(log.successor(), *log.token_copy);
  log.token_release_at = kNever;
  log.token_retransmit_at = now + ms_to_us(tunables_.token_retransmit_ms());
}

void Ring::release_token(RingLog& log, TimeUs now) {
  KEEL_ASSERT(log.token_copy.has_value());
  if (log.members.size() > 1) {
    forward_token(log, now);
    return;
  }
  wire::Token token = std::move(*log.token_copy);
  log.token_copy.reset();
  log.token_release_at = kNever;
  on_token(std::move(token), now);
}

void Ring::on_token_timers(TimeUs now) {
  if (now >= token_loss_at_) {
    mark(state_ == State::recovery ? Mark::token_lost_recovery : Mark::token_lost_operational);
    enter_gather(now);
    return;
  }
  retransmit_commit_token(now);
  RingLog& log = *active_log();
  if (now >= log.token_release_at) {
    release_token(log, now);
  } else if (now >= log.token_retransmit_at && log.token_copy) {
    send(log.successor(), *log.token_copy);
    ++stats_.tokens_retransmitted;
    mark(Mark::token_retransmitted);
    log.token_retransmit_at = now + ms_to_us(tunables_.token_retransmit_ms());
  }
}

// Something to send, or a gap to fill: get an idle token moving now instead of after the hold.
void Ring::wake_token(TimeUs now) {
  RingLog& log = current_;
  if (log.token_release_at != kNever) {
    mark(Mark::token_released_by_wake);
    release_token(log, now);
    return;
  }
  if (wake_sent_ || log.my_index == 0) return;
  wake_sent_ = true;
  send(log.members.front(), wire::Wake{log.id});
}

void Ring::on_wake(const wire::Wake& wake, TimeUs now) {
  if (state_ != State::operational || wake.ring != current_.id) return;
  if (current_.token_release_at == kNever) return;
  mark(Mark::token_released_by_wake);
  release_token(current_, now);
}

}  // namespace keel::ring
