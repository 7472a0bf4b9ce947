// Recovery: moving from the old ring to the new one without losing agreement.
//
// Members that came from the same old ring re-broadcast, on the new ring, the old messages some of
// them may lack. When the new ring's token shows that nothing is left to recover, each member
// finishes the old ring as extended virtual synchrony requires: the old messages it can still
// deliver in the old regular view, then the transitional view, then the rest, then the new
// regular view.
#include <algorithm>

#include "core/common/assert.hpp"
#include "core/ring/ring.hpp"

namespace keel::ring {

void Ring::enter_recovery(const wire::CommitToken& token, TimeUs now) {
  state_ = State::recovery;
  commit_.reset();
  commit_deadline_ = kNever;
  RingLog log;
  log.id = token.ring;
  for (const wire::CommitEntry& entry : token.entries) log.members.push_back(entry.node);
  log.my_index = static_cast<std::size_t>(std::find(log.members.begin(), log.members.end(), self_) -
                                          log.members.begin());
  KEEL_ASSERT(log.my_index < log.members.size());
  forming_ = std::move(log);
  token_loss_at_ = now + ms_to_us(tunables_.token_timeout_ms);

  transitional_members_.clear();
  recovery_queue_.clear();
  old_safe_up_to_ = current_.safe_up_to;
  if (!current_.valid()) return;  // a host that never had a ring has nothing to recover
  std::vector<const wire::CommitEntry*> group;  // members from this host's old ring
  for (const wire::CommitEntry& entry : token.entries) {
    if (entry.old_ring != current_.id) continue;
    group.push_back(&entry);
    transitional_members_.push_back(entry.node);
  }
  std::uint64_t low = ~std::uint64_t{0};
  std::uint64_t high = 0;
  for (const wire::CommitEntry* entry : group) {
    low = std::min(low, entry->old_received_up_to);
    high = std::max(high, entry->old_high_seq);
    old_safe_up_to_ = std::max(old_safe_up_to_, entry->old_safe_up_to);
  }
  for (std::uint64_t seq = low + 1; seq <= high; ++seq) {
    auto it = current_.messages.find(seq);
    if (it == current_.messages.end()) continue;
    // When some member surely holds it, only the lowest such member re-sends it; otherwise
    // every member that holds it does.
    NodeId sender = kNoNode;
    for (const wire::CommitEntry* entry : group) {
      if (entry->old_received_up_to >= seq) {
        sender = entry->node;
        break;
      }
    }
    if (sender == kNoNode || sender == self_) recovery_queue_.push_back(it->second.message);
  }
}

// The representative counts token rotations in which nobody had anything left to re-send and
// every member held every message; one such rotation completes recovery.
bool Ring::update_recovery_progress(RingLog& log, wire::Token& token) {
  if (log.my_index == 0) {
    const std::uint64_t everyone_has =
        *std::min_element(token.received_up_to.begin(), token.received_up_to.end());
    const bool nothing_left = !token.recovery_pending && everyone_has == token.seq;
    token.stable_rotations =
        nothing_left ? static_cast<std::uint8_t>(std::min(token.stable_rotations + 1, 255)) : 0;
    token.recovery_pending = false;
  }
  if (!recovery_queue_.empty() || log.received_up_to < token.seq) token.recovery_pending = true;
  return token.stable_rotations >= 1;
}

void Ring::enter_operational(TimeUs now) {
  (void)now;
  KEEL_ASSERT(state_ == State::recovery && forming_.has_value());
  deliver_old_ring();
  current_ = std::move(*forming_);
  forming_.reset();
  // Messages cut by a gap, or cut short and re-sent whole on the new ring, end here.
  if (reassembler_.clear() > 0) mark(Mark::fragment_chain_dropped);
  state_ = State::operational;
  proc_.clear();
  fail_.clear();
  consensus_.clear();
  install_view(View{View::Kind::regular, current_.id, {}, current_.members});
  deliver_operational();
  if (!send_queue_.empty()) wake_token(now);
}

void Ring::deliver_old_ring() {
  if (!current_.valid()) return;
  RingLog& old = current_;
  // 1. Still in the old regular view: agreed order up to the first gap, and safe messages only
  //    where some member of this group knew every old member held them.
  for (;;) {
    auto it = old.messages.find(old.delivered_up_to + 1);
    if (it == old.messages.end()) break;
    const wire::McastPacket& packet = it->second;
    if (!packet.recovered) {
      if (packet.message.safe && it->first > old_safe_up_to_) break;
      deliver_message(packet.message);
    }
    ++old.delivered_up_to;
  }
  // 2. The transitional view: the members that came from the old ring together.
  install_view(View{View::Kind::transitional, forming_->id, old.id, transitional_members_});
  // 3. The rest, which every member of the transitional view holds. After a gap, a message
  //    from a host outside it may depend on the missing one, so it is not delivered.
  const std::uint64_t high = old.highest_held();
  bool gap = false;
  for (std::uint64_t seq = old.delivered_up_to + 1; seq <= high; ++seq) {
    auto it = old.messages.find(seq);
    if (it == old.messages.end()) {
      gap = true;
      mark(Mark::gap_skipped_in_transitional);
      continue;
    }
    const wire::McastPacket& packet = it->second;
    if (packet.recovered) continue;
    if (gap && !std::binary_search(transitional_members_.begin(), transitional_members_.end(),
                                   packet.message.origin)) {
      mark(Mark::foreign_sender_skipped_in_transitional);
      continue;
    }
    if (packet.message.safe) mark(Mark::safe_delivered_in_transitional);
    deliver_message(packet.message);
  }
  old.delivered_up_to = std::max(old.delivered_up_to, high);
}

}  // namespace keel::ring
