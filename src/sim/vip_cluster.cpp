#include "sim/vip_cluster.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"

namespace keel::sim {

namespace {

// A host whose timer fires this often at one instant is spinning.
constexpr std::uint32_t kMaxTimersAtOneInstant = 10000;

std::string view_text(const ring::View& view) {
  return std::string(view.regular() ? "regular " : "transitional ") + to_string(view.ring) + " " +
         members_text(view.members);
}

std::string describe_vip(NodeId origin, const Bytes& payload) {
  auto decoded = vip::decode_vip_message(payload);
  if (!decoded.ok()) return "from " + std::to_string(origin) + ": " + decoded.error().message;
  const vip::VipState& state = decoded.value();
  std::string text = "from " + std::to_string(origin) + " in " + to_string(state.view) + ", seen " +
                     std::to_string(state.seen) + (state.drained ? ", drained" : "") +
                     ", healthy pools [";
  for (std::size_t i = 0; i < state.healthy_pools.size(); ++i) {
    text += (i ? "," : "") + std::to_string(state.healthy_pools[i]);
  }
  text += "], holds [";
  for (std::size_t i = 0; i < state.held.size(); ++i) {
    text += (i ? "," : "") + std::to_string(state.held[i]);
  }
  return text + "]";
}

}  // namespace

VipCluster::VipCluster(VipClusterOptions options)
    : options_(std::move(options)),
      index_(vip::index_addresses(options_.config)),
      rng_(options_.seed),
      network_(options_.hosts, options_.network, rng_.fork(1)),
      trace_(options_.trace_capacity),
      hosts_(options_.hosts + 1),
      holders_(index_.size()) {
  KEEL_ASSERT(options_.hosts >= 1 && options_.hosts <= ring::kMaxNodes);
  KEEL_ASSERT(!vip::validate_vip_config(options_.config).has_value());
  for (NodeId id = 1; id <= options_.hosts; ++id) nodes_.push_back(id);
  for (NodeId id = 1; id <= options_.hosts; ++id) {
    hosts_[id].healthy.assign(options_.config.pools.size(), true);
    start_host(id);
  }
}

// ---- the event loop ----

void VipCluster::push(TimeUs at, EventBody body) {
  KEEL_ASSERT(at >= now_);
  queue_.push(at, std::move(body));
}

bool VipCluster::step_before(TimeUs limit) {
  while (!failed() && !queue_.empty() && queue_.top().at <= limit) {
    Event event = queue_.take();
    if (auto* timer = std::get_if<TimerEvent>(&event.body)) {
      const Host& h = hosts_[timer->host];
      if (!h.up || timer->generation != h.timer_generation) continue;
    }
    now_ = event.at;
    ++steps_;
    if (auto* packet = std::get_if<PacketEvent>(&event.body)) {
      Host& h = hosts_[packet->to];
      if (!h.up) return true;
      h.ring->on_packet(packet->from, *packet->bytes, now_);
      pump(packet->to);
    } else if (auto* timer = std::get_if<TimerEvent>(&event.body)) {
      Host& h = hosts_[timer->host];
      h.timer_at = kNever;
      if (now_ == h.last_tick_at) {
        if (++h.ticks_at_instant > kMaxTimersAtOneInstant) {
          fail("host " + std::to_string(timer->host) + " spins: its timer stays at " +
               format_time(now_));
          return false;
        }
      } else {
        h.last_tick_at = now_;
        h.ticks_at_instant = 0;
      }
      h.ring->on_tick(now_);
      h.node->on_tick(now_);
      pump(timer->host);
    } else {
      auto& scheduled = std::get<ScheduledEvent>(event.body);
      if (!scheduled.label.empty()) {
        trace_.record(TraceEntry{now_, kNoNode, TraceKind::fault, kNoNode, 0, 0, scheduled.label});
      }
      scheduled.action();
    }
    return true;
  }
  return false;
}

bool VipCluster::step() { return step_before(kNever); }

void VipCluster::run_until(TimeUs time) {
  while (step_before(time)) {
  }
  if (!failed()) now_ = std::max(now_, time);
}

bool VipCluster::run_until(const std::function<bool()>& done, TimeUs deadline) {
  while (!done()) {
    if (!step_before(deadline)) {
      if (!failed()) now_ = std::max(now_, deadline);
      return !failed() && done();
    }
  }
  return true;
}

void VipCluster::at(TimeUs time, std::string label, std::function<void()> action) {
  push(time, ScheduledEvent{std::move(label), std::move(action)});
}

// ---- one host's stack ----

void VipCluster::start_host(NodeId id) {
  Host& h = hosts_[id];
  ++h.incarnation;
  h.up = true;
  h.ring = std::make_unique<ring::Ring>(id, nodes_, options_.tunables, now_ + 1, now_);
  h.groups = std::make_unique<ring::ProcessGroups>(id);
  std::vector<std::uint32_t> adopted;
  for (std::uint32_t a = 0; a < holders_.size(); ++a) {
    if (holders_[a].count(id) != 0) adopted.push_back(a);
  }
  h.node = std::make_unique<vip::VipNode>(id, options_.config, std::move(adopted));
  // The health checks' first results come a while after the start, as on a real agent; until
  // then the node knows only what it presumed (nothing, or the pools it adopted addresses of).
  h.first_check_pending = true;
  at(now_ + kFirstHealthCheckUs, "", [this, id, incarnation = h.incarnation] {
    Host& host = hosts_[id];
    if (!host.up || host.incarnation != incarnation) return;
    host.first_check_pending = false;
    for (std::uint32_t p = 0; p < host.healthy.size(); ++p) set_healthy(id, p, host.healthy[p]);
  });
  if (h.drained) h.node->drain(now_);
  h.timer_at = kNever;
  ++h.timer_generation;
  submit(id, h.groups->join(vip::kVipGroup));
  pump(id);
}

void VipCluster::submit(NodeId id, Result<Bytes> message) {
  KEEL_ASSERT(message.ok());
  auto result =
      hosts_[id].ring->submit(std::move(message).value(), ring::DeliveryKind::agreed, now_);
  // The vip layer needs every broadcast; a full send queue would be an agent bug to handle.
  if (!result.ok())
    fail("host " + std::to_string(id) +
         "'s ring refused a vip or group message: " + result.error().message);
}

void VipCluster::pump(NodeId id) {
  Host& h = hosts_[id];
  run_vip_actions(id);
  for (int round = 0; round < 1000 && !failed(); ++round) {
    auto actions = h.ring->take_actions();
    if (actions.empty()) break;
    for (auto& action : actions) {
      if (failed()) return;
      on_ring_action(id, action);
    }
  }
  rearm_timer(id);
}

void VipCluster::on_ring_action(NodeId id, ring::Action& action) {
  Host& h = hosts_[id];
  if (auto* send = std::get_if<ring::Send>(&action)) {
    auto bytes = std::make_shared<const Bytes>(std::move(send->bytes));
    for (NodeId to : nodes_) {
      if (to == id || (send->to != kAllNodes && send->to != to)) continue;
      const Arrivals arrivals = network_.transmit(id, to, now_);
      for (std::size_t i = 0; i < arrivals.count; ++i) {
        push(arrivals.at[i], PacketEvent{id, to, bytes});
      }
    }
    return;
  }
  if (std::holds_alternative<ring::Received>(action)) return;
  h.groups->on_ring_action(action);
  if (const auto* view = std::get_if<ring::View>(&action)) {
    trace_.record(TraceEntry{now_, id, TraceKind::view, kNoNode, 0, 0, view_text(*view)});
    if (view->regular()) views_.push_back({id, view->members});
    h.node->on_view(*view, now_);
  }
  for (auto& event : h.groups->take_events()) {
    const auto* message = std::get_if<ring::GroupMessage>(&event);
    if (message == nullptr || message->group != vip::kVipGroup) continue;
    if (trace_.printing())
      note(id, "vip message " + describe_vip(message->origin, message->payload));
    h.node->on_message(message->origin, message->payload, now_);
    run_vip_actions(id);
  }
  for (auto& submission : h.groups->take_submissions()) submit(id, std::move(submission));
  run_vip_actions(id);
}

void VipCluster::run_vip_actions(NodeId id) {
  Host& h = hosts_[id];
  for (auto& action : h.node->take_actions()) {
    if (failed()) return;
    if (std::holds_alternative<vip::Broadcast>(action)) {
      submit(id, h.groups->message(vip::kVipGroup, h.node->state_message()));
    } else if (const auto* acquire = std::get_if<vip::Acquire>(&action)) {
      on_acquire(id, *acquire);
    } else if (const auto* release = std::get_if<vip::Release>(&action)) {
      on_release(id, *release);
    } else {
      note(id, std::get<vip::Notice>(action).text);
    }
  }
}

void VipCluster::rearm_timer(NodeId id) {
  Host& h = hosts_[id];
  if (!h.up) return;
  const TimeUs deadline = std::min(h.ring->next_deadline(), h.node->next_deadline());
  if (deadline == kNever) {
    if (h.timer_at != kNever) ++h.timer_generation;
    h.timer_at = kNever;
    return;
  }
  const TimeUs at = std::max(deadline, now_);
  if (at == h.timer_at) return;
  ++h.timer_generation;
  h.timer_at = at;
  push(at, TimerEvent{id, h.timer_generation});
}

// ---- the world's address table, checked on every change ----

bool VipCluster::eligible(NodeId host, std::uint32_t pool) const {
  return eligible_if(host, pool, hosts_.at(host).healthy[pool]);
}

bool VipCluster::may_acquire(NodeId host, std::uint32_t pool) const {
  const Host& h = hosts_.at(host);
  // Before its first check, a restarted agent goes by its adopted addresses' word (vip_node.hpp).
  const bool presumed = h.node != nullptr && h.node->presumed(pool);
  return eligible_if(host, pool, h.healthy[pool] || presumed);
}

bool VipCluster::eligible_if(NodeId host, std::uint32_t pool, bool healthy) const {
  const Host& h = hosts_.at(host);
  return h.up && healthy && !h.drained && options_.config.pools[pool].allows(host);
}

void VipCluster::on_acquire(NodeId id, const vip::Acquire& acquire) {
  const std::uint32_t a = acquire.address;
  ++acquires_;
  events_.push_back({now_, id, a, true});
  note(id, "acquire " + acquire.text + " (pool " + options_.config.pools[acquire.pool].name + ")");
  const std::string who = "host " + std::to_string(id);
  if (!may_acquire(id, acquire.pool)) {
    return fail(who + " acquired " + acquire.text + " while not eligible for pool " +
                options_.config.pools[acquire.pool].name + " (healthy, not drained, allowed)");
  }
  if (holders_[a].count(id) != 0) return fail(who + " acquired " + acquire.text + " twice");
  const auto& view = hosts_[id].node->view();
  for (NodeId other : holders_[a]) {
    const vip::VipNode* peer = hosts_[other].node.get();
    if (peer == nullptr || peer->view() != view) continue;
    if (hosts_[id].node->handover_from(a) == other) continue;  // a drain hands over
    return fail(who + " acquired " + acquire.text + " held by host " + std::to_string(other) +
                ", a member of its own view " + to_string(*view));
  }
  holders_[a].insert(id);
}

void VipCluster::on_release(NodeId id, const vip::Release& release) {
  ++releases_;
  events_.push_back({now_, id, release.address, false});
  note(id, "release " + release.text);
  if (holders_[release.address].erase(id) != 1) {
    fail("host " + std::to_string(id) + " released " + release.text + ", which it did not hold");
  }
}

// ---- faults ----

void VipCluster::partition(const std::vector<std::vector<NodeId>>& groups) {
  network_.partition(groups);
}
void VipCluster::cut(NodeId from, NodeId to) { network_.cut(from, to); }
void VipCluster::heal_network() { network_.heal_all(); }

void VipCluster::crash(NodeId id) {
  if (!hosts_.at(id).up) return;
  crash_agent(id);
  for (auto& holders : holders_) holders.erase(id);  // its addresses die with it
}

void VipCluster::crash_agent(NodeId id) {
  Host& h = hosts_.at(id);
  if (!h.up) return;
  h.up = false;
  h.ring.reset();
  h.groups.reset();
  h.node.reset();
  ++h.timer_generation;
  h.timer_at = kNever;
}

void VipCluster::restart(NodeId id) {
  if (hosts_.at(id).up) return;
  start_host(id);
}

void VipCluster::set_healthy(NodeId id, std::uint32_t pool, bool healthy) {
  Host& h = hosts_.at(id);
  h.healthy.at(pool) = healthy;
  if (!h.up) return;
  h.node->set_healthy(pool, healthy, now_);
  pump(id);
  if (healthy) return;
  for (std::uint32_t a = 0; a < holders_.size(); ++a) {
    if (index_.pool_of[a] == pool && holders_[a].count(id) != 0) {
      return fail("host " + std::to_string(id) + " still holds an address of unhealthy pool " +
                  options_.config.pools[pool].name);
    }
  }
}

void VipCluster::drain(NodeId id) {
  Host& h = hosts_.at(id);
  h.drained = true;
  if (!h.up) return;
  h.node->drain(now_);
  pump(id);
}

void VipCluster::undrain(NodeId id) {
  Host& h = hosts_.at(id);
  h.drained = false;
  if (!h.up) return;
  h.node->undrain(now_);
  pump(id);
}

// ---- inspection ----

std::vector<NodeId> VipCluster::up_hosts() const {
  std::vector<NodeId> out;
  for (NodeId id : nodes_) {
    if (hosts_[id].up) out.push_back(id);
  }
  return out;
}

bool VipCluster::settled(const std::vector<NodeId>& side) const {
  std::optional<RingId> ring_id;
  for (NodeId id : side) {
    const Host& h = hosts_[id];
    if (!h.up || h.first_check_pending || h.ring->state() != ring::State::operational) {
      return false;
    }
    const auto& view = h.ring->view();
    if (!view || view->members != side) return false;
    if (ring_id && *ring_id != view->ring) return false;
    ring_id = view->ring;
    if (h.node->view() != ring_id || !h.node->quiescent()) return false;
  }
  // Nothing in flight: every node processed as many vip messages and knows everyone's state.
  for (NodeId id : side) {
    const vip::VipNode& node = *hosts_[id].node;
    if (node.seen() != hosts_[side.front()].node->seen()) return false;
    for (NodeId other : side) {
      if (!node.knows_current(*hosts_[other].node)) return false;
    }
  }
  return true;
}

void VipCluster::fail(const std::string& text) {
  if (violation_) return;
  violation_ = "at " + format_time(now_) + " s: " + text;
}

void VipCluster::note(NodeId id, std::string text) {
  trace_.record(TraceEntry{now_, id, TraceKind::note, kNoNode, 0, 0, std::move(text)});
}

}  // namespace keel::sim
