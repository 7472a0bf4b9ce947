// Replay: the same seed and options produce byte-identical output (a run, a sweep, a traced run
// and the demo), and different seeds produce different runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "sim/runner.hpp"

namespace keel::sim {
namespace {

std::string run(const SimCommandOptions& options) {
  std::ostringstream out;
  run_sim_command(options, out);
  return out.str();
}

TEST(SimDeterminism, SameSeedTwiceIsByteIdentical) {
  SimCommandOptions options;
  options.seed = 12345;
  const std::string first = run(options);
  EXPECT_EQ(first, run(options));
  EXPECT_NE(first.find("seed 12345"), std::string::npos);
}

TEST(SimDeterminism, TracedRunIsByteIdentical) {
  SimCommandOptions options;
  options.seed = 77;
  options.trace = true;
  options.scenario.hosts = 4;
  options.scenario.fault_seconds = 1.0;
  const std::string first = run(options);
  EXPECT_GT(first.size(), 10000u);
  EXPECT_EQ(first, run(options));
}

TEST(SimDeterminism, SweepIsByteIdentical) {
  SimCommandOptions options;
  options.seeds_begin = 100;
  options.seeds_end = 106;
  options.scenario.loss = 0.02;
  EXPECT_EQ(run(options), run(options));
}

TEST(SimDeterminism, DemoIsByteIdentical) {
  SimCommandOptions options;
  options.demo = true;
  EXPECT_EQ(run(options), run(options));
}

TEST(SimDeterminism, DifferentSeedsDiffer) {
  SimCommandOptions a;
  a.seed = 1;
  SimCommandOptions b;
  b.seed = 2;
  EXPECT_NE(run(a), run(b));
}

TEST(SimDeterminism, OverridingOneChoiceKeepsTheOthers) {
  const ScenarioPlan plain = plan_scenario(31, ScenarioOptions{});
  ScenarioOptions options;
  options.hosts = plain.hosts;
  options.loss = 0.0;
  const ScenarioPlan overridden = plan_scenario(31, options);
  EXPECT_EQ(overridden.hosts, plain.hosts);
  EXPECT_EQ(overridden.network.loss, 0.0);
  EXPECT_EQ(overridden.network.duplicate, plain.network.duplicate);
  EXPECT_EQ(overridden.fault_phase_us, plain.fault_phase_us);
  ASSERT_EQ(overridden.faults.size(), plain.faults.size());
  for (std::size_t i = 0; i < plain.faults.size(); ++i) {
    EXPECT_EQ(describe(overridden.faults[i]), describe(plain.faults[i]));
  }
}

TEST(SimScenario, PlanRespectsDisabledFaults) {
  ScenarioOptions options;
  options.partitions = false;
  options.crashes = false;
  options.pauses = false;
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    for (const auto& fault : plan_scenario(seed, options).faults) {
      EXPECT_EQ(fault.kind, FaultKind::burst) << describe(fault);
    }
  }
}

TEST(SimScenario, StormsLeavesAndFlowControlComeFromTheSeed) {
  int storms = 0;
  int leaves = 0;
  int other_windows = 0;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const ScenarioPlan plan = plan_scenario(seed, ScenarioOptions{});
    storms += !plan.storm.empty();
    other_windows += plan.tunables.window_size != ring::RingTunables{}.window_size;
    bool storm_burst = false;
    for (const auto& fault : plan.faults) {
      EXPECT_LT(fault.at, plan.fault_phase_us) << describe(fault);
      leaves += fault.kind == FaultKind::leave;
      storm_burst = storm_burst || (fault.storm && fault.kind == FaultKind::burst);
    }
    EXPECT_EQ(storm_burst, !plan.storm.empty()) << "seed " << seed;
  }
  EXPECT_GT(storms, 5);
  EXPECT_GT(leaves, 5);
  EXPECT_GT(other_windows, 5);
}

TEST(SimScenario, DisablingFaultsKeepsAStormsBursts) {
  ScenarioOptions quiet;
  quiet.partitions = false;
  quiet.crashes = false;
  quiet.pauses = false;
  int storms = 0;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    const auto storm_bursts = [](const ScenarioPlan& plan) {
      std::vector<std::string> bursts;
      for (const auto& fault : plan.faults) {
        if (fault.storm && fault.kind == FaultKind::burst) bursts.push_back(describe(fault));
      }
      return bursts;
    };
    const ScenarioPlan plan = plan_scenario(seed, ScenarioOptions{});
    storms += !plan.storm.empty();
    EXPECT_EQ(storm_bursts(plan), storm_bursts(plan_scenario(seed, quiet))) << "seed " << seed;
  }
  EXPECT_GT(storms, 0);
}

TEST(SimCommand, RequireCoverageNamesTheMarksNoSeedHit) {
  SimCommandOptions options;
  options.seeds_begin = 5;
  options.seeds_end = 7;
  options.require_coverage = true;
  std::ostringstream out;
  EXPECT_EQ(run_sim_command(options, out), kExitCoverageMissing);
  EXPECT_NE(out.str().find("require-coverage: FAILED"), std::string::npos);
  EXPECT_NE(out.str().find("outstanding_limit"), std::string::npos);

  for (std::size_t i = 0; i < ring::kMarkCount; ++i) {
    options.allowed_unhit.emplace_back(ring::mark_name(static_cast<ring::Mark>(i)));
  }
  std::ostringstream allowed;
  EXPECT_EQ(run_sim_command(options, allowed), kExitOk);
  EXPECT_NE(allowed.str().find("require-coverage: every mark was hit"), std::string::npos);
}

}  // namespace
}  // namespace keel::sim
