#include "io/child_spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <csignal>
#include <utility>

#include "io/errno_text.hpp"

extern char** environ;

namespace keel::io {

ChildSpawn::ChildSpawn(ChildSpawnOptions options)
    : close_other_descriptors_(options.close_other_descriptors) {
  posix_spawnattr_init(&attributes_);
  posix_spawn_file_actions_init(&actions_);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes_, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2}) {
    sigaddset(&defaults, signal);
  }
  posix_spawnattr_setsigdefault(&attributes_, &defaults);
  posix_spawnattr_setschedpolicy(&attributes_, SCHED_OTHER);
  sched_param ordinary{};
  posix_spawnattr_setschedparam(&attributes_, &ordinary);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSCHEDULER;
  if (options.own_process_group) {
    posix_spawnattr_setpgroup(&attributes_, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  if (options.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attributes_, flags);
  if (options.null_standard_streams) {
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
      posix_spawn_file_actions_addopen(&actions_, fd, "/dev/null",
                                       fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0);
    }
  }
}

ChildSpawn::~ChildSpawn() {
  posix_spawn_file_actions_destroy(&actions_);
  posix_spawnattr_destroy(&attributes_);
}

Result<pid_t> ChildSpawn::spawn(const std::vector<std::string>& argv, char* const* environment) {
  if (argv.empty()) return Error{"cannot run an empty command"};
  if (std::exchange(close_other_descriptors_, false)) {
    // Last, after the caller's redirections, which may read descriptors it closes.
    posix_spawn_file_actions_addclosefrom_np(&actions_, STDERR_FILENO + 1);
  }
  std::vector<char*> arguments;
  for (const auto& word : argv) arguments.push_back(const_cast<char*>(word.c_str()));
  arguments.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, arguments[0], &actions_, &attributes_, arguments.data(),
                                 environment ? environment : environ);
  if (error != 0) return Error{"cannot run " + argv[0] + ": " + errno_text(error)};
  return pid;
}

}  // namespace keel::io
