#include "sim/vip_scenario.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "core/common/assert.hpp"
#include "sim/random.hpp"
#include "sim/vip_checks.hpp"
#include "sim/vip_cluster.hpp"

namespace keel::sim {

namespace {

constexpr double kVipMaxLossAfterHeal = 0.02;

std::string seconds_text(TimeUs us) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(us) / 1e6);
  return buffer;
}

// Two or more non-empty groups of random sizes.
std::vector<std::vector<NodeId>> random_split(Rng& rng, std::vector<NodeId> hosts,
                                              std::size_t max_groups) {
  rng.shuffle(hosts);
  const std::size_t count = rng.uniform(2, std::min(max_groups, hosts.size()));
  std::vector<std::vector<NodeId>> groups(count);
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    groups[i < count ? i : rng.uniform(0, count - 1)].push_back(hosts[i]);
  }
  for (auto& group : groups) std::sort(group.begin(), group.end());
  std::sort(groups.begin(), groups.end());
  return groups;
}

vip::PoolConfig plan_pool(Rng& rng, std::size_t hosts, std::uint32_t number,
                          std::uint32_t& next_address) {
  vip::PoolConfig pool;
  pool.name = "pool" + std::to_string(number);
  const std::size_t addresses = rng.uniform(1, 12);
  for (std::size_t i = 0; i < addresses; ++i) {
    pool.addresses.push_back("198.51.100." + std::to_string(++next_address) + "/24");
  }
  for (NodeId id = 1; id <= hosts; ++id) {
    if (rng.chance(0.75)) pool.nodes.push_back(id);
  }
  if (pool.nodes.empty()) pool.nodes.push_back(static_cast<NodeId>(rng.uniform(1, hosts)));
  if (rng.chance(0.3)) {
    for (const std::string& address : pool.addresses) {
      if (rng.chance(0.5)) pool.preferred[address] = rng.pick(pool.nodes);
    }
  }
  if (rng.chance(0.3)) {
    for (NodeId node : pool.nodes)
      pool.weights[node] = static_cast<std::uint32_t>(rng.uniform(1, 4));
  }
  return pool;
}

VipFault plan_fault(Rng& rng, const VipPlan& plan) {
  VipFault fault;
  fault.at = rng.uniform(0, plan.fault_phase_us - 1);
  fault.kind = static_cast<VipFaultKind>(rng.uniform(0, 5));
  fault.host = static_cast<NodeId>(rng.uniform(1, plan.hosts));
  fault.peer = static_cast<NodeId>(rng.uniform(1, plan.hosts));
  fault.pool = static_cast<std::uint32_t>(rng.uniform(0, plan.config.pools.size() - 1));
  fault.duration = rng.uniform(100'000, 2'000'000);
  fault.count = static_cast<std::uint32_t>(rng.uniform(2, 10));
  if (fault.kind == VipFaultKind::partition) {
    fault.groups = random_split(rng, all_hosts(plan.hosts), 3);
  }
  if (fault.kind == VipFaultKind::flap) fault.duration = rng.uniform(20'000, 400'000);
  if (fault.kind == VipFaultKind::cut && fault.peer == fault.host) fault.kind = VipFaultKind::crash;
  if (plan.hosts < 2 && fault.kind == VipFaultKind::partition) fault.kind = VipFaultKind::drain;
  return fault;
}

}  // namespace

std::string describe(const VipFault& fault) {
  const std::string host = "host " + std::to_string(fault.host);
  const std::string pool = "pool" + std::to_string(fault.pool);
  switch (fault.kind) {
    case VipFaultKind::partition: {
      std::string text = "partition";
      for (const auto& group : fault.groups) text += " " + members_text(group);
      return text + " for " + seconds_text(fault.duration);
    }
    case VipFaultKind::cut:
      return "cut " + std::to_string(fault.host) + "->" + std::to_string(fault.peer) + " for " +
             seconds_text(fault.duration);
    case VipFaultKind::crash:
      return std::string(agent_only(fault) ? "crash the agent of " : "crash ") + host +
             ", restart after " + seconds_text(fault.duration);
    case VipFaultKind::unhealthy:
      return pool + " unhealthy on " + host + " for " + seconds_text(fault.duration);
    case VipFaultKind::flap:
      return pool + " health flaps on " + host + ", " + std::to_string(fault.count) +
             " toggles every " + seconds_text(fault.duration);
    case VipFaultKind::drain:
      return "drain " + host + " for " + seconds_text(fault.duration);
  }
  return "?";
}

