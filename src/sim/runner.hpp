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
};

// Runs the command; returns the process exit code (0: every run passed, 1: a violation).
int run_sim_command(const SimCommandOptions& options, std::ostream& out);

// The options that change a run, as command-line text (" --hosts 5 --loss 0.1 ..."), for replay.
std::string scenario_flags(const ScenarioOptions& options);

// demo.cpp and figures.cpp
int run_demo(std::ostream& out);
int run_figures(std::ostream& out);

}  // namespace keel::sim
