// VolumeThread: the volume's own event loop, and how the agent reaches it.
#include "agent/volume_thread.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>

namespace keel::agent {
namespace {

TEST(VolumeThread, CallRunsOnTheThreadAndReturnsItsResult) {
  VolumeThread thread("data");
  thread.start();
  const auto caller = std::this_thread::get_id();
  auto answer = thread.call<Result<int>>([caller]() -> Result<int> {
    if (std::this_thread::get_id() == caller) return Error{"ran on the caller's thread"};
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    return std::string(name) == "vol-data" ? 42 : -1;
  });
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_EQ(answer.value(), 42);
  thread.stop([] {});
}

TEST(VolumeThread, ACallThatMissesItsDeadlineIsAnErrorAndStillRunsLater) {
  VolumeThread thread("slow");
  thread.start();
  std::promise<void> release;
  auto released = release.get_future().share();
  thread.post([released] { released.wait(); });  // the thread is busy until released
  auto ran = std::make_shared<std::atomic<bool>>(false);
  auto answer = thread.call<Result<Ok>>(
      [ran]() -> Result<Ok> {
        ran->store(true);
        return Ok{};
      },
      std::chrono::milliseconds(50));
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.error().message.find("did not answer within 50 ms"), std::string::npos);
  EXPECT_FALSE(ran->load());
  release.set_value();
  bool last_ran = false;
  thread.stop([&] { last_ran = true; });
  EXPECT_TRUE(last_ran);
  EXPECT_TRUE(ran->load());  // queued before stop's last step, so it ran first
}

// A thread stuck on its disk does not hold up the caller's stop: request_stop() returns at once,
// wait_stopped() says it has not closed, and it closes (and joins) once the disk answers.
TEST(VolumeThread, AStopRequestDoesNotWaitForAStalledThread) {
  VolumeThread thread("stalled");
  thread.start();
  std::promise<void> disk_answers;
  std::shared_future<void> answered = disk_answers.get_future().share();
  thread.post([answered] { answered.wait(); });  // a write the disk does not finish
  std::atomic<bool> closed{false};
  thread.request_stop([&closed] { closed = true; });
  EXPECT_FALSE(thread.wait_stopped(std::chrono::milliseconds(50)));
  EXPECT_FALSE(closed);
  disk_answers.set_value();
  EXPECT_TRUE(thread.wait_stopped(std::chrono::seconds(10)));
  EXPECT_TRUE(closed);
  thread.stop([] { ADD_FAILURE() << "closed twice"; });
}

TEST(VolumeThread, CallsAfterStopAreRefusedAtOnce) {
  VolumeThread thread("gone");
  thread.start();
  thread.stop([] {});
  const auto started = std::chrono::steady_clock::now();
  auto answer = thread.call<Result<Ok>>([]() -> Result<Ok> { return Ok{}; });
  EXPECT_FALSE(answer.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
}

TEST(VolumeThread, AskHandsTheResultBackToTheAskersLoop) {
  VolumeThread thread("data");
  thread.start();
  asio::io_context agent;
  const auto agent_thread = std::this_thread::get_id();
  std::optional<Result<int>> answer;
  bool on_agent_thread = false;
  thread.ask<Result<int>>(
      agent,
      [agent_thread]() -> Result<int> {
        if (std::this_thread::get_id() == agent_thread) return Error{"ran on the asker's thread"};
        return 42;
      },
      [&](Result<int> result) {
        on_agent_thread = std::this_thread::get_id() == agent_thread;
        answer = std::move(result);
      });
  EXPECT_FALSE(answer.has_value());  // never from inside ask()
  agent.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(answer.has_value());
  ASSERT_TRUE(answer->ok()) << answer->error().message;
  EXPECT_EQ(answer->value(), 42);
  EXPECT_TRUE(on_agent_thread);
  thread.stop([] {});
}

TEST(VolumeThread, AnAskThatMissesItsDeadlineIsAnErrorOnceAndTheLateResultIsDropped) {
  VolumeThread thread("slow");
  thread.start();
  std::promise<void> release;
  thread.post([released = release.get_future().share()] { released.wait(); });
  asio::io_context agent;
  int answers = 0;
  std::string error;
  const auto asked = std::chrono::steady_clock::now();
  thread.ask<Result<Ok>>(
      agent, []() -> Result<Ok> { return Ok{}; },
      [&](Result<Ok> result) {
        ++answers;
        if (!result.ok()) error = result.error().message;
      },
      std::chrono::milliseconds(50));
  while (answers == 0 && agent.run_one_for(std::chrono::seconds(5))) {
  }
  EXPECT_GE(std::chrono::steady_clock::now() - asked, std::chrono::milliseconds(50));
  EXPECT_EQ(answers, 1);
  EXPECT_NE(error.find("did not answer within 50 ms"), std::string::npos) << error;
  release.set_value();
  thread.stop([] {});  // the ask's function ran before this; its result is queued on `agent`
  agent.restart();
  agent.run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(answers, 1);
}

TEST(VolumeThread, AsksAfterStopAreRefusedWithoutWaiting) {
  VolumeThread thread("gone");
  thread.start();
  thread.stop([] {});
  asio::io_context agent;
  std::optional<Result<Ok>> answer;
  thread.ask<Result<Ok>>(
      agent, []() -> Result<Ok> { return Ok{}; }, [&](Result<Ok> result) { answer = result; });
  agent.run_for(std::chrono::seconds(1));
  ASSERT_TRUE(answer.has_value());
  EXPECT_FALSE(answer->ok());
}

}  // namespace
}  // namespace keel::agent
