// CleanupGuard: a separate process that tears a lab down when the process that owns the lab goes
// away without doing it, however it goes: an exception, Ctrl-C, SIGTERM, SIGKILL, a crash, or a
// test runner killing the whole process tree at a timeout.
//
// arm() starts `keel lab guard --dir LAB`, which detaches (new session, then a fork so that it is
// no longer a descendant of the owner) and blocks reading its stdin, the read end of a pipe whose
// write end only the owner holds (close-on-exec, so no other child inherits it). When the owner
// exits the pipe closes and the guard runs Lab::down on the lab (keeping its directory and logs).
// disarm() tells the guard to leave the lab alone (`keel lab up` disarms once the lab is built;
// a test disarms after its own teardown succeeded). Destroying an armed guard's handle closes the
// pipe, so the guard tears down then: harmless, since down() is idempotent.
//
// Thread-safety: none.
#pragma once

#include <string>

#include "core/common/result.hpp"

namespace keel::lab {

class CleanupGuard {
 public:
  static Result<CleanupGuard> arm(const std::string& keel_binary, const std::string& lab_dir);

  CleanupGuard(CleanupGuard&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  CleanupGuard& operator=(CleanupGuard&& other) noexcept;
  CleanupGuard(const CleanupGuard&) = delete;
  CleanupGuard& operator=(const CleanupGuard&) = delete;
  ~CleanupGuard();

  void disarm();

 private:
  explicit CleanupGuard(int fd) : fd_(fd) {}
  int fd_ = -1;  // write end of the pipe
};

// The guard's side, run by `keel lab guard --dir LAB`: detaches, waits, tears down. Returns the
// exit code for the first process (the detached one reports to LAB/guard.log).
int run_cleanup_guard(const std::string& lab_dir);

}  // namespace keel::lab
