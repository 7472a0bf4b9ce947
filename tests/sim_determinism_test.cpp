// Replay: the same seed and options produce byte-identical output (a run, a sweep, a traced run
// and the demo), and different seeds produce different runs.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

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

}  // namespace
}  // namespace keel::sim
