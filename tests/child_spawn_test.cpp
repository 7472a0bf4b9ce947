// ChildSpawn: a program the agent starts does not inherit the ring thread's real-time priority,
// its blocked signals or its descriptors.
#include "io/child_spawn.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <thread>

#include "agent_test_support.hpp"
#include "file_test_support.hpp"

namespace keel::io {
namespace {

using keel::testing::read_file;

// Runs `probe` (a shell command whose output goes to a file) from a thread that runs at
// real-time priority with SIGTERM and SIGUSR1 blocked and an extra descriptor open, as the
// agent's ring thread may; returns what it printed.
std::string run_from_a_real_time_thread(const std::string& probe, ChildSpawnOptions options,
                                        bool& real_time) {
  agent::testing::TempDir dir;
  const std::string out = dir.file("out");
  std::string printed;
  std::thread thread([&] {
    sched_param high{};
    high.sched_priority = 1;
    real_time = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &high) == 0;
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
    const int extra = ::open("/dev/null", O_RDONLY);  // without O_CLOEXEC, on purpose
    ChildSpawn spawner(options);
    auto pid = spawner.spawn({"/bin/sh", "-c", "exec > " + out + "; " + probe});
    ::close(extra);
    if (!pid.ok()) {
      ADD_FAILURE() << pid.error().message;
      return;
    }
    int status = 0;
    ::waitpid(pid.value(), &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printed = read_file(out);
  });
  thread.join();
  return printed;
}

TEST(ChildSpawn, TheChildRunsWithOrdinaryPriorityAndNoBlockedSignals) {
  bool real_time = false;
  const std::string printed = run_from_a_real_time_thread(
      // policy (field 41 of stat: 0 is SCHED_OTHER) and blocked signals of a program the shell
      // runs (they are inherited; the shell's own mask changes while it forks), open
      // descriptors of the shell (its glob opens the directory as the lowest free one, 3)
      "cut -d' ' -f41 /proc/self/stat; grep SigBlk /proc/self/status; cd /proc/$$/fd && echo *", {},
      real_time);
  if (!real_time) GTEST_SKIP() << "this process may not use SCHED_FIFO here";
  EXPECT_EQ(printed, "0\nSigBlk:\t0000000000000000\n0 1 2 3\n")
      << "(policy, blocked signals, descriptors)";
}

TEST(ChildSpawn, AnOwnGroupAndNullStreamsWhenAsked) {
  bool real_time = false;
  const std::string printed = run_from_a_real_time_thread(
      "ps -o pgid= -p $$ | tr -d ' '; echo $$; readlink /proc/$$/fd/0",
      {.null_standard_streams = true, .own_process_group = true}, real_time);
  const auto first = printed.find('\n');
  ASSERT_NE(first, std::string::npos) << printed;
  const auto second = printed.find('\n', first + 1);
  ASSERT_NE(second, std::string::npos) << printed;
  EXPECT_EQ(printed.substr(0, first), printed.substr(first + 1, second - first - 1))
      << "the child leads its own process group";
  EXPECT_EQ(printed.substr(second + 1), "/dev/null\n");
}

TEST(ChildSpawn, AMissingProgramIsNamed) {
  ChildSpawn spawner({});
  auto pid = spawner.spawn({"keel-no-such-program"});
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.error().message.find("cannot run keel-no-such-program"), std::string::npos);
}

}  // namespace
}  // namespace keel::io
