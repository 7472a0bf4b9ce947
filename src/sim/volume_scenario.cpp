// The volume simulation's plan (drawn from the seed) and `keel sim --volume`'s output; the run
// itself is volume_run.cpp.
#include "sim/volume_scenario.hpp"

#include <algorithm>
#include <cstdio>

#include "sim/random.hpp"

namespace keel::sim {

namespace {

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string seconds_text(TimeUs us) { return fixed(static_cast<double>(us) / 1e6, 3) + " s"; }

VolumeFault plan_fault(Rng& rng, TimeUs phase_us) {
  VolumeFault fault;
  fault.at = rng.uniform(0, phase_us - 1);
  const std::uint64_t kind = rng.uniform(0, 9);
  fault.kind = kind <= 2   ? VolumeFaultKind::link_break
               : kind <= 3 ? VolumeFaultKind::witness_partition
               : kind <= 5 ? VolumeFaultKind::isolate
               : kind <= 7 ? VolumeFaultKind::process_crash
                           : VolumeFaultKind::power_loss;
  fault.node = static_cast<int>(rng.uniform(0, 1));
  fault.duration = rng.uniform(20'000, 1'500'000);
  return fault;
}

// Disk errors and online verify, from a stream of their own: the draws above, and so the runs of
// the seeds that get neither, stay what they were before these faults existed.
void plan_disk_faults(Rng rng, VolumePlan& plan) {
  if (rng.chance(0.1)) {
    const std::uint64_t bursts = rng.uniform(1, 3);
    for (std::uint64_t i = 0; i < bursts; ++i) {
      VolumeFault burst;
      burst.at = rng.uniform(0, plan.fault_phase_us - 1);
      burst.kind = VolumeFaultKind::disk_errors;
      burst.node = static_cast<int>(rng.uniform(0, 1));
      burst.duration = rng.uniform(5'000, 300'000);
      burst.share = rng.uniform_real(0.05, 0.5);
      plan.faults.push_back(burst);
    }
  }
  if (rng.chance(0.25)) {
    const std::uint64_t verifies = rng.uniform(1, 2);
    for (std::uint64_t i = 0; i < verifies; ++i) {
      VolumeFault verify;
      // Also just after the heal, while the workload still runs on copies back in sync.
      verify.at = rng.uniform(0, plan.fault_phase_us + 250'000);
      verify.kind = VolumeFaultKind::verify;
      plan.faults.push_back(verify);
    }
  }
}

// Crashes of the witness's agent, from a stream of their own (as above).
void plan_witness_faults(Rng rng, VolumePlan& plan) {
  if (!rng.chance(0.2)) return;
  const std::uint64_t crashes = rng.uniform(1, 2);
  for (std::uint64_t i = 0; i < crashes; ++i) {
    VolumeFault crash;
    crash.at = rng.uniform(0, plan.fault_phase_us - 1);
    crash.kind = VolumeFaultKind::witness_crash;
    crash.duration = rng.uniform(20'000, 1'500'000);
    plan.faults.push_back(crash);
  }
}

}  // namespace

std::string describe(const VolumeFault& fault) {
  const std::string node = "node " + std::to_string(fault.node + 1);
  const std::string until = " for " + seconds_text(fault.duration);
  switch (fault.kind) {
    case VolumeFaultKind::link_break:
      return "replication link breaks";
    case VolumeFaultKind::witness_partition:
      return "witness cut off" + until;
    case VolumeFaultKind::isolate:
      return node + " cut off" + until;
    case VolumeFaultKind::process_crash:
      return node + " process crash, restart after " + seconds_text(fault.duration);
    case VolumeFaultKind::power_loss:
      return node + " power loss, restart after " + seconds_text(fault.duration);
    case VolumeFaultKind::forced_split:
      return node + " cut off and promoted --force" + until;
    case VolumeFaultKind::switchover:
      return "switchover: the primary is demoted under load";
    case VolumeFaultKind::disk_errors:
      return node + " disk fails " + fixed(fault.share * 100, 0) + "% of its operations" + until;
    case VolumeFaultKind::verify:
      return "online verify started on the primary";
    case VolumeFaultKind::witness_crash:
      return "witness crash, restart after " + seconds_text(fault.duration);
  }
  return "?";
}

VolumePlan plan_volume_scenario(std::uint64_t seed, VolumePlanOptions options) {
  Rng root(seed);
  Rng rng = root.fork(301);
  VolumePlan plan;
  plan.seed = seed;
  VolumeWorldOptions& world = plan.world;
  world.seed = root.fork(302).next();
  world.volume_bytes = (std::uint64_t{64} << rng.uniform(0, 4)) * volume::kBlockBytes;
  world.resync_rate_bytes_s = rng.chance(0.5) ? 0 : rng.uniform(16, 64) << 20;
  world.resync_chunk_bytes = static_cast<std::uint32_t>(volume::kBlockBytes << rng.uniform(0, 5));
  world.disk_max_us = rng.uniform(200, 3'000);
  world.link_max_us = rng.uniform(100, 3'000);
  world.reconnect_max_us = rng.uniform(10'000, 300'000);
  plan.issue_min_us = rng.uniform(100, 1'000);
  plan.issue_max_us = plan.issue_min_us + rng.uniform(0, 4'000);
  plan.queue_depth = rng.uniform(1, 16);
  plan.zero_share = rng.chance(0.5) ? 0.0 : rng.uniform_real(0.0, 0.2);
  plan.fua_share = rng.chance(0.5) ? 0.0 : rng.uniform_real(0.0, 0.2);
  plan.flush_share = rng.uniform_real(0.0, 0.2);
  plan.overlap_share = rng.chance(0.5) ? 0.0 : rng.uniform_real(0.0, 0.3);
  plan.fault_phase_us = rng.uniform(1'000'000, 5'000'000);
  const std::size_t faults = rng.uniform(2, 10);
  for (std::size_t i = 0; i < faults; ++i)
    plan.faults.push_back(plan_fault(rng, plan.fault_phase_us));
  if (rng.chance(0.2)) {
    VolumeFault split;
    split.at = rng.uniform(plan.fault_phase_us / 10, plan.fault_phase_us / 2);
    split.kind = VolumeFaultKind::forced_split;
    split.node = static_cast<int>(rng.uniform(0, 1));
    split.duration = rng.uniform(200'000, 1'000'000);
    plan.faults.push_back(split);
  }
  if (rng.chance(0.3)) {
    VolumeFault switchover;
    switchover.at = rng.uniform(0, plan.fault_phase_us - 1);
    switchover.kind = VolumeFaultKind::switchover;
    plan.faults.push_back(switchover);
  }
  // --large-volumes: a quarter of the runs on a volume of 2 to 8 activity-log extents (the log
  // holds 4), so that extents are evicted and writes cross extent boundaries; drawn last, so
  // that the draws above stay what they are for every seed.
  if (options.large_volumes && rng.chance(0.25)) {
    world.volume_bytes = volume::kExtentBytes << rng.uniform(1, 3);
  }
  plan_disk_faults(root.fork(303), plan);
  if (options.witness_crashes) plan_witness_faults(root.fork(305), plan);
  std::stable_sort(plan.faults.begin(), plan.faults.end(),
                   [](const VolumeFault& a, const VolumeFault& b) { return a.at < b.at; });
  return plan;
}

namespace {

void print_plan(const VolumePlan& plan, std::ostream& out) {
  const VolumeWorldOptions& w = plan.world;
  out << "keel sim --volume: seed " << plan.seed << "\n"
      << "  volume " << w.volume_bytes / 1024 << " KiB, resync "
      << (w.resync_rate_bytes_s == 0 ? std::string("unlimited")
                                     : std::to_string(w.resync_rate_bytes_s >> 20) + " MiB/s")
      << " in " << w.resync_chunk_bytes / 1024 << " KiB chunks, disk " << w.disk_min_us << ".."
      << w.disk_max_us << " us, link " << w.link_min_us << ".." << w.link_max_us
      << " us, reconnect up to " << w.reconnect_max_us / 1000 << " ms\n"
      << "  workload every " << plan.issue_min_us << ".." << plan.issue_max_us << " us, depth "
      << plan.queue_depth << ", zeroes " << fixed(plan.zero_share * 100, 0) << "%, fua "
      << fixed(plan.fua_share * 100, 0) << "%, flush " << fixed(plan.flush_share * 100, 0)
      << "%, overlap " << fixed(plan.overlap_share * 100, 0) << "%; fault phase "
      << seconds_text(plan.fault_phase_us) << "\n";
  for (const VolumeFault& fault : plan.faults) {
    out << "    " << seconds_text(fault.at) << "  " << describe(fault) << "\n";
  }
  out << "  then: heal, resolve any split brain (discard the forced side), stop the workload, "
         "converge\n";
}

std::string summary(const VolumeRunResult& result) {
  return std::to_string(result.steps) + " steps, " + std::to_string(result.messages) +
         " messages, " + std::to_string(result.acked_writes) + " acknowledged writes, " +
         seconds_text(result.simulated_us);
}

void print_failure(const VolumeRunResult& result, bool tail, const VolumePlanOptions& plan,
                   std::ostream& out) {
  out << "violation, seed " << result.seed << ", " << *result.violation << "\n";
  if (tail) {
    out << "  last " << result.trace_tail.size() << " trace lines:\n";
    for (const auto& line : result.trace_tail) out << "    " << line << "\n";
  }
  out << "replay: keel sim --volume " << (plan.large_volumes ? "--large-volumes " : "")
      << (plan.witness_crashes ? "--witness-crashes " : "") << "--seed " << result.seed
      << " --trace\n";
}

void print_coverage(const VolumeCoverage& coverage, std::ostream& out) {
  out << "coverage:\n";
  for (std::size_t i = 0; i < kVolumeMarkCount; ++i) {
    out << "  " << volume_mark_name(static_cast<VolumeMark>(i)) << " " << coverage[i] << "\n";
  }
}

}  // namespace

int run_volume_command(const VolumeCommandOptions& options, std::ostream& out) {
  if (!options.seeds_begin) {
    const VolumePlan plan = plan_volume_scenario(options.seed.value_or(1), options.plan);
    print_plan(plan, out);
    const VolumeRunResult result = run_volume_scenario(plan, options.trace ? &out : nullptr);
    out << "  result: " << summary(result) << "\n";
    if (!result.ok()) {
      print_failure(result, !options.trace, options.plan, out);
      return 1;
    }
    out << "  ok\n";
    return 0;
  }
  std::vector<std::uint64_t> failed;
  VolumeCoverage coverage{};
  std::uint64_t steps = 0;
  std::uint64_t acked = 0;
  for (std::uint64_t seed = *options.seeds_begin; seed < *options.seeds_end; ++seed) {
    const VolumePlan plan = plan_volume_scenario(seed, options.plan);
    const VolumeRunResult result = run_volume_scenario(plan, nullptr);
    steps += result.steps;
    acked += result.acked_writes;
    for (std::size_t i = 0; i < kVolumeMarkCount; ++i) coverage[i] += result.coverage[i];
    out << "seed " << seed << ": " << plan.world.volume_bytes / 1024 << " KiB, "
        << plan.faults.size() << " faults: " << (result.ok() ? "ok" : "FAILED") << ", "
        << summary(result) << "\n";
    if (!result.ok()) {
      print_failure(result, failed.empty(), options.plan, out);
      failed.push_back(seed);
    }
  }
  out << "total: " << (*options.seeds_end - *options.seeds_begin) << " seeds, " << failed.size()
      << " failed, " << steps << " steps, " << acked << " acknowledged writes\n";
  print_coverage(coverage, out);
  if (!failed.empty()) {
    out << "failed seeds:";
    for (std::uint64_t seed : failed) out << " " << seed;
    out << "\n";
    return 1;
  }
  return 0;
}

}  // namespace keel::sim
