// Scenario: one 64-bit seed turned into every choice of a simulated run, and the run itself.
//
// plan_scenario() draws, from the seed alone (options on the command line override single
// choices): the host count, network loss, duplication and delay, the length of the fault phase,
// a schedule of faults (partitions into random groups, one-way cuts, a flapping host, pauses
// shorter and longer than the token timeout, crashes and restarts) and of message bursts (agreed
// and safe, 0..~5000 bytes, so fragmentation is exercised); on some seeds a storm (kStormChance):
// bursts of hundreds to a thousand messages from up to four hosts at once, some fragmented, with
// a fault in the middle of it (a one-way cut from the busiest sender to the host before it in the
// token order, a partition, or a crash of a sender); on some seeds a graceful leave and restart;
// and the ring's flow-control tunables (the defaults, or a wider window, more often in storms).
// Storms, flow control and leaves come from generators of their own, so that the rest of a
// schedule does not depend on them.
//
// run_scenario() plays the schedule on a SimCluster with the checkers on. At the end of the fault
// phase it heals: partitions, cuts, flapping links, pauses and crashes end (crashed and stopped
// hosts restart), no new fault starts, random loss is capped at kLivenessMaxLoss, duplication and
// delay stay. Messages still queued go on being delivered. Then it checks liveness: one regular
// view of all hosts within kConvergeBoundUs, then one message from every host delivered
// everywhere within kDeliverBoundUs.
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
// The share of seeds whose schedule has a storm (see above).
constexpr double kStormChance = 0.12;
// Storm messages: the largest filler drawn (a few dozen packets at the default packet size).
constexpr std::size_t kStormMaxFillerBytes = 20'000;

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

enum class FaultKind : std::uint8_t { partition, cut, flap, pause, crash, leave, burst };

struct PlannedFault {
  TimeUs at = 0;
  FaultKind kind = FaultKind::burst;
  NodeId host = kNoNode;                    // cut: from; otherwise the host
  NodeId peer = kNoNode;                    // cut: to
  std::vector<std::vector<NodeId>> groups;  // partition
  TimeUs duration = 0;      // how long it lasts (kNever: until the heal); flap: the toggle period
  std::uint32_t count = 0;  // flap: toggles; burst: messages
  std::uint64_t seed = 0;   // burst: sizes and kinds
  bool storm = false;  // burst: storm sizes (up to kStormMaxFillerBytes); else: a storm's fault
};

std::string describe(const PlannedFault& fault);

struct ScenarioPlan {
  std::uint64_t seed = 0;
  std::size_t hosts = 0;
  NetworkOptions network;
  TimeUs fault_phase_us = 0;
  ring::RingTunables tunables;
  std::vector<PlannedFault> faults;  // sorted by time
  std::string storm;                 // what the storm is, in one line; empty: no storm
};

ScenarioPlan plan_scenario(std::uint64_t seed, const ScenarioOptions& options);

// What the heal at the end of the fault phase does, and what liveness then requires.
std::string describe_heal(const ScenarioPlan& plan);
std::string describe_liveness(const ScenarioPlan& plan);

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