VipPlan plan_vip_scenario(std::uint64_t seed, const VipOptions& options) {
  Rng root(seed);
  Rng rng = root.fork(101);
  VipPlan plan;
  plan.seed = seed;
  plan.hosts = rng.uniform(2, 7);
  if (options.hosts) plan.hosts = *options.hosts;
  plan.network.loss = rng.chance(0.4) ? 0.0 : rng.uniform_real(0.0, 0.05);
  plan.network.duplicate = rng.chance(0.7) ? 0.0 : rng.uniform_real(0.0, 0.03);
  plan.network.delay_min_us = rng.uniform(50, 300);
  plan.network.delay_max_us = rng.uniform(plan.network.delay_min_us, 1500);
  Rng pools = root.fork(102);
  const std::uint32_t pool_count = static_cast<std::uint32_t>(pools.uniform(1, 3));
  std::uint32_t next_address = 0;
  for (std::uint32_t p = 0; p < pool_count; ++p) {
    plan.config.pools.push_back(plan_pool(pools, plan.hosts, p, next_address));
  }
  plan.config.settle_us = rng.uniform(1'000'000, 2'000'000);
  plan.config.startup_us = plan.config.settle_us;
  plan.fault_phase_us = rng.uniform(1'000'000, 4'000'000);
  const std::size_t faults = rng.uniform(2, 12);
  for (std::size_t i = 0; i < faults; ++i) plan.faults.push_back(plan_fault(rng, plan));
  std::stable_sort(plan.faults.begin(), plan.faults.end(),
                   [](const VipFault& a, const VipFault& b) { return a.at < b.at; });
  if (rng.chance(0.3)) plan.stay_drained = static_cast<NodeId>(rng.uniform(1, plan.hosts));
  if (rng.chance(0.3)) {
    plan.stay_unhealthy_host = static_cast<NodeId>(rng.uniform(1, plan.hosts));
    plan.stay_unhealthy_pool = static_cast<std::uint32_t>(rng.uniform(0, pool_count - 1));
  }
  return plan;
}

