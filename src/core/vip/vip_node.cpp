#include "core/vip/vip_node.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "core/vip/placement.hpp"

namespace keel::vip {

VipNode::VipNode(NodeId self, VipConfig config, std::vector<std::uint32_t> adopted)
    : self_(self),
      config_(std::move(config)),
      index_(index_addresses(config_)),
      digest_(config_digest(config_)),
      healthy_(config_.pools.size(), false),
      presumed_(config_.pools.size(), false) {
  KEEL_ASSERT(self_ != kNoNode);
  KEEL_ASSERT(!validate_vip_config(config_).has_value());
  for (std::uint32_t address : adopted) {
    KEEL_ASSERT(address < index_.size());
    held_.insert(address);
    unconfirmed_.insert(address);
    // The agent before this one held the address, so its pool was healthy when it last knew;
    // that stands until this agent's own checks say otherwise. Without it a restart would give
    // up every address in the view it rejoins with, before its first check could come back.
    healthy_[index_.pool_of[address]] = true;
    presumed_[index_.pool_of[address]] = true;
  }
}

std::optional<std::uint32_t> VipNode::pool_number(const std::string& name) const {
  for (std::uint32_t p = 0; p < config_.pools.size(); ++p) {
    if (config_.pools[p].name == name) return p;
  }
  return std::nullopt;
}

std::optional<std::uint32_t> VipNode::address_number(const std::string& text) const {
  for (std::uint32_t a = 0; a < index_.size(); ++a) {
    const std::uint32_t p = index_.pool_of[a];
    if (config_.pools[p].addresses[a - index_.first_of[p]] == text) return a;
  }
  return std::nullopt;
}

NodeId VipNode::owner(std::uint32_t address) const {
  return synced_ ? slots_.at(address).owner : kNoNode;
}

NodeId VipNode::handover_from(std::uint32_t address) const {
  return synced_ ? slots_.at(address).handover_from : kNoNode;
}

std::vector<VipAction> VipNode::take_actions() {
  std::vector<VipAction> out;
  out.swap(actions_);
  return out;
}

// ---- events ----

void VipNode::on_view(const ring::View& view, TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
  synced_ = false;
  if (!view.regular()) {
    frozen_ = true;  // nothing is decided until the next regular view has synchronised
    return;
  }
  KEEL_ASSERT(std::binary_search(view.members.begin(), view.members.end(), self_));
  view_ = view.ring;
  members_ = view.members;
  frozen_ = false;
  if (!first_view_us_) first_view_us_ = now;
  if (members_.size() > 1) met_others_ = true;
  settle_at_ = now + config_.settle_us;
  silent_notice_at_ = now + kSilentMemberNoticeUs;
  if (!met_others_) settle_at_ = std::max(settle_at_, *first_view_us_ + config_.startup_us);
  seen_ = 0;
  records_.clear();
  slots_.assign(index_.size(), Slot{});
  targets_.assign(index_.size(), kNoNode);
  mismatch_reported_.clear();
  states_sent_ = 0;
  own_states_seen_ = 0;
  acquire_blocked_until_ = 0;
  send_state();
}

void VipNode::on_message(NodeId origin, std::span<const std::uint8_t> payload, TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
  auto decoded = decode_vip_message(payload);
  if (!decoded.ok()) {
    notice("vip: ignored a message from node " + std::to_string(origin) + ": " +
           decoded.error().message);
    return;
  }
  const VipState& state = decoded.value();
  if (!view_ || frozen_ || state.view != *view_) return;  // from another view
  if (!std::binary_search(members_.begin(), members_.end(), origin)) return;
  if (state.config_digest != digest_) {
    if (mismatch_reported_.insert(origin).second) {
      notice("vip: node " + std::to_string(origin) +
             " runs different pools; no address is acquired in this view until they match");
    }
    return;
  }
  ++seen_;
  if (origin == self_) ++own_states_seen_;
  const auto previous = records_.find(origin);
  Record record{state.drained, std::vector<bool>(config_.pools.size(), false),
                std::vector<bool>(index_.size(), false), state.seen,
                previous == records_.end() ? 1 : previous->second.messages + 1};
  for (std::uint16_t p : state.healthy_pools) {
    if (p < record.healthy.size()) record.healthy[p] = true;
  }
  for (std::uint16_t a : state.held) {
    if (a < record.held.size()) record.held[a] = true;
  }
  records_[origin] = std::move(record);
  if (synced_) {
    reconcile();
  } else if (records_.size() == members_.size()) {
    sync();
  }
  act(now);
}

void VipNode::set_healthy(std::uint32_t pool, bool healthy, TimeUs now) {
  KEEL_ASSERT(pool < healthy_.size());
  KEEL_ASSERT(now >= now_);
  now_ = now;
  const bool changed = healthy_[pool] != healthy;
  healthy_[pool] = healthy;
  presumed_[pool] = false;
  bool released = false;
  if (!healthy) {
    for (std::uint32_t a : std::set<std::uint32_t>(held_)) {
      if (index_.pool_of[a] == pool) {
        release(a);
        released = true;
      }
    }
  }
  if ((changed || released) && view_) send_state();
  // The others free this host's addresses of the pool when that State arrives: acquire nothing
  // from an older table before then (even when nothing was held, a pending acquisition was).
  if (!healthy && view_) acquire_blocked_until_ = states_sent_;
  act(now);
}

void VipNode::drain(TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
  if (drained_) return;
  drained_ = true;
  if (!view_) return;
  send_state();
  acquire_blocked_until_ = states_sent_;
}

void VipNode::undrain(TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
  if (!drained_) return;
  drained_ = false;
  if (view_) {
    send_state();
    // The table still counts this host drained, and may keep it the holder of an address it
    // has already handed over and released: wait until it counts this host undrained.
    acquire_blocked_until_ = states_sent_;
  }
  act(now);
}

void VipNode::on_tick(TimeUs now) {
  KEEL_ASSERT(now >= now_);
  now_ = now;
  notice_silent_members();
  act(now);
}

TimeUs VipNode::next_deadline() const {
  if (!synced_ && !frozen_ && view_) return silent_notice_at_;
  if (!synced_ || now_ >= settle_at_) return kNever;
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    if (can_acquire(a, true)) return settle_at_;
  }
  for (std::uint32_t a : unconfirmed_) {
    if (placed_here(a, true)) return settle_at_;
  }
  return kNever;
}

