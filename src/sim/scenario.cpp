#include "sim/scenario.hpp"

#include <algorithm>
#include <cstdio>

#include "core/common/assert.hpp"
#include "sim/random.hpp"

namespace keel::sim {

namespace {

constexpr TimeUs kMs = 1000;
constexpr TimeUs kSecond = 1'000'000;

// Storm message counts: the busiest sender's, and each other sender's.
constexpr std::uint64_t kStormBusiestMin = 200;
constexpr std::uint64_t kStormBusiestMax = 1000;
constexpr std::uint64_t kStormOtherMin = 150;
constexpr std::uint64_t kStormOtherMax = 800;
// Seeds with another flow-control window than the default, without and with a storm.
constexpr double kOtherWindowChance = 0.05;
constexpr double kOtherWindowChanceInStorm = 0.4;
// Seeds with a graceful leave and restart.
constexpr double kLeaveChance = 0.2;

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

std::string describe_fault(const PlannedFault& fault) {
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
    case FaultKind::leave:
      if (fault.duration == kNever) return "leave " + host + " (graceful stop) until the heal";
      return "leave " + host + " (graceful stop), restart after " + seconds_text(fault.duration);
    case FaultKind::burst:
      break;
  }
  return "?";
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
    case FaultKind::leave:
      fault.duration = rng.chance(0.2) ? kNever : rng.uniform(0, 1500 * kMs);
      break;
    case FaultKind::burst:
      fault.count = static_cast<std::uint32_t>(rng.uniform(1, 40));
      fault.seed = rng.next();
      break;
  }
  return fault;
}

enum class StormFault : std::uint8_t { none, cut, partition, crash };

StormFault draw_storm_fault(Rng& rng) {
  const double r = rng.unit();
  if (r < 0.45) return StormFault::cut;
  if (r < 0.65) return StormFault::partition;
  if (r < 0.85) return StormFault::crash;
  return StormFault::none;
}

// The fault in the middle of a storm, as a planned fault; nothing when the options rule it out
// (the numbers are drawn all the same, so that options never shift the other choices).
std::optional<PlannedFault> plan_storm_fault(Rng& rng, StormFault kind, TimeUs storm_at,
                                             const std::vector<NodeId>& senders,
                                             const ScenarioOptions& options,
                                             const ScenarioPlan& plan) {
  PlannedFault fault;
  fault.storm = true;
  fault.at = storm_at + rng.uniform(5 * kMs, 150 * kMs);
  const TimeUs cut_duration = rng.uniform(150 * kMs, 1 * kSecond);
  auto groups = random_groups(rng, plan.hosts);
  const TimeUs partition_duration = rng.uniform(100 * kMs, 1500 * kMs);
  const NodeId crashed = senders[rng.uniform(0, senders.size() - 1)];
  const TimeUs restart_after = rng.uniform(0, 1 * kSecond);
  switch (kind) {
    case StormFault::none:
      return std::nullopt;
    case StormFault::cut:
      // The busiest sender cannot reach the host before it in the token order. That host's
      // retransmission requests reach the busiest sender first, whose answers are cut, so the
      // host stays behind while the others go on: the ring runs into its outstanding limit.
      if (!options.partitions || plan.hosts < 3) return std::nullopt;
      fault.kind = FaultKind::cut;
      fault.at = storm_at;
      fault.host = senders.front();
      fault.peer = fault.host == 1 ? static_cast<NodeId>(plan.hosts) : fault.host - 1;
      fault.duration = cut_duration;
      return fault;
    case StormFault::partition:
      if (!options.partitions) return std::nullopt;
      fault.kind = FaultKind::partition;
      fault.groups = std::move(groups);
      fault.duration = partition_duration;
      return fault;
    case StormFault::crash:
      if (!options.crashes) return std::nullopt;
      fault.kind = FaultKind::crash;
      fault.host = crashed;
      fault.duration = restart_after;
      return fault;
  }
  return std::nullopt;
}

