#include "lab/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "io/child_spawn.hpp"
#include "io/errno_text.hpp"
#include "io/unique_fd.hpp"

namespace keel::lab {

namespace {

using Clock = std::chrono::steady_clock;
using io::errno_text;
using Fd = io::UniqueFd;

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// Reads both pipes until they close or the deadline passes; false at the deadline.
bool drain_pipes(int out_fd, int err_fd, CommandResult& result, Clock::time_point deadline) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buffer[4096];
  while (open_count > 0) {
    const auto left = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    const int ready = ::poll(fds, 2, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) return false;
    for (int i = 0; i < 2 && ready > 0; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  return true;
}

struct ProcStat {
  char state = '?';
  int parent = 0;
  std::uint64_t start_time = 0;
};

std::optional<ProcStat> read_proc_stat(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!file || !std::getline(file, line)) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields follow the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  ProcStat stat;
  std::string skip;
  fields >> stat.state >> stat.parent;
  for (int field = 5; field < 22 && fields; ++field) fields >> skip;  // fields 5..21
  fields >> stat.start_time;
  if (!fields) return std::nullopt;
  return stat;
}

}  // namespace

std::string describe_command(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& arg : argv) {
    if (!text.empty()) text += ' ';
    text += arg;
  }
  return text;
}

Result<CommandResult> run_capture(const std::vector<std::string>& argv, Milliseconds timeout) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Error{"pipe: " + errno_text(errno)};
  Fd out_read(out_pipe[0]);
  Fd out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return Error{"pipe: " + errno_text(errno)};
  Fd err_read(err_pipe[0]);
  Fd err_write(err_pipe[1]);

  // Children start with no blocked signals and default dispositions for the usual ones, whatever
  // this process (a test runner, a CLI waiting on Ctrl-C) did with its own.
  io::ChildSpawn setup({.close_other_descriptors = false});
  posix_spawn_file_actions_addopen(setup.file_actions(), 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(setup.file_actions(), out_write.get(), 1);
  posix_spawn_file_actions_adddup2(setup.file_actions(), err_write.get(), 2);
  auto pid = setup.spawn(argv);
  if (!pid) return pid.error();
  out_write.reset();
  err_write.reset();

  CommandResult result;
  const bool finished = drain_pipes(out_read.get(), err_read.get(), result, Clock::now() + timeout);
  if (!finished) ::kill(pid.value(), SIGKILL);
  int status = 0;
  while (::waitpid(pid.value(), &status, 0) < 0 && errno == EINTR) {
  }
  if (!finished) {
    return Error{describe_command(argv) + ": no answer within " + std::to_string(timeout.count()) +
                 " ms (killed)"};
  }
  result.exit_code = decode_status(status);
  return result;
}

Result<std::string> run_checked(const std::vector<std::string>& argv, Milliseconds timeout) {
  auto result = run_capture(argv, timeout);
  if (!result) return result.error();
  if (result.value().exit_code != 0) {
    std::string err = result.value().err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return Error{describe_command(argv) + " failed (exit " +
                 std::to_string(result.value().exit_code) + ")" + (err.empty() ? "" : ": " + err)};
  }
  return std::move(result.value().out);
}

Result<ProcessId> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  io::ChildSpawn setup({.new_session = options.new_session, .close_other_descriptors = false});
  if (options.stdin_fd >= 0) {
    posix_spawn_file_actions_adddup2(setup.file_actions(), options.stdin_fd, 0);
  } else {
    posix_spawn_file_actions_addopen(setup.file_actions(), 0, "/dev/null", O_RDONLY, 0);
  }
  const std::string output = options.output_path.empty() ? "/dev/null" : options.output_path;
  posix_spawn_file_actions_addopen(setup.file_actions(), 1, output.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(setup.file_actions(), 1, 2);
  auto pid = setup.spawn(argv);
  if (!pid) return pid.error();
  // glibc's posix_spawn returns once the child has called exec, so its /proc entry exists (as a
  // zombie at worst) and exec does not change its start time.
  ProcessId id{pid.value(), process_start_time(pid.value()).value_or(0)};
  if (id.start_time == 0) {
    int status = 0;
    ::waitpid(id.pid, &status, 0);
    return Error{describe_command(argv) + " exited at once (status " +
                 std::to_string(decode_status(status)) + ")"};
  }
  return id;
}

std::optional<std::uint64_t> process_start_time(int pid) {
  auto stat = read_proc_stat(pid);
  if (!stat) return std::nullopt;
  return stat->start_time;
}

namespace {

// How many threads /proc lists for `pid` (its zombie main thread included); 0 if none.
std::size_t threads_of(int pid) {
  std::error_code error;
  std::size_t count = 0;
  for (std::filesystem::directory_iterator task("/proc/" + std::to_string(pid) + "/task", error),
       end;
       !error && task != end; task.increment(error)) {
    ++count;
  }
  return count;
}

}  // namespace

bool is_running(const ProcessId& process) {
  if (!process.valid()) return false;
  auto stat = read_proc_stat(process.pid);
  if (!stat || stat->start_time != process.start_time) return false;
  if (stat->state != 'Z' && stat->state != 'X') return true;
  // A zombie main thread may still have threads exiting behind it (a killed agent's), and those
  // hold the process's files: its sockets stay bound until the last one is gone. Only then can a
  // child be reaped, and only then does /proc list the main thread alone.
  if (stat->parent == ::getpid()) {
    pid_t reaped = 0;
    do {
      reaped = ::waitpid(process.pid, nullptr, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    return reaped == 0;
  }
  return threads_of(process.pid) > 1;
}

bool send_signal(const ProcessId& process, int signal) {
  if (!is_running(process)) return false;
  return ::kill(process.pid, signal) == 0;
}

bool wait_gone(const ProcessId& process, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (is_running(process)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Milliseconds{5});
  }
  return true;
}

void terminate_all(const std::vector<ProcessId>& processes, Milliseconds grace) {
  for (const auto& process : processes) {
    if (send_signal(process, SIGTERM)) send_signal(process, SIGCONT);
  }
  const auto deadline = Clock::now() + grace;
  for (const auto& process : processes) {
    const auto left = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now());
    if (wait_gone(process, std::max(left, Milliseconds{0}))) continue;
    send_signal(process, SIGKILL);
    wait_gone(process, Milliseconds{5000});
  }
}

bool running_as_root() { return ::geteuid() == 0; }

}  // namespace keel::lab
