// Running other programs for the lab, never through a shell: argument vectors go to posix_spawn,
// exit codes are checked and a failing tool's stderr ends up in the error message.
//
// Long-running processes (agents, listeners) are spawned detached into their own session with
// their output in a file. They are named by a ProcessId: the pid together with the process's
// start time from /proc, so that a pid the kernel has since handed to another process is never
// signalled (the lab is torn down by whichever process runs `keel lab down`, maybe much later).
//
// Thread-safety: the functions are safe to call from several threads; every file descriptor
// they open is close-on-exec, so concurrent spawns do not leak pipes into each other's children.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/common/result.hpp"

namespace keel::lab {

using Milliseconds = std::chrono::milliseconds;

struct CommandResult {
  int exit_code = 0;  // the exit status, or 128 + signal number if a signal ended it
  std::string out;
  std::string err;
};

// Runs `argv` (looked up in PATH) to completion with stdin on /dev/null, capturing its output.
// An Error only if it could not be started or ran past `timeout` (it is then killed).
Result<CommandResult> run_capture(const std::vector<std::string>& argv, Milliseconds timeout);

// Like run_capture, but a non-zero exit is an Error quoting the command and its stderr. Returns
// the command's stdout.
Result<std::string> run_checked(const std::vector<std::string>& argv,
                                Milliseconds timeout = Milliseconds{30000});

// "ip link add ..." for messages: the arguments joined by spaces.
std::string describe_command(const std::vector<std::string>& argv);

struct ProcessId {
  int pid = 0;
  std::uint64_t start_time = 0;  // /proc/PID/stat field 22, clock ticks after boot

  bool valid() const { return pid > 0; }
  bool operator==(const ProcessId&) const = default;
};

struct SpawnOptions {
  std::string output_path;  // stdout and stderr appended here; empty: /dev/null
  int stdin_fd = -1;        // becomes the child's stdin; -1: /dev/null
  bool new_session = true;  // setsid(): no terminal signals from the parent's session
};

// Starts `argv` in the background and returns its id; the caller reaps it (is_running does).
Result<ProcessId> spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// The start time of `pid` from /proc, or nothing if no such process exists.
std::optional<std::uint64_t> process_start_time(int pid);

// True while the process exists, is the one named (same start time) and is not a zombie with
// every thread gone: a process whose main thread has exited runs until its last thread has. A
// zombie child of this process is reaped on the way.
bool is_running(const ProcessId& process);

// Sends `signal` if the process is still the one named; false if it is gone.
bool send_signal(const ProcessId& process, int signal);

// Waits until the process has gone (reaping it if it is our child); false at the deadline.
bool wait_gone(const ProcessId& process, Milliseconds timeout);

// SIGTERM to every running process, SIGKILL to those still there after `grace`, then waits for
// them to go. A stopped process is continued after SIGTERM so that it can act on it.
void terminate_all(const std::vector<ProcessId>& processes, Milliseconds grace);

// The effective user is root (the lab needs CAP_NET_ADMIN and CAP_SYS_ADMIN).
bool running_as_root();

}  // namespace keel::lab
