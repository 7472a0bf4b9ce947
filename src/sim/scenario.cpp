#include "sim/scenario.hpp"

#include <algorithm>
#include <cstdio>

#include "core/common/assert.hpp"
#include "sim/random.hpp"

namespace keel::sim {

namespace {

constexpr TimeUs kMs = 1000;
constexpr TimeUs kSecond = 1'000'000;

std::string seconds_text(TimeUs us) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(us) / 1e6);
  return buffer;
}

std::string groups_text(const std::vector<std::vector<NodeId>>& groups) {
  std::string out;
  for (const auto& group : groups) {
    if (!out.empty()) out += " ";
    out += "{";
    for (std::size_t i = 0; i < group.size(); ++i) {
      out += (i > 0 ? "," : "") + std::to_string(group[i]);
    }
    out += "}";
  }
  return out;
}

NodeId random_host(Rng& rng, std::size_t hosts) {
  return static_cast<NodeId>(rng.uniform(1, hosts));
}

// Splits the hosts into 2..4 non-empty groups of random sizes.
std::vector<std::vector<NodeId>> random_groups(Rng& rng, std::size_t hosts) {
  std::vector<NodeId> order;
  for (NodeId id = 1; id <= hosts; ++id) order.push_back(id);
  rng.shuffle(order);
  const std::size_t count = rng.uniform(2, std::min<std::size_t>(4, hosts));
  std::vector<std::size_t> cuts;  // count - 1 distinct cut points in [1, hosts - 1]
  std::vector<std::size_t> points;
  for (std::size_t i = 1; i < hosts; ++i) points.push_back(i);
  rng.shuffle(points);
  cuts.assign(points.begin(), points.begin() + static_cast<std::ptrdiff_t>(count - 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(hosts);
  std::vector<std::vector<NodeId>> groups;
  std::size_t start = 0;
  for (std::size_t end : cuts) {
    std::vector<NodeId> group(order.begin() + static_cast<std::ptrdiff_t>(start),
                              order.begin() + static_cast<std::ptrdiff_t>(end));
    std::sort(group.begin(), group.end());
    groups.push_back(std::move(group));
    start = end;
  }
  std::sort(groups.begin(), groups.end());
  return groups;
}

PlannedFault plan_fault(Rng& rng, FaultKind kind, const ScenarioPlan& plan) {
  PlannedFault fault;
  fault.kind = kind;
  fault.at = rng.uniform(0, plan.fault_phase_us - 1);
  fault.host = random_host(rng, plan.hosts);
  const TimeUs token_timeout_us = ms_to_us(plan.tunables.token_timeout_ms);
  switch (kind) {
    case FaultKind::partition:
      fault.groups = random_groups(rng, plan.hosts);
      fault.duration = rng.uniform(100 * kMs, 2 * kSecond);
      break;
    case FaultKind::cut:
      do {
        fault.peer = random_host(rng, plan.hosts);
      } while (fault.peer == fault.host);
      fault.duration = rng.uniform(100 * kMs, 3 * kSecond);
      break;
    case FaultKind::flap:
      fault.duration = rng.uniform(20 * kMs, 400 * kMs);
      fault.count = static_cast<std::uint32_t>(rng.uniform(2, 12));
      break;
    case FaultKind::pause:
      fault.duration = rng.chance(0.5) ? rng.uniform(std::min(10 * kMs, token_timeout_us / 2),
                                                     token_timeout_us * 8 / 10)
                                       : rng.uniform(token_timeout_us * 12 / 10,
                                                     std::max(2 * kSecond, token_timeout_us * 2));
      break;
    case FaultKind::crash:
      fault.duration = rng.chance(0.2) ? kNever : rng.uniform(0, 1500 * kMs);
      break;
    case FaultKind::burst:
      fault.count = static_cast<std::uint32_t>(rng.uniform(1, 40));
      fault.seed = rng.next();
      break;
  }
  return fault;
}

std::vector<FaultKind> enabled_faults(const ScenarioOptions& options, std::size_t hosts) {
  std::vector<FaultKind> kinds;
  if (options.partitions && hosts >= 2) {
    kinds.insert(kinds.end(), {FaultKind::partition, FaultKind::cut, FaultKind::flap});
  }
  if (options.pauses) kinds.push_back(FaultKind::pause);
  if (options.crashes) kinds.push_back(FaultKind::crash);
  return kinds;
}

}  // namespace

std::string describe(const PlannedFault& fault) {
  const std::string host = "host " + std::to_string(fault.host);
  switch (fault.kind) {
    case FaultKind::partition:
      return "partition " + groups_text(fault.groups) + " for " + seconds_text(fault.duration);
    case FaultKind::cut:
      return "cut " + std::to_string(fault.host) + "->" + std::to_string(fault.peer) +
             " (one way) for " + seconds_text(fault.duration);
    case FaultKind::flap:
      return "flap " + host + ": link down/up " + std::to_string(fault.count) + " times every " +
             seconds_text(fault.duration);
    case FaultKind::pause:
      return "pause " + host + " for " + seconds_text(fault.duration);
    case FaultKind::crash:
      if (fault.duration == kNever) return "crash " + host + " until the heal";
      return "crash " + host + ", restart after " + seconds_text(fault.duration);
    case FaultKind::burst:
      return "burst of " + std::to_string(fault.count) + " messages from " + host;
  }
  return "?";
}

ScenarioPlan plan_scenario(std::uint64_t seed, const ScenarioOptions& options) {
  // Every choice is drawn whether or not an option overrides it, so that overriding one choice
  // leaves the others as the seed made them.
  Rng rng = Rng(seed).fork(2);
  ScenarioPlan plan;
  plan.seed = seed;
  const std::size_t hosts = rng.chance(0.15) ? rng.uniform(8, 16) : rng.uniform(2, 7);
  const double loss = rng.chance(0.3) ? 0.0 : rng.uniform_real(0.0, 0.2);
  const double duplicate = rng.chance(0.4) ? 0.0 : rng.uniform_real(0.0, 0.05);
  const TimeUs delay_min = rng.uniform(50, 300);
  const TimeUs delay_max = rng.uniform(delay_min, 2000);
  const TimeUs fault_phase = rng.uniform(1000, 5000) * kMs;
  plan.hosts = options.hosts.value_or(hosts);
  plan.network = NetworkOptions{options.loss.value_or(loss), options.duplicate.value_or(duplicate),
                                delay_min, delay_max};
  plan.fault_phase_us =
      options.fault_seconds ? static_cast<TimeUs>(*options.fault_seconds * 1e6) : fault_phase;
  plan.fault_phase_us = std::max<TimeUs>(plan.fault_phase_us, 1);

  const std::uint64_t fault_slots = rng.uniform(1, 2 + plan.fault_phase_us / (400 * kMs));
  const std::uint64_t bursts = rng.uniform(2, 2 + plan.fault_phase_us / (250 * kMs));
  const auto kinds = enabled_faults(options, plan.hosts);
  Rng fault_rng = rng.fork(3);
  for (std::uint64_t i = 0; i < fault_slots && !kinds.empty(); ++i) {
    plan.faults.push_back(plan_fault(fault_rng, fault_rng.pick(kinds), plan));
  }
  for (std::uint64_t i = 0; i < bursts; ++i) {
    plan.faults.push_back(plan_fault(fault_rng, FaultKind::burst, plan));
  }
  std::stable_sort(plan.faults.begin(), plan.faults.end(),
                   [](const PlannedFault& a, const PlannedFault& b) { return a.at < b.at; });
  return plan;
}

}  // namespace keel::sim