std::vector<NodeId> VipNode::waiting_for() const {
  std::vector<NodeId> out;
  if (synced_ || frozen_ || !view_) return out;
  for (NodeId node : members_) {
    if (!records_.contains(node)) out.push_back(node);
  }
  return out;
}

void VipNode::notice_silent_members() {
  const std::vector<NodeId> silent = waiting_for();
  if (silent.empty() || now_ < silent_notice_at_) return;
  silent_notice_at_ = kNever;
  std::string nodes;
  for (NodeId node : silent) nodes += (nodes.empty() ? "" : ", ") + std::to_string(node);
  notice("vip: no floating IP moves in this view: no State with this host's pools from node" +
         std::string(silent.size() > 1 ? "s " : " ") + nodes + " after " +
         std::to_string(kSilentMemberNoticeUs / 1'000'000) +
         " s. Every host of the ring must run keel agent with the same [vip] pools; "
         "`keel vip status` there says whether it does");
}

// ---- the replicated table ----

bool VipNode::eligible(NodeId node, std::uint32_t pool) const {
  auto it = records_.find(node);
  if (it == records_.end()) return false;
  return config_.pools[pool].allows(node) && it->second.healthy[pool] && !it->second.drained;
}

void VipNode::sync() {
  KEEL_ASSERT(records_.size() == members_.size());
  // Addresses with one holder keep it; each address held on several sides of a merge goes to the
  // best of its holders: eligible, then preferred, then holding the fewest of the pool's
  // addresses so far for its weight, then the lowest node id. The others release it.
  std::map<std::pair<std::uint32_t, NodeId>, std::uint64_t> count;  // (pool, node) -> owned
  std::vector<std::vector<NodeId>> holders(slots_.size());
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    for (const auto& [node, record] : records_) {
      if (record.held[a]) holders[a].push_back(node);
    }
    slots_[a] = Slot{holders[a].size() == 1 ? holders[a].front() : kNoNode, kNoNode, 0};
    if (holders[a].size() == 1) ++count[{index_.pool_of[a], holders[a].front()}];
  }
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    if (holders[a].size() < 2) continue;
    const std::uint32_t pool = index_.pool_of[a];
    auto better = [&](NodeId x, NodeId y) {
      if (eligible(x, pool) != eligible(y, pool)) return eligible(x, pool);
      if ((index_.preferred[a] == x) != (index_.preferred[a] == y)) {
        return index_.preferred[a] == x;
      }
      const std::uint64_t lhs = (count[{pool, x}] + 1) * config_.pools[pool].weight(y);
      const std::uint64_t rhs = (count[{pool, y}] + 1) * config_.pools[pool].weight(x);
      return lhs != rhs ? lhs < rhs : x < y;
    };
    NodeId winner = holders[a].front();
    for (NodeId node : holders[a]) {
      if (better(node, winner)) winner = node;
    }
    slots_[a].owner = winner;
    ++count[{pool, winner}];
  }
  synced_ = true;
  reconcile();
}

