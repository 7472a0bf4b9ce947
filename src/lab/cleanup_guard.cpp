#include "lab/cleanup_guard.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include "lab/lab.hpp"
#include "lab/process.hpp"

namespace keel::lab {

namespace {

constexpr char kDisarm = 'k';

// Blocks until the owner disarms (true) or its end of the pipe closes (false).
bool wait_for_owner() {
  char byte = 0;
  while (true) {
    const ssize_t got = ::read(0, &byte, 1);
    if (got == 1 && byte == kDisarm) return true;
    if (got == 0) return false;
    if (got < 0 && errno != EINTR) return false;
  }
}

}  // namespace

Result<CleanupGuard> CleanupGuard::arm(const std::string& keel_binary, const std::string& lab_dir) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return Error{std::string("pipe: ") + std::strerror(errno)};
  auto process = spawn({keel_binary, "lab", "guard", "--dir", lab_dir},
                       SpawnOptions{lab_dir + "/guard.log", ends[0], true});
  ::close(ends[0]);
  if (!process) {
    ::close(ends[1]);
    return process.error();
  }
  // The first process only forks the real guard and exits.
  int status = 0;
  while (::waitpid(process.value().pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::close(ends[1]);
    return Error{"the lab's cleanup guard did not start (see " + lab_dir + "/guard.log)"};
  }
  return CleanupGuard(ends[1]);
}

CleanupGuard& CleanupGuard::operator=(CleanupGuard&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

CleanupGuard::~CleanupGuard() {
  if (fd_ >= 0) ::close(fd_);
}

void CleanupGuard::disarm() {
  if (fd_ < 0) return;
  const char byte = kDisarm;
  while (::write(fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  ::close(fd_);
  fd_ = -1;
}

int run_cleanup_guard(const std::string& lab_dir) {
  // Leave the owner's process tree: the first process exits, its child carries on under init.
  const pid_t child = ::fork();
  if (child < 0) return 1;
  if (child > 0) return 0;
  ::setsid();
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  if (wait_for_owner()) ::_exit(0);
  auto lab = Lab::open(lab_dir);
  if (!lab) ::_exit(0);  // already removed, directory and all
  auto down = lab.value().down(false);
  {
    std::ofstream log(lab_dir + "/guard.log", std::ios::app);
    log << "keel lab guard: owner gone; lab " << lab.value().state().prefix << " torn down"
        << (down ? "" : ": " + down.error().message) << "\n";
  }  // closed (flushed) here: _exit skips destructors
  ::_exit(down ? 0 : 1);
}

}  // namespace keel::lab
