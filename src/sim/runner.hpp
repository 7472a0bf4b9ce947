// The `keel sim` command's work, apart from parsing: one run, a sweep over seeds, a soak, the
// narrated demo and the figures. Everything is written to the stream handed in, and the output of
// every mode except --soak and --timing is a pure function of the options (byte for byte).
//
// Thread-safety: none; one call runs to completion.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "sim/scenario.hpp"

namespace keel::sim {

struct SimCommandOptions {
  std::optional<std::uint64_t> seed;         // one run (or the first seed of a soak)
  std::optional<std::uint64_t> seeds_begin;  // a sweep over [seeds_begin, seeds_end)
  std::optional<std::uint64_t> seeds_end;
  ScenarioOptions scenario;
  std::optional<double> soak_seconds;  // consecutive seeds until this much wall time passed
  bool trace = false;                  // print every event
  bool timing = false;                 // print wall-clock steps per second
  bool demo = false;
  bool figures = false;
  // Sweeps and soaks: fail (kExitCoverageMissing) when some coverage mark was hit by no seed,
  // except the marks named in allowed_unhit.
  bool require_coverage = false;
  std::vector<std::string> allowed_unhit;
};

constexpr int kExitOk = 0;
constexpr int kExitViolation = 1;        // some run broke a guarantee
constexpr int kExitUsage = 2;            // bad options
constexpr int kExitCoverageMissing = 3;  // --require-coverage: a mark no seed reached

// Runs the command; returns the process exit code (kExitOk, kExitViolation or, with
// require_coverage and no violation, kExitCoverageMissing).
int run_sim_command(const SimCommandOptions& options, std::ostream& out);

// The coverage mark named `name`, or nothing.
std::optional<ring::Mark> mark_by_name(const std::string& name);

// The options that change a run, as command-line text (" --hosts 5 --loss 0.1 ..."), for replay.
std::string scenario_flags(const ScenarioOptions& options);

// demo.cpp and figures.cpp
int run_demo(std::ostream& out);
int run_figures(std::ostream& out);

}  // namespace keel::sim