// Owners that announced their release, or lost their pool's health, give their address up.
void VipNode::free_confirmed() {
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    Slot& slot = slots_[a];
    if (slot.handover_from != kNoNode && !records_.at(slot.handover_from).held[a]) {
      slot.handover_from = kNoNode;
    }
    if (slot.owner == kNoNode) continue;
    const Record& record = records_.at(slot.owner);
    const bool unhealthy = !record.healthy[index_.pool_of[a]];
    const bool confirmed = slot.release_asked != 0 && record.seen >= slot.release_asked;
    // A host the table counts drained never acquires (drain() and undrain() block acquisition
    // until the table has their State), so an address such an owner does not hold is free.
    if (!record.held[a] && (unhealthy || confirmed || record.drained)) {
      slot.owner = kNoNode;
      slot.release_asked = 0;
    }
  }
}

std::vector<NodeId> VipNode::targets() const {
  std::vector<NodeId> out(slots_.size(), kNoNode);
  for (std::uint32_t p = 0; p < config_.pools.size(); ++p) {
    const PoolConfig& pool = config_.pools[p];
    PoolInput input;
    for (NodeId node : members_) {
      if (eligible(node, p)) input.candidates.push_back({node, pool.weight(node)});
    }
    const std::uint32_t first = index_.first_of[p];
    for (std::uint32_t i = 0; i < pool.addresses.size(); ++i) {
      input.current.push_back(slots_[first + i].owner);
      input.preferred.push_back(index_.preferred[first + i]);
    }
    const std::vector<NodeId> placed = place_pool(input);
    std::copy(placed.begin(), placed.end(), out.begin() + first);
  }
  return out;
}

void VipNode::reconcile() {
  KEEL_ASSERT(synced_);
  free_confirmed();
  targets_ = targets();
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    Slot& slot = slots_[a];
    const NodeId target = targets_[a];
    if (slot.owner == kNoNode && slot.handover_from != kNoNode &&
        (target == kNoNode || target == slot.handover_from)) {
      // The handover's new owner lost the address; the drained holder keeps it after all.
      slot.owner = slot.handover_from;
      slot.handover_from = kNoNode;
      continue;
    }
    if (slot.owner == target) {
      slot.release_asked = 0;  // placement came back to the owner: the request is void
      continue;
    }
    if (slot.owner == kNoNode) {
      slot.owner = target;
      continue;
    }
    if (slot.release_asked != 0) continue;  // waiting for the owner's confirmation
    const bool drained = records_.at(slot.owner).drained;
    if (drained && target == kNoNode) continue;  // nobody else can take it: keep it
    if (drained && slot.handover_from == kNoNode) {
      slot.handover_from = slot.owner;  // make-before-break
      slot.owner = target;
      continue;
    }
    slot.release_asked = seen_;  // break-before-make
  }
}

// ---- local decisions ----

bool VipNode::should_release(std::uint32_t address) const {
  const Slot& slot = slots_[address];
  if (slot.handover_from == self_) {
    if (slot.owner == self_) return false;
    return slot.owner != kNoNode && records_.at(slot.owner).held[address];
  }
  if (slot.owner != self_) return true;
  return slot.release_asked != 0;
}

bool VipNode::can_acquire(std::uint32_t address, bool ignore_settle) const {
  const Slot& slot = slots_[address];
  if (slot.owner != self_ || slot.release_asked != 0 || held_.count(address) != 0) return false;
  if (!healthy_[index_.pool_of[address]] || drained_) return false;
  if (!ignore_settle && now_ < settle_at_) return false;
  if (own_states_seen_ < acquire_blocked_until_) return false;
  for (const auto& [node, record] : records_) {
    if (node != self_ && node != slot.handover_from && record.held[address]) return false;
  }
  return true;
}

