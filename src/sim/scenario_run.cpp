// run_scenario(): plays a planned scenario on a SimCluster and checks liveness after the heal.
#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/random.hpp"
#include "sim/scenario.hpp"

namespace keel::sim {

namespace {

// Filler sizes: some empty, most small, some spanning a packet or several (fragmentation).
std::size_t draw_filler_bytes(Rng& rng) {
  const double r = rng.unit();
  if (r < 0.05) return 0;
  if (r < 0.70) return rng.uniform(1, 200);
  if (r < 0.90) return rng.uniform(200, 1400);
  return rng.uniform(1400, 5000);
}

// The planned host if it is up, else the next up host after it (none: kNoNode).
NodeId up_host_from(const SimCluster& cluster, NodeId planned) {
  for (std::size_t i = 0; i < cluster.hosts(); ++i) {
    const NodeId id = static_cast<NodeId>((planned - 1 + i) % cluster.hosts() + 1);
    if (cluster.state(id) == HostState::up) return id;
  }
  return kNoNode;
}

// Storm sizes: mostly small, so that a storm makes many ring messages for few bytes (the
// checkers regenerate every delivered byte at every host), and some spanning several packets.
std::size_t draw_storm_filler_bytes(Rng& rng) {
  const double r = rng.unit();
  if (r < 0.85) return rng.uniform(0, 64);
  if (r < 0.95) return rng.uniform(64, 1400);
  if (r < 0.99) return rng.uniform(1400, 6000);
  return rng.uniform(6000, kStormMaxFillerBytes);
}

void fire_burst(SimCluster& cluster, const PlannedFault& fault) {
  const NodeId host = up_host_from(cluster, fault.host);
  if (host == kNoNode) return;
  Rng rng(fault.seed);
  for (std::uint32_t i = 0; i < fault.count; ++i) {
    const std::size_t filler = fault.storm ? draw_storm_filler_bytes(rng) : draw_filler_bytes(rng);
    // Storm messages alternate between safe and agreed, which never share a packet: each takes
    // at least one ring message, so a storm fills the ring's windows with few bytes.
    const bool safe = rng.chance(0.3);
    const auto kind =
        (fault.storm ? i % 2 == 0 : safe) ? ring::DeliveryKind::safe : ring::DeliveryKind::agreed;
    cluster.submit(host, filler, kind);
  }
}

// Schedules `action` at `time` if that is still within the fault phase (the heal undoes the rest).
void at_if_before(SimCluster& cluster, TimeUs end, TimeUs time, std::string label,
                  std::function<void()> action) {
  if (time < end) cluster.at(time, std::move(label), std::move(action));
}

void schedule_fault(SimCluster& cluster, const PlannedFault& fault, TimeUs end) {
  SimCluster* c = &cluster;
  const NodeId host = fault.host;
  const NodeId peer = fault.peer;
  const TimeUs until = fault.duration == kNever ? kNever : fault.at + fault.duration;
  const std::string h = std::to_string(host);
  switch (fault.kind) {
    case FaultKind::partition: {
      auto groups = fault.groups;
      cluster.at(fault.at, describe(fault), [c, groups] { c->partition(groups); });
      const auto whole = std::vector<std::vector<NodeId>>{all_hosts(cluster.hosts())};
      at_if_before(cluster, end, until, "partition ends", [c, whole] { c->partition(whole); });
      break;
    }
    case FaultKind::cut:
      cluster.at(fault.at, describe(fault), [c, host, peer] { c->cut(host, peer); });
      at_if_before(cluster, end, until, "cut " + h + "->" + std::to_string(peer) + " restored",
                   [c, host, peer] { c->restore(host, peer); });
      break;
    case FaultKind::flap:
      cluster.at(fault.at, describe(fault), [] {});
      for (std::uint32_t i = 0; i < fault.count; ++i) {
        const bool down = i % 2 == 0;
        at_if_before(cluster, end, fault.at + i * fault.duration,
                     "host " + h + " link " + (down ? "down" : "up"),
                     [c, host, down] { down ? c->isolate(host) : c->rejoin(host); });
      }
      at_if_before(cluster, end, fault.at + fault.count * fault.duration, "host " + h + " link up",
                   [c, host] { c->rejoin(host); });
      break;
    case FaultKind::pause:
      cluster.at(fault.at, describe(fault), [c, host] { c->pause(host); });
      at_if_before(cluster, end, until, "resume host " + h, [c, host] { c->resume(host); });
      break;
    case FaultKind::crash:
      cluster.at(fault.at, describe(fault), [c, host] { c->crash(host); });
      at_if_before(cluster, end, until, "restart host " + h, [c, host] { c->restart(host); });
      break;
    case FaultKind::leave:
      cluster.at(fault.at, describe(fault), [c, host] { c->stop(host); });
      at_if_before(cluster, end, until, "restart host " + h, [c, host] { c->restart(host); });
      break;
    case FaultKind::burst:
      // Storm bursts are named in the trace; ordinary ones show as their submissions.
      cluster.at(fault.at, fault.storm ? describe(fault) : "",
                 [c, fault] { fire_burst(*c, fault); });
      break;
  }
}

std::string host_states(const SimCluster& cluster) {
  std::string out;
  for (NodeId id = 1; id <= cluster.hosts(); ++id) {
    out += "; host " + std::to_string(id) + " ";
    const ring::Ring* r = cluster.ring(id);
    if (r == nullptr || cluster.state(id) != HostState::up) {
      out += host_state_name(cluster.state(id));
      continue;
    }
    out += ring::state_name(r->state());
    if (r->view()) out += " in " + to_string(view_id(*r->view()));
    if (r->view()) {
      out += " [";
      for (std::size_t i = 0; i < r->view()->members.size(); ++i) {
        out += (i > 0 ? "," : "") + std::to_string(r->view()->members[i]);
      }
      out += "]";
    }
  }
  return out;
}

// Waits until every host is in one view of all hosts and stays there for kSettleUs (a ring that
// broke just before the heal looks converged until its token timeout expires). Returns the time
// it first held, or nothing at the deadline or the step limit.
std::optional<TimeUs> await_convergence(SimCluster& cluster, TimeUs deadline,
                                        const std::function<bool()>& limit) {
  const TimeUs settle = 2 * ms_to_us(cluster.options().tunables.token_timeout_ms);
  while (cluster.run_until([&] { return cluster.converged() || limit(); }, deadline)) {
    if (cluster.checker().failed() || limit()) return std::nullopt;
    const TimeUs since = cluster.now();
    const bool broke =
        cluster.run_until([&] { return !cluster.converged() || limit(); }, since + settle);
    if (cluster.checker().failed() || limit()) return std::nullopt;
    if (!broke) return since;
  }
  return std::nullopt;
}

// Submits one message at every host and waits until each is delivered everywhere. Returns true
// when done, false when the deadline passed; sets `view_changed` when some host left the view
// the messages were sent in (they may then legitimately stay in a partial view).
bool deliver_everywhere(SimCluster& cluster, TimeUs deadline, const std::function<bool()>& limit,
                        bool& view_changed) {
  const auto view = cluster.view(1);
  std::vector<MessageId> ids;
  for (NodeId id = 1; id <= cluster.hosts(); ++id) {
    auto message = cluster.submit(id, 16, ring::DeliveryKind::agreed);
    if (!message) {
      cluster.checker().fail(
          7, "host " + std::to_string(id) + " refused a message after the cluster converged",
          cluster.now());
      return false;
    }
    cluster.checker().watch(*message);
    ids.push_back(*message);
  }
  const auto all_delivered = [&] {
    return std::all_of(ids.begin(), ids.end(), [&](const MessageId& m) {
      return cluster.checker().delivered_everywhere(m);
    });
  };
  view_changed = false;
  const auto done = [&] {
    view_changed = view_changed || !cluster.converged() || cluster.view(1) != view;
    return all_delivered() || limit();
  };
  return cluster.run_until(done, deadline) && all_delivered();
}

// Liveness (guarantee 7): after the heal, one stable view of all hosts within kConvergeBoundUs,
// then every host's message delivered everywhere within kDeliverBoundUs. A view change during
// delivery (possible under random loss) starts the check over, kLivenessAttempts times at most.
// Returns false when the step limit stopped the run.
bool check_liveness(SimCluster& cluster, RunResult& result, std::uint64_t max_steps) {
  const auto limit = [&] { return cluster.stats().steps >= max_steps; };
  const TimeUs healed = cluster.now();
  for (int attempt = 1; attempt <= kLivenessAttempts; ++attempt) {
    const TimeUs start = cluster.now();
    const auto converged = await_convergence(cluster, start + kConvergeBoundUs, limit);
    if (cluster.checker().failed() || limit()) return !limit();
    if (!converged) {
      cluster.checker().fail(7,
                             "the hosts did not form one stable view of all " +
                                 std::to_string(cluster.hosts()) + " hosts within " +
                                 format_time(kConvergeBoundUs) + " s of " +
                                 (attempt == 1 ? "the heal at " : "a view change at ") +
                                 format_time(start) + " s" + host_states(cluster),
                             cluster.now());
      return true;
    }
    if (attempt == 1) result.converge_us = *converged - healed;
    const TimeUs sent = cluster.now();
    bool view_changed = false;
    if (deliver_everywhere(cluster, sent + kDeliverBoundUs, limit, view_changed)) {
      result.deliver_us = cluster.now() - sent;
      return true;
    }
    if (cluster.checker().failed() || limit()) return !limit();
    result.liveness_retries = attempt;
    if (!view_changed) {
      cluster.checker().fail(7,
                             "messages submitted by every host at " + format_time(sent) +
                                 " s in a stable view were not all delivered within " +
                                 format_time(kDeliverBoundUs) + " s" + host_states(cluster),
                             cluster.now());
      return true;
    }
    cluster.note(kNoNode, "liveness: a view change during delivery; checking again");
  }
  cluster.checker().fail(7,
                         "the view kept changing after the heal at " + format_time(healed) +
                             " s (" + std::to_string(kLivenessAttempts) + " attempts)" +
                             host_states(cluster),
                         cluster.now());
  return true;
}

}  // namespace

RunResult run_scenario(const ScenarioPlan& plan, const ScenarioOptions& options,
                       std::ostream* trace_out) {
  ClusterOptions cluster_options;
  cluster_options.hosts = plan.hosts;
  cluster_options.seed = plan.seed;
  cluster_options.tunables = plan.tunables;
  cluster_options.network = plan.network;
  SimCluster cluster(cluster_options);
  cluster.trace().set_output(trace_out);
  for (const auto& fault : plan.faults) schedule_fault(cluster, fault, plan.fault_phase_us);

  RunResult result;
  result.seed = plan.seed;
  const auto limit = [&] { return cluster.stats().steps >= options.max_steps; };
  cluster.run_until(limit, plan.fault_phase_us);
  if (!cluster.checker().failed() && !limit()) {
    cluster.note(kNoNode, describe_heal(plan));
    cluster.heal_all();
    // Faults stop, but a little random loss stays, so liveness is checked on a realistic LAN
    // rather than a perfect one. Heavy loss is a fault the ring need not outlive in bounded time.
    cluster.network().set_loss(std::min(plan.network.loss, kLivenessMaxLoss));
    result.healed_at_us = cluster.now();
    if (!cluster.checker().failed())
      result.step_limit_hit = !check_liveness(cluster, result, options.max_steps);
  } else {
    result.step_limit_hit = limit();
  }
  result.violation = cluster.checker().violation();
  if (result.violation) result.trace_tail = cluster.trace().tail();
  result.steps = cluster.stats().steps;
  result.simulated_us = cluster.now();
  result.checker = cluster.checker().stats();
  result.cluster = cluster.stats();
  result.ring = cluster.ring_stats();
  result.network = cluster.network().stats();
  result.coverage = cluster.coverage();
  return result;
}

}  // namespace keel::sim
