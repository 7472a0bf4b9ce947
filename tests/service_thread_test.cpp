// ServiceThread: a service's own event loop, and how the agent reaches it.
#include "agent/service_thread.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>

namespace keel::agent {
namespace {

TEST(ServiceThread, CallRunsOnTheThreadAndReturnsItsResult) {
  ServiceThread thread(volume_thread_options("data", 0));
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

TEST(ServiceThread, ACallThatMissesItsDeadlineIsAnErrorAndStillRunsLater) {
  ServiceThread thread(volume_thread_options("slow", 0));
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
TEST(ServiceThread, AStopRequestDoesNotWaitForAStalledThread) {
  ServiceThread thread(volume_thread_options("stalled", 0));
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

TEST(ServiceThread, CallsAfterStopAreRefusedAtOnce) {
  ServiceThread thread(volume_thread_options("gone", 0));
  thread.start();
  thread.stop([] {});
  const auto started = std::chrono::steady_clock::now();
  auto answer = thread.call<Result<Ok>>([]() -> Result<Ok> { return Ok{}; });
  EXPECT_FALSE(answer.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
}

TEST(ServiceThread, AskHandsTheResultBackToTheAskersLoop) {
  ServiceThread thread(volume_thread_options("data", 0));
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

TEST(ServiceThread, AnAskThatMissesItsDeadlineIsAnErrorOnceAndTheLateResultIsDropped) {
  ServiceThread thread(volume_thread_options("slow", 0));
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

TEST(ServiceThread, AsksAfterStopAreRefusedWithoutWaiting) {
  ServiceThread thread(volume_thread_options("gone", 0));
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

namespace keel::agent {
namespace {

struct Scheduling {
  int policy = -1;  // without SCHED_RESET_ON_FORK
  int priority = -1;
  bool reset_on_fork = false;
};

// The scheduling of a thread of `options` started from a thread at real-time priority `creator`
// with SCHED_RESET_ON_FORK, as `keel agent` runs its loop; nullopt if that priority cannot be had.
std::optional<Scheduling> started_from_real_time(const ServiceThreadOptions& options,
                                                 int creator = 1) {
  std::optional<Scheduling> seen;
  std::thread creator_thread([&] {
    sched_param real_time{};
    real_time.sched_priority = creator;
    if (::sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &real_time) != 0) return;
    ServiceThread thread(options);
    thread.start();
    auto answer = thread.call<Result<Scheduling>>([]() -> Result<Scheduling> {
      Scheduling now;
      sched_param parameters{};
      const int policy = ::sched_getscheduler(0);
      if (policy < 0 || ::sched_getparam(0, &parameters) != 0) return Error{"cannot read it"};
      now.policy = policy & ~SCHED_RESET_ON_FORK;
      now.reset_on_fork = (policy & SCHED_RESET_ON_FORK) != 0;
      now.priority = parameters.sched_priority;
      return now;
    });
    thread.stop([] {});
    if (answer.ok()) seen = answer.value();
  });
  creator_thread.join();
  return seen;
}

// The floating IPs' thread runs one real-time step below the agent's loop: a failover waits for
// it, so a CPU hog must not hold it up, but the token comes first. What it spawns (hooks, checks)
// must not inherit it. A volume's thread runs at ordinary priority.
TEST(ServiceThread, RunsAtItsCreatorsPriorityOnlyWhenAskedTo) {
  const auto vip = started_from_real_time(vip_thread_options());
  if (!vip) GTEST_SKIP() << "this process may not take a real-time priority";
  EXPECT_EQ(vip->policy, SCHED_RR);
  EXPECT_EQ(vip->priority, 1);  // no lower real-time step
  EXPECT_TRUE(vip->reset_on_fork);
  const auto below = started_from_real_time(vip_thread_options(), 10);  // the agent's default
  ASSERT_TRUE(below.has_value());
  EXPECT_EQ(below->policy, SCHED_RR);
  EXPECT_EQ(below->priority, 9);
  EXPECT_TRUE(below->reset_on_fork);
  const auto volume = started_from_real_time(volume_thread_options("data", 0));
  ASSERT_TRUE(volume.has_value());
  EXPECT_EQ(volume->policy, SCHED_OTHER);
  EXPECT_EQ(volume->priority, 0);
}

}  // namespace
}  // namespace keel::agent