// A storm: 1..4 hosts (at least 2 with a cut) each submit hundreds to a thousand messages within
// 20 ms, some of them fragmented, and one fault lands in the middle of it. Adds the bursts and the
// fault to the plan and describes the storm in plan.storm.
void plan_storm(Rng& rng, const ScenarioOptions& options, ScenarioPlan& plan) {
  const StormFault kind = draw_storm_fault(rng);
  std::vector<NodeId> order;
  for (NodeId id = 1; id <= plan.hosts; ++id) order.push_back(id);
  rng.shuffle(order);
  const std::size_t most = std::min<std::size_t>(4, plan.hosts);
  const std::size_t fewest = kind == StormFault::cut ? std::min<std::size_t>(2, most) : 1;
  const std::vector<NodeId> senders(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(rng.uniform(fewest, most)));
  const TimeUs latest = plan.fault_phase_us > kSecond ? plan.fault_phase_us - kSecond : 0;
  const TimeUs at = rng.uniform(0, latest);
  std::vector<PlannedFault> storm;
  std::uint64_t messages = 0;
  for (std::size_t i = 0; i < senders.size(); ++i) {
    PlannedFault burst;
    burst.kind = FaultKind::burst;
    burst.storm = true;
    burst.at = at + rng.uniform(0, 20 * kMs);
    burst.host = senders[i];
    burst.count =
        static_cast<std::uint32_t>(i == 0 ? rng.uniform(kStormBusiestMin, kStormBusiestMax)
                                          : rng.uniform(kStormOtherMin, kStormOtherMax));
    burst.seed = rng.next();
    messages += burst.count;
    storm.push_back(std::move(burst));
  }
  auto fault = plan_storm_fault(rng, kind, at, senders, options, plan);
  std::string hosts;
  for (NodeId id : senders) hosts += (hosts.empty() ? "" : ",") + std::to_string(id);
  plan.storm = "at " + seconds_text(at) + ", " + std::to_string(messages) +
               " messages from hosts " + hosts + " (busiest first), with " +
               (fault ? describe_fault(*fault) : std::string("no fault"));
  if (fault) storm.push_back(std::move(*fault));
  // In a fault phase shorter than a second, what would start after the heal is left out.
  for (auto& part : storm) {
    if (part.at < plan.fault_phase_us) plan.faults.push_back(std::move(part));
  }
}

// Flow control: the defaults, or (kOtherWindowChance, more often with a storm) a window of 20..400
// messages per rotation with a third to a half of it per visit. Retransmissions share the window
// with new messages, so a host lacks at most about one window of messages at a time: a window
// under 64 never fills the token's retransmission list, the default (150) and wider ones do.
void draw_flow_control(Rng& rng, bool storm, ring::RingTunables& tunables) {
  const bool other = rng.chance(storm ? kOtherWindowChanceInStorm : kOtherWindowChance);
  const auto window = static_cast<std::uint32_t>(rng.uniform(20, 400));
  const auto per_visit = static_cast<std::uint32_t>(rng.uniform(window / 3, window / 2));
  if (!other) return;
  tunables.window_size = window;
  tunables.max_messages_per_visit = per_visit;
  KEEL_ASSERT(!ring::validate(tunables).has_value());
}

// A graceful restart (kLeaveChance of seeds): a host announces that it leaves the ring, stops,
// and starts again later (or at the heal).
void plan_leave(Rng& rng, const ScenarioOptions& options, ScenarioPlan& plan) {
  const bool leave = rng.chance(kLeaveChance);
  PlannedFault fault;
  fault.kind = FaultKind::leave;
  fault.at = rng.uniform(0, plan.fault_phase_us - 1);
  fault.host = random_host(rng, plan.hosts);
  fault.duration = rng.chance(0.2) ? kNever : rng.uniform(0, 1500 * kMs);
  if (leave && options.crashes) plan.faults.push_back(std::move(fault));
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
  const std::string storm = fault.storm ? "storm: " : "";
  if (fault.kind != FaultKind::burst) return storm + describe_fault(fault);
  return storm + "burst of " + std::to_string(fault.count) + " messages from " + host +
         (fault.storm ? " (up to " + std::to_string(kStormMaxFillerBytes) + " bytes each)" : "");
}

std::string describe_heal(const ScenarioPlan& plan) {
  char loss[80];
  std::snprintf(loss, sizeof loss, "random loss capped at %.0f%% (%.2f%% -> %.2f%%)",
                kLivenessMaxLoss * 100.0, plan.network.loss * 100.0,
                std::min(plan.network.loss, kLivenessMaxLoss) * 100.0);
  return "heal at " + seconds_text(plan.fault_phase_us) +
         ": partitions, cuts, flaps, pauses and crashes end, no new faults; " + loss +
         "; duplication and delay unchanged";
}

std::string describe_liveness(const ScenarioPlan& plan) {
  return "one view of all " + std::to_string(plan.hosts) + " hosts within " +
         seconds_text(kConvergeBoundUs) + " of the heal, then a message from each host delivered " +
         "everywhere within " + seconds_text(kDeliverBoundUs);
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
  // Generators of their own, so that the schedule above is the same with and without these.
  Rng storm_rng = rng.fork(4);
  const bool storm = storm_rng.chance(kStormChance);
  draw_flow_control(storm_rng, storm, plan.tunables);
  if (storm) plan_storm(storm_rng, options, plan);
  Rng leave_rng = rng.fork(5);
  plan_leave(leave_rng, options, plan);
  std::stable_sort(plan.faults.begin(), plan.faults.end(),
                   [](const PlannedFault& a, const PlannedFault& b) { return a.at < b.at; });
  return plan;
}

}  // namespace keel::sim
