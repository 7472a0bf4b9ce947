// The volume benchmark's options and the few helpers every part of it shares: running an
// external tool with a deadline, the interruption flag, reading a process's RSS.
//
// Thread-safety: interrupted() and the helpers are safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/process.hpp"

namespace keel::bench {

using lab::Milliseconds;
using Clock = std::chrono::steady_clock;

struct Options {
  std::uint64_t size = 2ull << 30;  // bytes: the volume, nbdkit's file and the raw file
  int runtime = 15;                 // seconds per time-based fio job
  std::vector<std::string> only{"keel", "nbdkit", "raw"};
  bool skip_ext4 = false;
  // Which measurements to run (seq_write, seq_read, the fio job names, ext4, resync, promote);
  // empty: all of them.
  std::vector<std::string> tests;
  int activity_log_extents = 0;  // keel's volume setting; 0: keel's default (1237)
  int busy_poll_us = -1;         // keel's volume setting; -1: keel's default
  bool write_cache = true;       // keel's volume setting (true is keel's default)
  int resync_rounds = 1;         // resyncs measured, each beside its own dd and link copy
  std::string out;               // JSON lines appended here too
  std::string keel;              // the keel binary
  std::string work_dir;          // temporary files (the random source, nbdkit's and the raw file)
};

bool wanted(const Options& options, const std::string& target);
bool test_wanted(const Options& options, const std::string& test);

// Set by the signal thread on SIGINT, SIGTERM or SIGHUP; every step checks it.
bool interrupted();
void start_signal_thread();

// Runs argv to completion (lab::run_capture); a non-zero exit is an Error with its stderr.
// Returns the command's stdout; `seconds`, if given, gets the wall time it took.
Result<std::string> run_tool(const std::vector<std::string>& argv, Milliseconds timeout,
                             double* seconds = nullptr);

// VmRSS of `pid` in bytes, 0 if unknown.
std::uint64_t rss_bytes(int pid);
// User + system CPU seconds `pid` has used (all its threads), 0 if unknown.
double cpu_seconds(int pid);

double seconds_since(Clock::time_point start);
double mb_per_s(std::uint64_t bytes, double seconds);  // 10^6 bytes per second
double round1(double value);                           // to one decimal, for the report

}  // namespace keel::bench
