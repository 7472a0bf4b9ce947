// Running programs for the lab (src/lab/process.hpp): argument vectors, exit codes, stderr in
// errors, timeouts, and processes named by pid and start time. No root needed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

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

}  // namespace
}  // namespace keel::lab
