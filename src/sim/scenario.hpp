// Scenario: one 64-bit seed turned into every choice of a simulated run, and the run itself.
//
// plan_scenario() draws, from the seed alone (options on the command line override single
// choices): the host count, network loss, duplication and delay, the length of the fault phase,
// and a schedule of faults (partitions into random groups, one-way cuts, a flapping host, pauses
// shorter and longer than the token timeout, crashes and restarts) and of message bursts (agreed
// and safe, 0..~5000 bytes, so fragmentation is exercised). run_scenario() plays the schedule on
// a SimCluster with the checkers on, heals everything at the end of the fault phase and then
// checks liveness: one regular view of all hosts within kConvergeBoundUs, then one message from
// every host delivered everywhere within kDeliverBoundUs.
//
// Thread-safety: plain functions; a run owns its cluster.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/ring/coverage.hpp"
#include "core/ring/ring.hpp"
#include "sim/checkers.hpp"
#include "sim/cluster.hpp"

namespace keel::sim {

// Liveness bounds, in simulated time after every fault is healed.
constexpr TimeUs kConvergeBoundUs = 10'000'000;
// Random loss that remains after the heal, while liveness is checked.
constexpr double kLivenessMaxLoss = 0.02;
constexpr TimeUs kDeliverBoundUs = 5'000'000;
constexpr int kLivenessAttempts = 3;
constexpr std::uint64_t kDefaultMaxSteps = 50'000'000;

// Overrides of the seed's choices; unset means "drawn from the seed".
struct ScenarioOptions {
  std::optional<std::size_t> hosts;
  std::optional<double> loss;
  std::optional<double> duplicate;
  std::optional<double> fault_seconds;
  bool partitions = true;  // partitions, one-way cuts and flapping links
  bool crashes = true;
  bool pauses = true;
  std::uint64_t max_steps = kDefaultMaxSteps;
};

enum class FaultKind : std::uint8_t { partition, cut, flap, pause, crash, burst };

struct PlannedFault {
  TimeUs at = 0;
  FaultKind kind = FaultKind::burst;
  NodeId host = kNoNode;                    // cut: from; flap, pause, crash, burst: the host
  NodeId peer = kNoNode;                    // cut: to
  std::vector<std::vector<NodeId>> groups;  // partition
  TimeUs duration = 0;      // how long it lasts (kNever: until the heal); flap: the toggle period
  std::uint32_t count = 0;  // flap: toggles; burst: messages
  std::uint64_t seed = 0;   // burst: sizes and kinds
};

std::string describe(const PlannedFault& fault);

struct ScenarioPlan {
  std::uint64_t seed = 0;
  std::size_t hosts = 0;
  NetworkOptions network;
  TimeUs fault_phase_us = 0;
  ring::RingTunables tunables;
  std::vector<PlannedFault> faults;  // sorted by time
};

ScenarioPlan plan_scenario(std::uint64_t seed, const ScenarioOptions& options);

struct RunResult {
  std::uint64_t seed = 0;
  std::optional<Violation> violation;
  bool step_limit_hit = false;
  std::uint64_t steps = 0;
  TimeUs simulated_us = 0;
  TimeUs healed_at_us = 0;
  std::optional<TimeUs> converge_us;  // from the heal to one view of all hosts
  std::optional<TimeUs> deliver_us;   // from convergence to every liveness message delivered
  int liveness_retries = 0;           // view changes that restarted the liveness check
  CheckerStats checker;
  ClusterStats cluster;
  ring::RingStats ring;
  NetworkStats network;
  ring::Coverage coverage{};
  std::vector<std::string> trace_tail;  // set on a violation

  bool ok() const { return !violation.has_value(); }
};

// Plays `plan`; `trace_out` (optional) receives every trace line as it happens.
RunResult run_scenario(const ScenarioPlan& plan, const ScenarioOptions& options,
                       std::ostream* trace_out = nullptr);

}  // namespace keel::sim
