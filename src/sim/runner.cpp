#include "sim/runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/common/assert.hpp"

namespace keel::sim {

namespace {

constexpr std::size_t kScheduleLinesShown = 40;

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string seconds(TimeUs us) { return fixed(static_cast<double>(us) / 1e6, 3) + " s"; }
std::string percent(double p) { return fixed(p * 100.0, 2) + "%"; }

std::string on_off(bool on) { return on ? "on" : "off"; }

void print_plan(const ScenarioPlan& plan, std::ostream& out) {
  std::size_t bursts = 0;
  for (const auto& fault : plan.faults) bursts += fault.kind == FaultKind::burst;
  out << "keel sim: seed " << plan.seed << "\n"
      << "  hosts " << plan.hosts << ", loss " << percent(plan.network.loss) << ", duplication "
      << percent(plan.network.duplicate) << ", delay " << plan.network.delay_min_us << ".."
      << plan.network.delay_max_us << " us, fault phase " << seconds(plan.fault_phase_us) << "\n"
      << "  tunables: token timeout " << plan.tunables.token_timeout_ms << " ms, consensus "
      << plan.tunables.consensus_timeout_ms << " ms, join " << plan.tunables.join_timeout_ms
      << " ms, max packet " << plan.tunables.max_packet_bytes << " bytes, window "
      << plan.tunables.window_size << ", per visit " << plan.tunables.max_messages_per_visit
      << ", outstanding " << plan.tunables.max_outstanding_messages << "\n"
      << "  schedule: " << plan.faults.size() - bursts << " faults, " << bursts << " bursts\n";
  if (!plan.storm.empty()) out << "  storm: " << plan.storm << "\n";
  const std::size_t shown = std::min(plan.faults.size(), kScheduleLinesShown);
  for (std::size_t i = 0; i < shown; ++i) {
    out << "    " << seconds(plan.faults[i].at) << "  " << describe(plan.faults[i]) << "\n";
  }
  if (shown < plan.faults.size()) {
    out << "    ... and " << plan.faults.size() - shown << " more (--trace shows them all)\n";
  }
  out << "  then: " << describe_heal(plan) << "\n"
      << "  liveness: " << describe_liveness(plan) << "\n";
}

void print_result(const RunResult& result, std::ostream& out) {
  out << "  result:\n"
      << "    views installed      " << result.checker.views_installed << "\n"
      << "    messages submitted   " << result.checker.messages_submitted << " (refused "
      << result.cluster.submits_refused << ")\n"
      << "    messages delivered   " << result.checker.messages_delivered
      << " (summed over hosts)\n"
      << "    packets              " << result.network.sent << " sent, " << result.network.lost
      << " lost, " << result.network.blocked << " blocked, " << result.network.duplicated
      << " duplicated\n"
      << "    steps                " << result.steps << "\n"
      << "    simulated time       " << seconds(result.simulated_us) << "\n";
  if (result.converge_us) {
    out << "    converged            " << seconds(*result.converge_us) << " after the heal at "
        << seconds(result.healed_at_us);
    if (result.deliver_us)
      out << "; liveness messages delivered in " << seconds(*result.deliver_us);
    out << "\n";
  }
  if (result.step_limit_hit) out << "    stopped at the step limit; liveness not checked\n";
  out << "    violations: " << (result.ok() ? 0 : 1) << "\n";
}

std::string summary_line(const ScenarioPlan& plan, const RunResult& result) {
  std::string line = "seed " + std::to_string(plan.seed) + ": " + std::to_string(plan.hosts) +
                     " hosts, loss " + percent(plan.network.loss) + ", " +
                     std::to_string(plan.faults.size()) + " events" +
                     (plan.storm.empty() ? "" : " (storm)") + ": ";
  line += result.ok() ? "ok" : "VIOLATION";
  line += ", " + std::to_string(result.steps) + " steps, " + seconds(result.simulated_us);
  if (result.converge_us) line += ", converged in " + seconds(*result.converge_us);
  if (result.step_limit_hit) line += ", step limit";
  return line;
}

void print_failure(const RunResult& result, const SimCommandOptions& options, std::ostream& out) {
  out << "\n" << result.violation->text << "\n";
  if (!result.trace_tail.empty()) {
    out << "\nlast " << result.trace_tail.size() << " trace lines:\n";
    for (const auto& line : result.trace_tail) out << "  " << line << "\n";
  }
  out << "replay: keel sim --seed " << result.seed << scenario_flags(options.scenario)
      << " --trace\n";
}

struct CoverageTotals {
  std::array<std::uint64_t, ring::kMarkCount> seeds{};
  std::array<std::uint64_t, ring::kMarkCount> hits{};

