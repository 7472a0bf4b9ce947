// VolumeThread: the volume's own event loop, and how the agent reaches it.
#include "agent/volume_thread.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <future>
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

TEST(VolumeThread, CallsAfterStopAreRefusedAtOnce) {
  VolumeThread thread("gone");
  thread.start();
  thread.stop([] {});
  const auto started = std::chrono::steady_clock::now();
  auto answer = thread.call<Result<Ok>>([]() -> Result<Ok> { return Ok{}; });
  EXPECT_FALSE(answer.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
}

}  // namespace
}  // namespace keel::agent
