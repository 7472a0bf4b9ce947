// How the agent starts another program (an exec health check, a floating-IP hook): posix_spawn
// with the child reset to what a program expects, whatever the agent's thread had set.
//
// - No signal blocked, and the usual ones (INT, TERM, HUP, QUIT, PIPE, CHLD, USR1, USR2) at their
//   default action.
// - Ordinary scheduling (SCHED_OTHER, nice as the agent's): the agent's ring thread runs at
//   real-time priority, and a child would otherwise inherit it, so that a busy check or hook
//   could starve the host, the agent's own ring included.
// - None of the agent's descriptors past stderr (its ring and control sockets, netlink, the
//   journal), whether or not they were opened close-on-exec: a child that lingers, or starts a
//   daemon, would otherwise keep them, and with them the agent's ports after it exited.
// - Optionally, standard streams on /dev/null, a process group of its own (so that a check
//   that overruns its timeout can be killed with its children) or a session of its own, and
//   redirections of the caller's (file_actions(), done before the other descriptors close).
//
// Thread-safety: one ChildSpawn per thread (posix_spawn's attribute objects are not shared).
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "core/common/result.hpp"

namespace keel::io {

struct ChildSpawnOptions {
  bool null_standard_streams = false;  // else the agent's stdin, stdout and stderr
  bool own_process_group = false;
  bool new_session = false;
  bool close_other_descriptors = true;  // all past stderr
};

class ChildSpawn {
 public:
  explicit ChildSpawn(ChildSpawnOptions options);
  ~ChildSpawn();
  ChildSpawn(const ChildSpawn&) = delete;
  ChildSpawn& operator=(const ChildSpawn&) = delete;

  // For redirections of the standard streams (posix_spawn_file_actions_adddup2, _addopen).
  posix_spawn_file_actions_t* file_actions() { return &actions_; }

  // Runs argv[0] (searched in PATH) with `environment` (null: the agent's own). The error names
  // the program.
  Result<pid_t> spawn(const std::vector<std::string>& argv, char* const* environment = nullptr);

 private:
  posix_spawnattr_t attributes_;
  posix_spawn_file_actions_t actions_;
  bool close_other_descriptors_;
};

}  // namespace keel::io
