// Membership: the gather state (join messages, consensus, failing silent hosts) and the commit
// token that turns an agreed membership into a new ring.
#include <algorithm>
#include <iterator>

#include "core/common/assert.hpp"
#include "core/ring/ring.hpp"

namespace keel::ring {

namespace {

std::vector<NodeId> to_vector(const std::set<NodeId>& set) { return {set.begin(), set.end()}; }

bool contains(const std::vector<NodeId>& sorted, NodeId node) {
  return std::binary_search(sorted.begin(), sorted.end(), node);
}

std::vector<NodeId> commit_members(const wire::CommitToken& token) {
  std::vector<NodeId> members;
  for (const wire::CommitEntry& entry : token.entries) members.push_back(entry.node);
  return members;
}

}  // namespace

std::vector<NodeId> Ring::gather_members() const {
  std::vector<NodeId> members;
  std::set_difference(proc_.begin(), proc_.end(), fail_.begin(), fail_.end(),
                      std::back_inserter(members));
  return members;
}

void Ring::enter_gather(TimeUs now) {
  const bool fresh_episode = state_ == State::operational;
  ++stats_.gathers_entered;
  if (fresh_episode) {
    proc_.clear();
    fail_.clear();
  }
  proc_.insert(self_);
  proc_.insert(current_.members.begin(), current_.members.end());
  if (forming_) proc_.insert(forming_->members.begin(), forming_->members.end());
  state_ = State::gather;
  forming_.reset();
  commit_.reset();
  commit_deadline_ = kNever;
  stop_commit_retransmits();
  recovery_queue_.clear();
  token_loss_at_ = kNever;
  consensus_ = {self_};
  gather_entered_at_ = now;
  consensus_at_ = now + ms_to_us(tunables_.consensus_timeout_ms);
  join_send_at_ = now + ms_to_us(tunables_.join_timeout_ms);
  // A message cut short on the old ring is sent again, whole, on the next one.
  if (!send_queue_.empty() && send_queue_.front().sent_bytes > 0) {
    send_queue_.front().sent_bytes = 0;
    mark(Mark::partial_message_resent);
  }
  send_join();
}

void Ring::send_join() {
  send(kAllNodes, wire::Join{ring_seq_seen_, to_vector(proc_), to_vector(fail_)});
}

void Ring::on_join(NodeId from, wire::Join&& join, TimeUs now) {
  ring_seq_seen_ = std::max(ring_seq_seen_, join.ring_seq_seen);
  // Peers with another configuration may name hosts this one does not know: ignore those.
  auto unknown = [&](NodeId n) { return !std::binary_search(nodes_.begin(), nodes_.end(), n); };
  std::erase_if(join.proc, unknown);
  std::erase_if(join.fail, unknown);
  switch (state_) {
    case State::operational:
      if (is_member_of_current(from)) {
        if (!member_abandoned_ring(from, join, current_.id, current_.members)) return;
      } else {
        // A join that lists this host as failed is from a gather that has already given up on
        // it: joining that gather would only split again. Probes bring the two together later.
        if (contains(join.fail, self_)) return;
        std::vector<NodeId> hosts = current_.members;
        hosts.push_back(from);
        std::sort(hosts.begin(), hosts.end());
        if (!fully_connected(hosts, now)) {
          mark(Mark::merge_refused_one_way);
          return;
        }
      }
      enter_gather(now);
      break;
    case State::commit:
      if (!member_abandoned_ring(from, join, commit_->ring, commit_members(*commit_))) return;
      mark(Mark::join_in_commit);
      enter_gather(now);
      break;
    case State::recovery:
      if (!member_abandoned_ring(from, join, forming_->id, forming_->members)) return;
      mark(Mark::join_in_recovery);
      enter_gather(now);
      break;
    case State::gather:
      break;
  }
  merge_join(from, join, now);
}

// Joins still in flight from the gather that agreed on a ring are expected after it forms and are
// ignored: they were sent before their sender saw the ring. A member that saw the ring (its join
// names a ring sequence at least as high) and still sends joins has abandoned it.
bool Ring::member_abandoned_ring(NodeId from, const wire::Join& join, RingId ring,
                                 const std::vector<NodeId>& members) const {
  return contains(members, from) && join.ring_seq_seen >= ring.seq;
}

// A member shutting down said so: form without it now rather than after a token timeout.
void Ring::on_leave(NodeId from, TimeUs now) {
  const bool known = is_member_of_current(from) || proc_.count(from) != 0 ||
                     (forming_ && contains(forming_->members, from)) ||
                     (commit_ && contains(commit_members(*commit_), from));
  if (!known || fail_.count(from) != 0) return;
  mark(Mark::member_left);
  if (state_ != State::gather) enter_gather(now);
  fail_.insert(from);
  consensus_.erase(from);
  send_join();
  check_consensus(now);
}

void Ring::merge_join(NodeId from, const wire::Join& join, TimeUs now) {
  if (fail_.count(from) != 0) return;
  if (contains(join.fail, self_)) {
    // It gave up on this host; this host gives up on it, and the two sides form apart.
    mark(Mark::listed_as_failed_by_peer);
    fail_.insert(from);
    consensus_.erase(from);
    send_join();
    check_consensus(now);
    return;
  }
  const std::size_t proc_before = proc_.size();
  const std::size_t fail_before = fail_.size();
  proc_.insert(join.proc.begin(), join.proc.end());
  fail_.insert(join.fail.begin(), join.fail.end());
  if (proc_.size() != proc_before || fail_.size() != fail_before) {
    consensus_ = {self_};
    consensus_at_ = now + ms_to_us(tunables_.consensus_timeout_ms);
    send_join();
  }
  if (to_vector(proc_) == join.proc && to_vector(fail_) == join.fail) consensus_.insert(from);
  check_consensus(now);
}

// Once every host in proc - fail sent the same sets, the lowest of them forms the ring.
void Ring::check_consensus(TimeUs now) {
  if (state_ != State::gather) return;
  if (now < gather_entered_at_ + ms_to_us(tunables_.join_timeout_ms)) return;
  const std::vector<NodeId> members = gather_members();
  KEEL_ASSERT(!members.empty() && contains(members, self_));
  for (NodeId member : members) {
    if (consensus_.count(member) == 0) return;
  }
  if (members.front() != self_) return;
  ring_seq_seen_ = std::max(ring_seq_seen_, ring_seq_accepted_) + 1;
  wire::CommitToken token;
  token.ring = RingId{ring_seq_seen_, self_};
  for (NodeId member : members) token.entries.push_back(wire::CommitEntry{member, {}, 0, 0, 0});
  on_commit_token(std::move(token), now);
}

void Ring::on_consensus_timeout(TimeUs now) {
  const std::vector<NodeId> members = gather_members();
  bool all_agreed = true;
  for (NodeId member : members) {
    if (consensus_.count(member) == 0) {
      all_agreed = false;
      fail_.insert(member);
      mark(Mark::host_failed_in_gather);
    }
  }
  if (all_agreed && members.front() != self_) {
    // Everyone agreed, yet no commit token came: the host that should have formed the ring is
    // gone or cannot reach us.
    mark(Mark::representative_silent_after_consensus);
    fail_.insert(members.front());
  }
  consensus_ = {self_};
  consensus_at_ = now + ms_to_us(tunables_.consensus_timeout_ms);
  send_join();
  check_consensus(now);
}

void Ring::on_commit_token(wire::CommitToken&& token, TimeUs now) {
  ring_seq_seen_ = std::max(ring_seq_seen_, token.ring.seq);
  if (commit_sent_ && token.ring == commit_sent_->token.ring &&
      token.token_seq > commit_sent_->token.token_seq) {
    stop_commit_retransmits();  // it went round: the copy we passed on arrived
  }
  const std::vector<NodeId> members = commit_members(token);
  auto mine = std::find_if(token.entries.begin(), token.entries.end(),
                           [&](const wire::CommitEntry& e) { return e.node == self_; });
  if (mine == token.entries.end()) return;
  const bool all_filled = std::all_of(token.entries.begin(), token.entries.end(),
                                      [](const wire::CommitEntry& e) { return e.filled; });
  if (state_ == State::gather) {
    if (mine->filled || members != gather_members()) return;
    if (token.ring.seq <= ring_seq_accepted_) {
      mark(Mark::commit_token_refused_old_ring_seq);
      return;
    }
    *mine = wire::CommitEntry{
        self_, current_.id, current_.received_up_to, current_.highest_held(), current_.safe_up_to,
        true};
    ring_seq_accepted_ = token.ring.seq;
    state_ = State::commit;
    commit_ = token;
    commit_deadline_ = now + ms_to_us(tunables_.token_timeout_ms);
    consensus_at_ = kNever;
    join_send_at_ = kNever;
    forward_commit_token(std::move(token), now);
  } else if (state_ == State::commit) {
    if (token.ring != commit_->ring || !all_filled) return;
    enter_recovery(token, now);
    forward_commit_token(std::move(token), now);
  } else if (state_ == State::recovery) {
    // The commit token's second pass is complete: the representative starts the ring's token.
    if (token.ring != forming_->id || forming_->my_index != 0 || !all_filled) return;
    if (forming_->last_token_seq != 0 || forming_->token_copy) return;
    wire::Token first;
    first.ring = forming_->id;
    first.token_seq = 1;
    first.recovery_pending = true;
    first.received_up_to.assign(forming_->members.size(), 0);
    on_token(std::move(first), now);
  }
}

void Ring::forward_commit_token(wire::CommitToken token, TimeUs now) {
  const std::vector<NodeId> members = commit_members(token);
  auto at = std::find(members.begin(), members.end(), self_);
  const NodeId next = members[static_cast<std::size_t>(at - members.begin() + 1) % members.size()];
  ++token.token_seq;
  if (next == self_) {
    on_commit_token(std::move(token), now);
    return;
  }
  send(next, token);
  // A lost commit token would cost a whole token timeout and a new gather: re-send it until
  // it is seen to have gone on.
  commit_sent_ = SentCommitToken{next, std::move(token)};
  commit_retransmit_at_ = now + ms_to_us(tunables_.token_retransmit_ms());
}

void Ring::retransmit_commit_token(TimeUs now) {
  if (!commit_sent_ || now < commit_retransmit_at_) return;
  send(commit_sent_->to, commit_sent_->token);
  mark(Mark::commit_token_retransmitted);
  commit_retransmit_at_ = now + ms_to_us(tunables_.token_retransmit_ms());
}

void Ring::stop_commit_retransmits() {
  commit_sent_.reset();
  commit_retransmit_at_ = kNever;
}

}  // namespace keel::ring
