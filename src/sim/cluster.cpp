#include "sim/cluster.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"

namespace keel::sim {

namespace {

// A host whose timer fires this often at one instant without its deadline moving is spinning.
constexpr std::uint32_t kMaxTicksAtOneInstant = 10000;

std::string view_text(const ring::View& view) {
  return to_string(view_id(view)) + " " + members_text(view.members);
}

void add(ring::RingStats& sum, const ring::RingStats& s) {
  sum.packets_sent += s.packets_sent;
  sum.packets_received += s.packets_received;
  sum.packets_rejected += s.packets_rejected;
  sum.messages_submitted += s.messages_submitted;
  sum.messages_delivered += s.messages_delivered;
  sum.ring_messages_broadcast += s.ring_messages_broadcast;
  sum.retransmissions += s.retransmissions;
  sum.tokens_received += s.tokens_received;
  sum.tokens_retransmitted += s.tokens_retransmitted;
  sum.views_installed += s.views_installed;
  sum.gathers_entered += s.gathers_entered;
}

}  // namespace

const char* host_state_name(HostState state) {
  switch (state) {
    case HostState::up:
      return "up";
    case HostState::paused:
      return "paused";
    case HostState::crashed:
      return "crashed";
  }
  return "?";
}

SimCluster::SimCluster(ClusterOptions options)
    : options_(std::move(options)),
      rng_(options_.seed),
      network_(options_.hosts, options_.network, rng_.fork(1)),
      checker_(options_.hosts, options_.seed),
      trace_(options_.trace_capacity),
      hosts_(options_.hosts + 1) {
  KEEL_ASSERT(options_.hosts >= 1 && options_.hosts <= ring::kMaxNodes);
  options_.tunables.report_receipts = true;
  for (NodeId id = 1; id <= options_.hosts; ++id) nodes_.push_back(id);
  for (NodeId id = 1; id <= options_.hosts; ++id) start_host(id);
}

SimCluster::Host& SimCluster::host(NodeId id) {
  KEEL_ASSERT(id >= 1 && id <= options_.hosts);
  return hosts_[id];
}

const SimCluster::Host& SimCluster::host(NodeId id) const {
  KEEL_ASSERT(id >= 1 && id <= options_.hosts);
  return hosts_[id];
}

// ---- the event loop ----

void SimCluster::push(TimeUs at, EventBody body) {
  KEEL_ASSERT(at >= now_);
  queue_.push(at, std::move(body));
}

bool SimCluster::stale(const Event& event) const {
  const auto* timer = std::get_if<TimerEvent>(&event.body);
  if (timer == nullptr) return false;
  const Host& h = host(timer->host);
  return h.state != HostState::up || timer->generation != h.timer_generation;
}

bool SimCluster::step_before(TimeUs limit) {
  while (!checker_.failed() && !queue_.empty() && queue_.top().at <= limit) {
    // The element is moved out just before pop(); pop() compares only `at` and `order`.
    Event event = queue_.take();
    if (stale(event)) continue;
    now_ = event.at;
    ++stats_.steps;
    process(event);
    return true;
  }
  return false;
}

bool SimCluster::step() { return step_before(kNever); }

void SimCluster::run_until(TimeUs time) {
  while (step_before(time)) {
  }
  if (!checker_.failed()) now_ = std::max(now_, time);
}

void SimCluster::run_steps(std::uint64_t steps) {
  for (std::uint64_t i = 0; i < steps && step(); ++i) {
  }
}

bool SimCluster::run_until(const std::function<bool()>& done, TimeUs deadline) {
  while (!done()) {
    if (!step_before(deadline)) {
      if (!checker_.failed()) now_ = std::max(now_, deadline);
      return done();
    }
  }
  return true;
}

void SimCluster::at(TimeUs time, std::string label, std::function<void()> action) {
  push(time, ScheduledEvent{std::move(label), std::move(action)});
}

void SimCluster::process(Event& event) {
  if (auto* packet = std::get_if<PacketEvent>(&event.body)) {
    on_packet(*packet);
  } else if (auto* timer = std::get_if<TimerEvent>(&event.body)) {
    on_timer(*timer);
  } else {
    auto& scheduled = std::get<ScheduledEvent>(event.body);
    if (!scheduled.label.empty()) fault(scheduled.label);
    scheduled.action();
  }
}

void SimCluster::on_packet(PacketEvent& packet) {
  Host& h = host(packet.to);
  TraceEntry entry{now_, packet.to, TraceKind::packet, packet.from, packet.bytes->size(), 0, {}};
  if (packet.bytes->size() > 3) entry.b = (*packet.bytes)[3];
  if (h.state == HostState::crashed) {
    entry.kind = TraceKind::packet_dropped;
    trace_.record(std::move(entry));
    return;
  }
  if (h.state == HostState::paused) {
    if (h.paused_queue.size() >= options_.paused_queue_limit) {
      ++stats_.paused_packets_dropped;
      return;
    }
    entry.kind = TraceKind::packet_queued;
    trace_.record(std::move(entry));
    h.paused_queue.push_back(std::move(packet));
    return;
  }
  trace_.record(std::move(entry));
  h.ring->on_packet(packet.from, *packet.bytes, now_);
  after_call(packet.to);
}

void SimCluster::on_timer(const TimerEvent& timer) {
  Host& h = host(timer.host);
  h.timer_at = kNever;
  if (now_ == h.last_tick_at) {
    if (++h.ticks_at_instant > kMaxTicksAtOneInstant) {
      checker_.fail(7,
                    "host " + std::to_string(timer.host) +
                        " spins: its ring's next_deadline() stays at " + format_time(now_) +
                        " after on_tick()",
                    now_);
      return;
    }
  } else {
    h.last_tick_at = now_;
    h.ticks_at_instant = 0;
  }
  trace_.record(TraceEntry{now_, timer.host, TraceKind::timer, kNoNode, 0, 0, {}});
  h.ring->on_tick(now_);
  after_call(timer.host);
}

// ---- actions of a ring ----

void SimCluster::after_call(NodeId id) {
  Host& h = host(id);
  for (auto& action : h.ring->take_actions()) {
    if (auto* send = std::get_if<ring::Send>(&action)) {
      route(id, *send);
    } else {
      handle_action(id, action);
    }
  }
  rearm_timer(id);
}

void SimCluster::route(NodeId from, ring::Send& send) {
  auto bytes = std::make_shared<const Bytes>(std::move(send.bytes));
  if (send.to == kAllNodes) {
    for (NodeId to : nodes_) {
      if (to != from) send_one(from, to, bytes);
    }
    return;
  }
  if (send.to < 1 || send.to > options_.hosts) {
    checker_.fail(7,
                  "host " + std::to_string(from) + " sent a packet to node " +
                      std::to_string(send.to) + ", which is not configured",
                  now_);
    return;
  }
  send_one(from, send.to, bytes);
}

void SimCluster::send_one(NodeId from, NodeId to, const std::shared_ptr<const Bytes>& bytes) {
  const Arrivals arrivals = network_.transmit(from, to, now_);
  for (std::size_t i = 0; i < arrivals.count; ++i) {
    push(arrivals.at[i], PacketEvent{from, to, bytes});
  }
}

void SimCluster::handle_action(NodeId id, const ring::Action& action) {
  if (const auto* view = std::get_if<ring::View>(&action)) {
    trace_.record(TraceEntry{now_, id, TraceKind::view, kNoNode, 0, 0, view_text(*view)});
  } else if (const auto* message = std::get_if<ring::DeliveredMessage>(&action)) {
    const auto message_id = parse_message_id(message->payload);
    std::string text = message_id ? to_string(*message_id) : std::string("(no header)");
    text += " at " + to_string(DeliveryKey{message->ring.seq, message->ring.rep, message->seq,
                                           message->index});
    trace_.record(TraceEntry{now_, id, TraceKind::deliver, message->origin, message->safe, 0,
                             std::move(text)});
  }
  checker_.on_action(id, action, now_);
  if (observer_) observer_(id, action, now_);
}

void SimCluster::rearm_timer(NodeId id) {
  Host& h = host(id);
  const TimeUs deadline = h.ring->next_deadline();
  if (deadline == kNever) {
    if (h.timer_at != kNever) ++h.timer_generation;
    h.timer_at = kNever;
    return;
  }
  const TimeUs at = std::max(deadline, now_);
  if (at == h.timer_at) return;  // the pending timer event is still right
  ++h.timer_generation;
  h.timer_at = at;
  push(at, TimerEvent{id, h.timer_generation});
}

// ---- messages ----

std::optional<MessageId> SimCluster::submit(NodeId id, std::size_t filler_bytes,
                                            ring::DeliveryKind kind) {
  Host& h = host(id);
  if (h.state != HostState::up) return std::nullopt;
  const MessageId message{id, h.incarnation, ++h.next_counter};
  Bytes payload = make_payload(message, filler_bytes);
  const std::size_t size = payload.size();
  const bool safe = kind == ring::DeliveryKind::safe;
  auto result = h.ring->submit(std::move(payload), kind, now_);
  if (!result.ok()) {
    ++stats_.submits_refused;
    trace_.record(
        TraceEntry{now_, id, TraceKind::submit_refused, kNoNode, 0, 0, result.error().message});
    after_call(id);
    return std::nullopt;
  }
  checker_.message_submitted(message, filler_bytes, kind, now_);
  trace_.record(TraceEntry{now_, id, TraceKind::submit, kNoNode, size, safe, to_string(message)});
  after_call(id);
  return message;
}

// ---- faults ----

void SimCluster::fault(std::string text) {
  trace_.record(TraceEntry{now_, kNoNode, TraceKind::fault, kNoNode, 0, 0, std::move(text)});
}

void SimCluster::note(NodeId id, std::string text) {
  trace_.record(TraceEntry{now_, id, TraceKind::note, kNoNode, 0, 0, std::move(text)});
}

void SimCluster::partition(const std::vector<std::vector<NodeId>>& groups) {
  network_.partition(groups);
}
void SimCluster::cut(NodeId from, NodeId to) { network_.cut(from, to); }
void SimCluster::restore(NodeId from, NodeId to) { network_.restore(from, to); }
void SimCluster::isolate(NodeId id) { network_.isolate(id); }
void SimCluster::rejoin(NodeId id) { network_.rejoin(id); }
void SimCluster::heal_network() { network_.heal_all(); }

void SimCluster::pause(NodeId id) {
  Host& h = host(id);
  if (h.state != HostState::up) return;
  h.state = HostState::paused;
  ++h.timer_generation;
  h.timer_at = kNever;
  ++stats_.pauses;
}

void SimCluster::resume(NodeId id) {
  Host& h = host(id);
  if (h.state != HostState::paused) return;
  h.state = HostState::up;
  h.ring->on_tick(now_);
  after_call(id);
  while (!h.paused_queue.empty() && !checker_.failed()) {
    PacketEvent packet = std::move(h.paused_queue.front());
    h.paused_queue.pop_front();
    h.ring->on_packet(packet.from, *packet.bytes, now_);
    after_call(id);
  }
  h.paused_queue.clear();
}

void SimCluster::crash(NodeId id) {
  Host& h = host(id);
  if (h.state == HostState::crashed) return;
  retire_ring(h);
  h.state = HostState::crashed;
  ++h.timer_generation;
  h.timer_at = kNever;
  h.paused_queue.clear();
  ++stats_.crashes;
  checker_.host_crashed(id, now_);
}

void SimCluster::stop(NodeId id) {
  Host& h = host(id);
  if (h.state != HostState::up) return;
  h.ring->leave(now_);
  after_call(id);
  crash(id);
}

void SimCluster::restart(NodeId id) {
  if (host(id).state != HostState::crashed) return;
  start_host(id);
}

void SimCluster::start_host(NodeId id) {
  Host& h = host(id);
  ++h.incarnation;
  h.ring = std::make_unique<ring::Ring>(id, nodes_, options_.tunables, now_ + 1, now_);
  h.state = HostState::up;
  h.next_counter = 0;
  h.timer_at = kNever;
  ++h.timer_generation;
  checker_.host_started(id, h.incarnation, now_);
  after_call(id);
}

void SimCluster::retire_ring(Host& h) {
  add(retired_stats_, h.ring->stats());
  const auto& coverage = h.ring->coverage();
  for (std::size_t i = 0; i < coverage.size(); ++i) retired_coverage_[i] += coverage[i];
  h.ring.reset();
}

void SimCluster::heal_all() {
  heal_network();
  for (NodeId id : nodes_) {
    if (host(id).state == HostState::paused) resume(id);
    if (host(id).state == HostState::crashed) restart(id);
  }
}

bool SimCluster::all_healed() const {
  if (!network_.healed()) return false;
  return std::all_of(nodes_.begin(), nodes_.end(),
                     [&](NodeId id) { return host(id).state == HostState::up; });
}

// ---- inspection ----

HostState SimCluster::state(NodeId id) const { return host(id).state; }
std::uint32_t SimCluster::incarnation(NodeId id) const { return host(id).incarnation; }
const ring::Ring* SimCluster::ring(NodeId id) const { return host(id).ring.get(); }

std::optional<ring::View> SimCluster::view(NodeId id) const {
  const Host& h = host(id);
  if (!h.ring) return std::nullopt;
  return h.ring->view();
}

bool SimCluster::converged() const {
  const auto& first = host(1);
  if (first.state != HostState::up || !first.ring->view()) return false;
  const RingId ring_id = first.ring->view()->ring;
  for (NodeId id : nodes_) {
    const Host& h = host(id);
    if (h.state != HostState::up || h.ring->state() != ring::State::operational) return false;
    const auto& view = h.ring->view();
    if (!view || view->ring != ring_id || view->members != nodes_) return false;
  }
  return true;
}

ring::RingStats SimCluster::ring_stats() const {
  ring::RingStats sum = retired_stats_;
  for (NodeId id : nodes_) {
    if (host(id).ring) add(sum, host(id).ring->stats());
  }
  return sum;
}

ring::Coverage SimCluster::coverage() const {
  ring::Coverage sum = retired_coverage_;
  for (NodeId id : nodes_) {
    if (!host(id).ring) continue;
    const auto& coverage = host(id).ring->coverage();
    for (std::size_t i = 0; i < coverage.size(); ++i) sum[i] += coverage[i];
  }
  return sum;
}

}  // namespace keel::sim