namespace {

void schedule(VipCluster& cluster, const VipPlan& plan, const VipFault& fault) {
  const TimeUs end = std::min(fault.at + fault.duration, plan.fault_phase_us);
  VipCluster* c = &cluster;
  const NodeId host = fault.host;
  const std::uint32_t pool = fault.pool;
  switch (fault.kind) {
    case VipFaultKind::partition:
      cluster.at(fault.at, describe(fault), [c, groups = fault.groups] { c->partition(groups); });
      cluster.at(end, "partition ends", [c] { c->partition({all_hosts(c->hosts())}); });
      return;
    case VipFaultKind::cut:
      cluster.at(fault.at, describe(fault), [c, host, peer = fault.peer] { c->cut(host, peer); });
      return;  // ends at the heal
    case VipFaultKind::crash:
      cluster.at(fault.at, describe(fault), [c, host, agent = agent_only(fault)] {
        agent ? c->crash_agent(host) : c->crash(host);
      });
      cluster.at(end, "restart host " + std::to_string(host), [c, host] { c->restart(host); });
      return;
    case VipFaultKind::unhealthy:
      cluster.at(fault.at, describe(fault), [c, host, pool] { c->set_healthy(host, pool, false); });
      cluster.at(end, "pool" + std::to_string(pool) + " healthy on host " + std::to_string(host),
                 [c, host, pool] { c->set_healthy(host, pool, true); });
      return;
    case VipFaultKind::flap:
      cluster.at(fault.at, describe(fault), [] {});
      for (std::uint32_t i = 0; i < fault.count; ++i) {
        const TimeUs at = fault.at + fault.duration * (i + 1);
        if (at >= plan.fault_phase_us) break;
        const bool healthy = i % 2 == 1 || i + 1 == fault.count;
        cluster.at(at, "", [c, host, pool, healthy] { c->set_healthy(host, pool, healthy); });
      }
      return;
    case VipFaultKind::drain:
      cluster.at(fault.at, describe(fault), [c, host] { c->drain(host); });
      cluster.at(end, "undrain host " + std::to_string(host), [c, host] { c->undrain(host); });
      return;
  }
}

void heal(VipCluster& cluster, const VipPlan& plan) {
  cluster.heal_network();
  cluster.set_loss(std::min(plan.network.loss, kVipMaxLossAfterHeal));
  for (NodeId id = 1; id <= plan.hosts; ++id) {
    cluster.restart(id);
    for (std::uint32_t p = 0; p < plan.config.pools.size(); ++p) {
      const bool stays = id == plan.stay_unhealthy_host && p == plan.stay_unhealthy_pool;
      if (cluster.healthy(id, p) == stays) cluster.set_healthy(id, p, !stays);
    }
    const bool drained = id == plan.stay_drained;
    if (cluster.drained(id) != drained) {
      if (drained) {
        cluster.drain(id);
      } else {
        cluster.undrain(id);
      }
    }
  }
}

// Waits until `side` is settled, then checks it converged.
bool settle_and_check(VipCluster& cluster, const std::vector<NodeId>& side,
                      const std::string& after) {
  const TimeUs deadline = cluster.now() + kVipSettleBoundUs;
  if (!cluster.run_until([&] { return cluster.settled(side); }, deadline)) {
    if (!cluster.failed()) {
      std::string why;
      for (NodeId id : side) {
        const auto* node = cluster.node(id);
        if (node == nullptr) continue;
        why += " h" + std::to_string(id) + (node->synced() ? " synced" : " not-synced") +
               (node->quiescent() ? " quiet" : " busy") + " view " +
               (node->view() ? to_string(*node->view()) : "-") + ";";
      }
      cluster.fail("liveness: component " + members_text(side) + " not settled within " +
                   seconds_text(kVipSettleBoundUs) + " after " + after + ":" + why);
    }
    return false;
  }
  if (auto problem = check_converged(cluster, side)) {
    cluster.fail("after " + after + ": " + *problem);
    return false;
  }
  return true;
}

struct Choice {
  VipStep step = VipStep::crash;
  NodeId host = kNoNode;
  std::uint32_t pool = 0;
};

Choice choose_step(Rng& rng, const VipCluster& cluster) {
  const std::vector<NodeId> up = cluster.up_hosts();
  std::vector<Choice> options;
  for (NodeId id = 1; id <= cluster.hosts(); ++id) {
    if (!cluster.up(id)) {
      options.push_back({VipStep::join, id, 0});
      continue;
    }
    if (up.size() > 1) options.push_back({VipStep::crash, id, 0});
    options.push_back({VipStep::restart, id, 0});
    options.push_back({cluster.drained(id) ? VipStep::undrain : VipStep::drain, id, 0});
    for (std::uint32_t p = 0; p < cluster.config().pools.size(); ++p) {
      if (!cluster.config().pools[p].allows(id)) continue;
      options.push_back({cluster.healthy(id, p) ? VipStep::unhealthy : VipStep::healthy, id, p});
    }
  }
  if (up.size() > 1) options.push_back({VipStep::merge, kNoNode, 0});
  return rng.pick(options);
}

std::string apply_step(VipCluster& cluster, const Choice& choice, Rng& rng,
                       std::vector<std::vector<NodeId>>& sides) {
  std::string text = std::string(vip_step_name(choice.step));
  if (choice.host != kNoNode) text += " host " + std::to_string(choice.host);
  switch (choice.step) {
    case VipStep::crash:
      cluster.crash(choice.host);
      break;
    case VipStep::join:
      cluster.restart(choice.host);
      break;
    case VipStep::restart:  // the agent only, back at once: its addresses stay on the host
      cluster.crash_agent(choice.host);
      cluster.restart(choice.host);
      break;
    case VipStep::unhealthy:
    case VipStep::healthy:
      text += " pool" + std::to_string(choice.pool);
      cluster.set_healthy(choice.host, choice.pool, choice.step == VipStep::healthy);
      break;
    case VipStep::drain:
      cluster.drain(choice.host);
      break;
    case VipStep::undrain:
      cluster.undrain(choice.host);
      break;
    case VipStep::merge:
      sides = random_split(rng, cluster.up_hosts(), 2);
      cluster.partition(sides);
      text += " of " + members_text(sides[0]) + " and " + members_text(sides[1]);
      break;
  }
  cluster.note(kNoNode, "script: " + text);
  return text;
}

// One scripted step from a settled cluster: apply, settle, check convergence and movement.
bool play_step(VipCluster& cluster, Rng& rng, VipRunResult& result) {
  const Choice choice = choose_step(rng, cluster);
  std::vector<std::vector<NodeId>> sides;
  MoveCheck check{choice.step, choice.host, choice.pool, {}, {}, {}};
  const std::vector<NodeId> up_before = cluster.up_hosts();
  check.before = holders_in(cluster, up_before);
  cluster.clear_events();
  result.script.push_back(apply_step(cluster, choice, rng, sides));
  const std::string& text = result.script.back();
  if (cluster.failed()) return false;
  if (choice.step == VipStep::merge) {
    for (const auto& side : sides) {
      if (!settle_and_check(cluster, side, text + " (split)")) return false;
    }
    check.before = holders_in(cluster, cluster.up_hosts());  // duplicates: the last holder
    cluster.clear_events();
    cluster.heal_network();
  }
  if (!settle_and_check(cluster, cluster.up_hosts(), text)) return false;
  const std::vector<NodeId> up_after = cluster.up_hosts();
  check.after = holders_in(cluster, up_after);
  check.events = cluster.events();
  std::vector<NodeId> stayed;
  std::set_intersection(up_before.begin(), up_before.end(), up_after.begin(), up_after.end(),
                        std::back_inserter(stayed));
  check.detour = ring_detoured(cluster.views(), stayed, choice.host);
  if (auto problem = check_moves(cluster, check)) {
    cluster.fail(*problem);
    return false;
  }
  return true;
}

}  // namespace

VipRunResult run_vip_scenario(const VipPlan& plan, std::ostream* trace_out) {
  VipClusterOptions options;
  options.hosts = plan.hosts;
  options.seed = plan.seed;
  options.network = plan.network;
  options.config = plan.config;
  VipCluster cluster(options);
  cluster.trace().set_output(trace_out);
  for (const VipFault& fault : plan.faults) schedule(cluster, plan, fault);
  cluster.at(plan.fault_phase_us, "heal", [&] { heal(cluster, plan); });
  cluster.run_until(plan.fault_phase_us);
  VipRunResult result;
  result.seed = plan.seed;
  Rng script = Rng(plan.seed).fork(103);
  if (!cluster.failed() && settle_and_check(cluster, all_hosts(plan.hosts), "the heal")) {
    for (int i = 0; i < kVipScriptSteps && play_step(cluster, script, result); ++i) {
    }
  }
  result.violation = cluster.violation();
  result.steps = cluster.steps();
  result.acquires = cluster.acquires();
  result.releases = cluster.releases();
  result.simulated_us = cluster.now();
  if (result.violation) result.trace_tail = cluster.trace().tail();
  return result;
}

}  // namespace keel::sim
