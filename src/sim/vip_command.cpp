// `keel sim --vip`: printing one vip run or a sweep (vip_scenario.hpp does the work).
#include <cstdio>
#include <vector>

#include "sim/trace.hpp"
#include "sim/vip_scenario.hpp"

namespace keel::sim {

namespace {

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string pool_text(const vip::PoolConfig& pool) {
  std::string text = pool.name + ": " + std::to_string(pool.addresses.size()) +
                     " addresses on hosts " + members_text(pool.nodes);
  if (!pool.preferred.empty()) text += ", " + std::to_string(pool.preferred.size()) + " preferred";
  if (!pool.weights.empty()) {
    text += ", weights";
    for (const auto& [node, weight] : pool.weights) {
      text += " " + std::to_string(node) + ":" + std::to_string(weight);
    }
  }
  return text;
}

void print_plan(const VipPlan& plan, std::ostream& out) {
  out << "keel sim --vip: seed " << plan.seed << "\n"
      << "  hosts " << plan.hosts << ", loss " << fixed(plan.network.loss * 100, 2)
      << "%, duplication " << fixed(plan.network.duplicate * 100, 2) << "%, delay "
      << plan.network.delay_min_us << ".." << plan.network.delay_max_us << " us, settle "
      << fixed(static_cast<double>(plan.config.settle_us) / 1e3, 0) << " ms, fault phase "
      << fixed(static_cast<double>(plan.fault_phase_us) / 1e6, 3) << " s\n";
  for (const auto& pool : plan.config.pools) out << "  " << pool_text(pool) << "\n";
  for (const auto& fault : plan.faults) {
    out << "    " << fixed(static_cast<double>(fault.at) / 1e6, 3) << " s  " << describe(fault)
        << "\n";
  }
  out << "  then: heal (loss capped at 2%)";
  if (plan.stay_drained != kNoNode) out << ", host " << plan.stay_drained << " stays drained";
  if (plan.stay_unhealthy_host != kNoNode) {
    out << ", pool" << plan.stay_unhealthy_pool << " stays unhealthy on host "
        << plan.stay_unhealthy_host;
  }
  out << "; settle, check, then " << kVipScriptSteps << " scripted single faults\n";
}

std::string summary(const VipRunResult& result) {
  std::string text = std::to_string(result.steps) + " steps, " + std::to_string(result.acquires) +
                     " acquires, " + std::to_string(result.releases) + " releases, " +
                     fixed(static_cast<double>(result.simulated_us) / 1e6, 3) + " s";
  if (!result.script.empty()) {
    text += "; script:";
    for (std::size_t i = 0; i < result.script.size(); ++i) {
      text += (i == 0 ? " " : ", ") + result.script[i];
    }
  }
  return text;
}

void print_failure(const VipRunResult& result, const VipOptions& options, bool tail,
                   std::ostream& out) {
  out << "violation, seed " << result.seed << ", " << *result.violation << "\n";
  if (tail) {
    out << "  last " << result.trace_tail.size() << " trace lines:\n";
    for (const auto& line : result.trace_tail) out << "    " << line << "\n";
  }
  out << "replay: keel sim --vip --seed " << result.seed;
  if (options.hosts) out << " --hosts " << *options.hosts;
  out << " --trace\n";
}

}  // namespace

int run_vip_command(const VipCommandOptions& options, std::ostream& out) {
  if (!options.seeds_begin) {
    const std::uint64_t seed = options.seed.value_or(1);
    const VipPlan plan = plan_vip_scenario(seed, options.vip);
    print_plan(plan, out);
    const VipRunResult result = run_vip_scenario(plan, options.vip.trace ? &out : nullptr);
    out << "  result: " << summary(result) << "\n";
    if (!result.ok()) {
      print_failure(result, options.vip, !options.vip.trace, out);
      return 1;
    }
    out << "  ok\n";
    return 0;
  }
  std::vector<std::uint64_t> failed;
  std::uint64_t steps = 0;
  std::uint64_t acquires = 0;
  for (std::uint64_t seed = *options.seeds_begin; seed < *options.seeds_end; ++seed) {
    const VipPlan plan = plan_vip_scenario(seed, options.vip);
    const VipRunResult result = run_vip_scenario(plan, nullptr);
    steps += result.steps;
    acquires += result.acquires;
    out << "seed " << seed << ": " << plan.hosts << " hosts, " << plan.config.pools.size()
        << " pools, " << plan.faults.size() << " faults: " << (result.ok() ? "ok" : "FAILED")
        << ", " << summary(result) << "\n";
    if (!result.ok()) {
      print_failure(result, options.vip, failed.empty(), out);
      failed.push_back(seed);
    }
  }
  out << "total: " << (*options.seeds_end - *options.seeds_begin) << " seeds, " << failed.size()
      << " failed, " << steps << " steps, " << acquires << " acquires\n";
  if (!failed.empty()) {
    out << "failed seeds:";
    for (std::uint64_t seed : failed) out << " " << seed;
    out << "\n";
    return 1;
  }
  return 0;
}

}  // namespace keel::sim