  void add(const ring::Coverage& coverage) {
    for (std::size_t i = 0; i < ring::kMarkCount; ++i) {
      seeds[i] += coverage[i] > 0;
      hits[i] += coverage[i];
    }
  }
};

bool allowed(const SimCommandOptions& options, const std::string& name) {
  return std::find(options.allowed_unhit.begin(), options.allowed_unhit.end(), name) !=
         options.allowed_unhit.end();
}

void print_coverage(const CoverageTotals& totals, const SimCommandOptions& options,
                    std::ostream& out) {
  out << "coverage (seeds that hit each mark, total hits):\n";
  std::size_t never = 0;
  for (std::size_t i = 0; i < ring::kMarkCount; ++i) {
    const auto name = std::string(ring::mark_name(static_cast<ring::Mark>(i)));
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "  %-40s %8llu %12llu", name.c_str(),
                  static_cast<unsigned long long>(totals.seeds[i]),
                  static_cast<unsigned long long>(totals.hits[i]));
    out << buffer;
    if (totals.hits[i] == 0)
      out << (allowed(options, name) ? "   never hit (allowed)" : "   NEVER HIT");
    out << "\n";
    never += totals.hits[i] == 0;
  }
  out << "  " << never << " of " << ring::kMarkCount << " marks never hit\n";
}

// --require-coverage: every mark hit by some seed, apart from the allowed ones.
int check_required_coverage(const CoverageTotals& totals, const SimCommandOptions& options,
                            std::ostream& out) {
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < ring::kMarkCount; ++i) {
    const auto name = std::string(ring::mark_name(static_cast<ring::Mark>(i)));
    if (totals.seeds[i] == 0 && !allowed(options, name)) missing.push_back(name);
  }
  if (missing.empty()) {
    out << "require-coverage: every mark was hit";
    if (!options.allowed_unhit.empty()) {
      out << " (apart from " << options.allowed_unhit.size() << " allowed to stay unhit)";
    }
    out << "\n";
    return kExitOk;
  }
  out << "require-coverage: FAILED: " << missing.size() << " mark"
      << (missing.size() == 1 ? " was" : "s were") << " hit by no seed:";
  for (const auto& name : missing) out << " " << name;
  out << "\n";
  return kExitCoverageMissing;
}

using Clock = std::chrono::steady_clock;

double elapsed_seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void print_timing(std::uint64_t steps, double wall, std::ostream& out) {
  out << "timing: " << steps << " steps in " << fixed(wall, 3) << " s wall clock, "
      << fixed(wall > 0 ? static_cast<double>(steps) / wall : 0.0, 0) << " steps/s\n";
}

int run_one(const SimCommandOptions& options, std::uint64_t seed, std::ostream& out) {
  const auto start = Clock::now();
  const ScenarioPlan plan = plan_scenario(seed, options.scenario);
  print_plan(plan, out);
  const RunResult result = run_scenario(plan, options.scenario, options.trace ? &out : nullptr);
  print_result(result, out);
  if (options.timing) print_timing(result.steps, elapsed_seconds(start), out);
  if (result.ok()) return kExitOk;
  print_failure(result, options, out);
  return kExitViolation;
}

// A sweep (end set) or a soak (until the wall-clock budget is spent). Every seed runs; each
// failure prints its violation and replay line, the first one its trace tail too.
int run_many(const SimCommandOptions& options, std::uint64_t begin,
             std::optional<std::uint64_t> end, std::ostream& out) {
  const auto start = Clock::now();
  CoverageTotals coverage;
  std::uint64_t runs = 0;
  std::uint64_t steps = 0;
  std::uint64_t converge_max = 0;
  std::vector<std::uint64_t> failed;
  for (std::uint64_t seed = begin; end ? seed < *end : true; ++seed) {
    if (!end && elapsed_seconds(start) >= *options.soak_seconds) break;
    const ScenarioPlan plan = plan_scenario(seed, options.scenario);
    RunResult result = run_scenario(plan, options.scenario, options.trace ? &out : nullptr);
    out << summary_line(plan, result) << "\n";
    ++runs;
    steps += result.steps;
    coverage.add(result.coverage);
    if (result.converge_us)
      converge_max = std::max<std::uint64_t>(converge_max, *result.converge_us);
    if (result.ok()) continue;
    if (!failed.empty()) result.trace_tail.clear();
    print_failure(result, options, out);
    failed.push_back(seed);
  }
  out << "total: " << runs << " seeds, " << failed.size() << " with violations, " << steps
      << " steps, slowest convergence after heal " << seconds(converge_max) << "\n";
  if (!failed.empty()) {
    out << "failed seeds:";
    for (std::uint64_t seed : failed) out << " " << seed;
    out << "\n";
  }
  print_coverage(coverage, options, out);
  if (options.timing || !end) print_timing(steps, elapsed_seconds(start), out);
  const int coverage_code =
      options.require_coverage ? check_required_coverage(coverage, options, out) : kExitOk;
  if (!failed.empty()) return kExitViolation;
  return coverage_code;
}

}  // namespace

std::optional<ring::Mark> mark_by_name(const std::string& name) {
  for (std::size_t i = 0; i < ring::kMarkCount; ++i) {
    const auto mark = static_cast<ring::Mark>(i);
    if (ring::mark_name(mark) == name) return mark;
  }
  return std::nullopt;
}

std::string scenario_flags(const ScenarioOptions& options) {
  std::string flags;
  if (options.hosts) flags += " --hosts " + std::to_string(*options.hosts);
  if (options.loss) flags += " --loss " + fixed(*options.loss, 4);
  if (options.duplicate) flags += " --dup " + fixed(*options.duplicate, 4);
  if (options.fault_seconds) flags += " --time " + fixed(*options.fault_seconds, 3);
  if (!options.partitions) flags += " --partitions " + on_off(options.partitions);
  if (!options.crashes) flags += " --crashes " + on_off(options.crashes);
  if (!options.pauses) flags += " --pauses " + on_off(options.pauses);
  if (options.max_steps != kDefaultMaxSteps)
    flags += " --steps " + std::to_string(options.max_steps);
  return flags;
}

int run_sim_command(const SimCommandOptions& options, std::ostream& out) {
  for (const auto& name : options.allowed_unhit) KEEL_ASSERT(mark_by_name(name).has_value());
  if (options.demo) return run_demo(out);
  if (options.figures) return run_figures(out);
  if (options.soak_seconds) return run_many(options, options.seed.value_or(1), std::nullopt, out);
  if (options.seeds_begin && options.seeds_end) {
    return run_many(options, *options.seeds_begin, *options.seeds_end, out);
  }
  return run_one(options, options.seed.value_or(1), out);
}

}  // namespace keel::sim
