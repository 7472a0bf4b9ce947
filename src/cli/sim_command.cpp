// `keel sim`: the deterministic simulator (src/sim/runner.hpp does the work).
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "core/ring/limits.hpp"
#include "sim/runner.hpp"
#include "sim/vip_scenario.hpp"
#include "sim/volume_scenario.hpp"

namespace keel::cli {

namespace {

struct SimFlags {
  sim::SimCommandOptions options;
  std::string seeds;  // "A:B"
  std::string partitions = "on";
  std::string crashes = "on";
  std::string pauses = "on";
  bool vip = false;            // --vip: the floating-IP simulation (sim/vip_scenario.hpp)
  bool volume = false;         // --volume: the mirrored-volume simulation (sim/volume_scenario.hpp)
  bool large_volumes = false;  // --large-volumes, with --volume
  bool witness_crashes = false;  // --witness-crashes, with --volume
};

// Parses "A:B" (A < B) into a half-open range of seeds.
bool parse_seed_range(const std::string& text, std::uint64_t& begin, std::uint64_t& end) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) return false;
  try {
    std::size_t used = 0;
    begin = std::stoull(text.substr(0, colon), &used);
    if (used != colon) return false;
    const std::string rest = text.substr(colon + 1);
    end = std::stoull(rest, &used);
    if (used != rest.size()) return false;
  } catch (const std::exception&) {
    return false;
  }
  return begin < end;
}

int run(SimFlags& flags) {
  auto& options = flags.options;
  if (!flags.seeds.empty()) {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    if (!parse_seed_range(flags.seeds, begin, end)) {
      std::cerr << "keel sim: --seeds wants A:B with A < B, got '" << flags.seeds << "'\n";
      return sim::kExitUsage;
    }
    options.seeds_begin = begin;
    options.seeds_end = end;
  }
  if (flags.vip) {
    sim::VipCommandOptions vip{options.seed,
                               options.seeds_begin,
                               options.seeds_end,
                               {options.scenario.hosts, options.trace}};
    const int code = sim::run_vip_command(vip, std::cout);
    std::cout.flush();
    return code;
  }
  if (flags.volume) {
    sim::VolumeCommandOptions volume{options.seed,
                                     options.seeds_begin,
                                     options.seeds_end,
                                     options.trace,
                                     {flags.large_volumes, flags.witness_crashes}};
    const int code = sim::run_volume_command(volume, std::cout);
    std::cout.flush();
    return code;
  }
  if (options.require_coverage && !options.seeds_begin && !options.soak_seconds) {
    std::cerr << "keel sim: --require-coverage needs a sweep (--seeds A:B) or a soak (--soak)\n";
    return sim::kExitUsage;
  }
  for (const auto& name : options.allowed_unhit) {
    if (!sim::mark_by_name(name)) {
      std::cerr << "keel sim: --allow-unhit: no coverage mark is called '" << name
                << "' (a sweep's coverage table lists them)\n";
      return sim::kExitUsage;
    }
  }
  options.scenario.partitions = flags.partitions == "on";
  options.scenario.crashes = flags.crashes == "on";
  options.scenario.pauses = flags.pauses == "on";
  const int code = sim::run_sim_command(options, std::cout);
  std::cout.flush();
  return code;
}

}  // namespace

void register_sim_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<SimFlags>();
  auto& o = flags->options;
  CLI::App* sim = app.add_subcommand(
      "sim",
      "Run the deterministic simulator: a cluster of ring hosts on a simulated network with "
      "faults, every guarantee checked at every step. One seed replays a run bit for bit.");
  sim->add_option("--seed", o.seed, "Run one seed (default 1), or start a soak at it");
  sim->add_option("--seeds", flags->seeds, "Sweep the seeds A:B (A included, B not)");
  sim->add_option("--hosts", o.scenario.hosts, "Number of hosts (default: chosen by the seed)")
      ->check(CLI::Range(1, static_cast<int>(keel::ring::kMaxNodes)));
  sim->add_option("--steps", o.scenario.max_steps, "Most events processed per run")
      ->check(CLI::PositiveNumber);
  sim->add_option("--time", o.scenario.fault_seconds,
                  "Simulated length of the fault phase in seconds (default: chosen by the seed)")
      ->check(CLI::Range(0.001, 86400.0));
  sim->add_option("--loss", o.scenario.loss, "Packet loss probability, 0..1 (default: seed)")
      ->check(CLI::Range(0.0, 1.0));
  sim->add_option("--dup", o.scenario.duplicate, "Packet duplication probability, 0..1")
      ->check(CLI::Range(0.0, 1.0));
  const auto on_off = CLI::IsMember({"on", "off"});
  sim->add_option("--partitions", flags->partitions, "Partitions, one-way cuts, flapping links")
      ->check(on_off);
  sim->add_option("--crashes", flags->crashes, "Host crashes and restarts")->check(on_off);
  sim->add_option("--pauses", flags->pauses, "Host pauses (stopped clock)")->check(on_off);
  sim->add_option("--soak", o.soak_seconds,
                  "Run consecutive seeds until this many wall-clock seconds have passed")
      ->check(CLI::PositiveNumber);
  sim->add_flag(
      "--require-coverage", o.require_coverage,
      "Sweeps and soaks: exit with status 3 and name the coverage marks that no seed hit");
  sim->add_option("--allow-unhit", o.allowed_unhit,
                  "With --require-coverage: a mark that may stay unhit (repeat for more)")
      ->allow_extra_args(false)
      ->needs("--require-coverage");
  sim->add_flag("--trace", o.trace, "Print every event");
  sim->add_flag("--timing", o.timing, "Print wall-clock steps per second (output then varies)");
  sim->add_flag("--demo", o.demo, "A narrated, scripted run of five hosts");
  sim->add_flag("--figures", o.figures,
                "Failover time and throughput per token rotation for 3, 5 and 16 hosts");
  sim->add_flag("--vip", flags->vip,
                "Simulate floating IPs (ring + groups + vip placement on every host); takes "
                "--seed, --seeds, --hosts and --trace");
  sim->add_flag("--volume", flags->volume,
                "Simulate a mirrored volume (two replicas and a witness, disk caches, crashes, "
                "failover); takes --seed, --seeds and --trace");
  sim->add_flag("--large-volumes", flags->large_volumes,
                "With --volume: a quarter of the runs on volumes of 2 to 8 activity-log extents "
                "(the log holds 4), so that extents leave the log (docs/volume.md: known open "
                "case)")
      ->needs("--volume");
  sim->add_flag("--witness-crashes", flags->witness_crashes,
                "With --volume: a fifth of the runs crash the witness's agent once or twice; it "
                "restarts with the outdate records its file held")
      ->needs("--volume");
  sim->get_option("--vip")->excludes("--volume");
  sim->get_option("--seed")->excludes("--seeds");
  sim->get_option("--demo")->excludes("--seeds")->excludes("--figures");
  sim->get_option("--require-coverage")->excludes("--demo")->excludes("--figures");
  sim->callback([flags, &exit_code] { exit_code = run(*flags); });
}

}  // namespace keel::cli
