// Running programs for the lab (src/lab/process.hpp): argument vectors, exit codes, stderr in
// errors, timeouts, and processes named by pid and start time. No root needed.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>

#include "lab/process.hpp"

namespace keel::lab {
namespace {

using std::chrono::milliseconds;

TEST(LabProcess, CapturesOutputAndExitCode) {
  auto result = run_capture({"echo", "a b", "c"}, milliseconds{5000});
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result.value().exit_code, 0);
  EXPECT_EQ(result.value().out, "a b c\n");  // one argument with a space, never split
  auto failed = run_capture({"false"}, milliseconds{5000});
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed.value().exit_code, 1);
}

TEST(LabProcess, CheckedRunsQuoteTheCommandAndItsStderr) {
  auto result = run_checked({"ls", "/keel-no-such-path"});
  ASSERT_FALSE(result.ok());
  const std::string& message = result.error().message;
  EXPECT_NE(message.find("ls /keel-no-such-path failed (exit 2)"), std::string::npos) << message;
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;
  EXPECT_FALSE(run_checked({"keel-no-such-program"}).ok());
  EXPECT_EQ(run_checked({"printf", "x"}).value(), "x");
}

TEST(LabProcess, KillsWhatOverrunsItsTimeout) {
  auto result = run_capture({"sleep", "5"}, milliseconds{100});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("no answer within 100 ms"), std::string::npos);
}

TEST(LabProcess, SpawnedProcessesAreNamedByPidAndStartTime) {
  char pattern[] = "/tmp/keel-lab-process-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string output = std::string(pattern) + "/out";
  auto process = spawn({"sleep", "30"}, SpawnOptions{output, -1, true});
  ASSERT_TRUE(process.ok()) << process.error().message;
  EXPECT_TRUE(is_running(process.value()));
  EXPECT_EQ(process_start_time(process.value().pid), process.value().start_time);
  EXPECT_EQ(::getsid(process.value().pid), process.value().pid);  // its own session

  ProcessId impostor = process.value();
  impostor.start_time += 1;  // the same pid, another process
  EXPECT_FALSE(is_running(impostor));
  EXPECT_FALSE(send_signal(impostor, SIGKILL));
  EXPECT_TRUE(is_running(process.value()));

  ASSERT_TRUE(send_signal(process.value(), SIGSTOP));
  terminate_all({process.value()}, milliseconds{2000});  // SIGTERM reaches a stopped process too
  EXPECT_FALSE(is_running(process.value()));
  EXPECT_TRUE(wait_gone(process.value(), milliseconds{0}));
  ::unlink(output.c_str());
  ::rmdir(pattern);
}

TEST(LabProcess, SpawnWritesOutputToItsFile) {
  char pattern[] = "/tmp/keel-lab-process-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string output = std::string(pattern) + "/out";
  auto process = spawn({"ls", "/keel-no-such-path"}, SpawnOptions{output, -1, true});
  ASSERT_TRUE(process.ok());
  EXPECT_TRUE(wait_gone(process.value(), milliseconds{5000}));
  FILE* file = std::fopen(output.c_str(), "r");
  ASSERT_NE(file, nullptr);
  char buffer[256] = {};
  EXPECT_GT(std::fread(buffer, 1, sizeof buffer - 1, file), 0u);  // stderr went there
  std::fclose(file);
  ::unlink(output.c_str());
  ::rmdir(pattern);
}

// The state letter of /proc/PID/stat (of the main thread), or 0.
char main_thread_state(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(file, line);
  const auto end_of_name = line.rfind(')');
  return end_of_name == std::string::npos || end_of_name + 2 >= line.size() ? 0
                                                                            : line[end_of_name + 2];
}

// A process whose main thread exits at once while a second thread runs on for `linger`; as a
// grandchild (reparented away from this process) when `orphaned`. Its pid.
int start_lingering_process(std::chrono::milliseconds linger, bool orphaned) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return -1;
  const pid_t child = ::fork();
  if (child == 0) {
    if (orphaned && ::fork() != 0) ::_exit(0);  // the grandchild goes on, its parent gone
    const int pid = ::getpid();
    (void)!::write(pipe_fds[1], &pid, sizeof pid);
    static long linger_us = 0;
    linger_us = static_cast<long>(linger.count()) * 1000;
    pthread_t lingering;
    ::pthread_create(
        &lingering, nullptr,
        [](void*) -> void* {
          ::usleep(static_cast<useconds_t>(linger_us));
          return nullptr;
        },
        nullptr);
    // This thread alone ends, without unwinding into the test that forked it (pthread_exit
    // would); the process lives on in `lingering` and exits when it returns.
    ::syscall(SYS_exit, 0);
  }
  int pid = -1;
  if (child < 0 || ::read(pipe_fds[0], &pid, sizeof pid) != sizeof pid) pid = -1;
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  if (orphaned && child > 0) ::waitpid(child, nullptr, 0);
  return pid;
}

// A killed agent's main thread may be a zombie while its other threads are still exiting, and
// those keep its sockets bound: the process runs until its last thread is gone, whether it is
// this process's child (reaped then) or not.
TEST(LabProcess, AProcessRunsUntilItsLastThreadHasExited) {
  for (const bool orphaned : {false, true}) {
    SCOPED_TRACE(orphaned ? "not our child" : "our child");
    const auto started = std::chrono::steady_clock::now();
    const int pid = start_lingering_process(milliseconds{400}, orphaned);
    ASSERT_GT(pid, 0);
    const auto start_time = process_start_time(pid);
    ASSERT_TRUE(start_time.has_value());
    const ProcessId process{pid, *start_time};
    while (main_thread_state(pid) != 'Z' &&
           std::chrono::steady_clock::now() - started < milliseconds{300}) {
      std::this_thread::sleep_for(milliseconds{1});
    }
    ASSERT_EQ(main_thread_state(pid), 'Z') << "the main thread did not exit first";
    EXPECT_TRUE(is_running(process));
    EXPECT_TRUE(wait_gone(process, milliseconds{5000}));
    EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds{400});
  }
}

}  // namespace
}  // namespace keel::lab
