// GuardedLab: a lab that a tool builds for one run (the benchmarks), with the cleanup guard that
// up() arms for it. Its destructor tears the lab down and removes the lab's directory, unless
// keep_logs is set (a run failed, or the user asked to keep them); then it prints where the
// agents' logs are. A tool that kept every directory left one in /tmp for each run.
//
// Thread-safety: none.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "lab/cleanup_guard.hpp"
#include "lab/lab.hpp"

namespace keel::lab {

struct GuardedLab {
  std::optional<CleanupGuard> guard;
  std::optional<Lab> lab;
  bool keep_logs = false;
  std::string owner = "keel";  // names the tool in what the destructor prints

  GuardedLab() = default;
  explicit GuardedLab(std::string owner_name) : owner(std::move(owner_name)) {}
  GuardedLab(const GuardedLab&) = delete;
  GuardedLab& operator=(const GuardedLab&) = delete;
  ~GuardedLab();

  // Builds the lab (Lab::up), arming the guard as soon as its directory is claimed.
  Result<Ok> up(LabOptions options);
  // For LabOptions::on_claimed: arms the guard on the directory up() has just claimed.
  void arm(const std::string& dir, const std::string& keel_binary);
};

}  // namespace keel::lab