// Placement gives `address`, which this host holds, to this host (unconfirmed() says when that
// is enough to announce it).
bool VipNode::placed_here(std::uint32_t address, bool ignore_settle) const {
  const Slot& slot = slots_[address];
  if (slot.owner != self_ || slot.release_asked != 0 || slot.handover_from != kNoNode) {
    return false;
  }
  for (const auto& [node, record] : records_) {
    if (node != self_ && record.held[address]) return false;
  }
  const PoolConfig& pool = config_.pools[index_.pool_of[address]];
  if (pool.nodes.size() == 1) return true;  // only this host may hold it
  // Alone since start, settle_at_ includes the startup time.
  return ignore_settle || now_ >= settle_at_;
}

void VipNode::act(TimeUs now) {
  now_ = now;
  if (!synced_) return;
  bool changed = false;
  for (std::uint32_t a : std::set<std::uint32_t>(held_)) {
    if (should_release(a)) {
      release(a);
      changed = true;
    }
  }
  bool confirm = false;
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    if (can_acquire(a, false)) {
      acquire(a);
      changed = true;
    }
    const Slot& slot = slots_[a];
    confirm |= slot.owner == self_ && slot.release_asked > last_sent_seen_;
  }
  std::erase_if(unconfirmed_, [this](std::uint32_t a) { return placed_here(a, false); });
  if (changed || confirm) send_state();
}

void VipNode::acquire(std::uint32_t address) {
  KEEL_ASSERT(held_.insert(address).second);
  const std::uint32_t pool = index_.pool_of[address];
  actions_.push_back(
      Acquire{address, pool, config_.pools[pool].addresses[address - index_.first_of[pool]]});
}

void VipNode::release(std::uint32_t address) {
  KEEL_ASSERT(held_.erase(address) == 1);
  unconfirmed_.erase(address);
  const std::uint32_t pool = index_.pool_of[address];
  actions_.push_back(
      Release{address, pool, config_.pools[pool].addresses[address - index_.first_of[pool]]});
}

void VipNode::send_state() {
  KEEL_ASSERT(view_.has_value());
  last_sent_seen_ = seen_;
  ++states_sent_;
  actions_.push_back(Broadcast{});
}

Bytes VipNode::state_message() const {
  KEEL_ASSERT(view_.has_value());
  VipState state{*view_, digest_, seen_, drained_, {}, {}};
  for (std::uint32_t p = 0; p < healthy_.size(); ++p) {
    if (healthy_[p]) state.healthy_pools.push_back(static_cast<std::uint16_t>(p));
  }
  for (std::uint32_t a : held_) state.held.push_back(static_cast<std::uint16_t>(a));
  return encode_vip_state(state);
}

void VipNode::acquire_failed(std::uint32_t address, TimeUs now) {
  KEEL_ASSERT(address < slots_.size());
  if (held_.erase(address) == 0) return;
  unconfirmed_.erase(address);
  const std::uint64_t sent = states_sent_;
  set_healthy(index_.pool_of[address], false, now);
  // A State already sent may have claimed it (a held address found gone and not added back):
  // one more says it is not.
  if (states_sent_ == sent && view_) {
    send_state();
    acquire_blocked_until_ = states_sent_;
  }
}

bool VipNode::knows_current(const VipNode& other) const {
  auto it = records_.find(other.self_);
  if (it == records_.end() || it->second.drained != other.drained_) return false;
  if (other.view_ != view_ || it->second.messages != other.states_sent_) return false;
  for (std::uint32_t p = 0; p < other.healthy_.size(); ++p) {
    if (it->second.healthy.at(p) != other.healthy_[p]) return false;
  }
  for (std::uint32_t a = 0; a < it->second.held.size(); ++a) {
    if (it->second.held[a] != (other.held_.count(a) != 0)) return false;
  }
  return true;
}

bool VipNode::quiescent() const {
  if (!synced_ || frozen_) return false;
  auto mine = records_.find(self_);
  if (mine == records_.end() || mine->second.drained != drained_) return false;
  for (std::uint32_t p = 0; p < healthy_.size(); ++p) {
    if (mine->second.healthy[p] != healthy_[p]) return false;
  }
  for (std::uint32_t a = 0; a < slots_.size(); ++a) {
    const Slot& slot = slots_[a];
    if (slot.release_asked != 0 || slot.handover_from != kNoNode) return false;
    const bool kept_by_drained =
        targets_[a] == kNoNode && slot.owner != kNoNode && records_.at(slot.owner).drained;
    if (slot.owner != targets_[a] && !kept_by_drained) return false;
    if ((slot.owner == self_) != (held_.count(a) != 0)) return false;
    for (const auto& [node, record] : records_) {
      if (record.held[a] != (slot.owner == node)) return false;
    }
  }
  return true;
}

}  // namespace keel::vip
