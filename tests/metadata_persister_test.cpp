// MetadataPersister (src/agent/metadata_persister.hpp): a failed metadata write is retried until
// it succeeds, later jobs wait behind it, and stop() ends a job that keeps failing.
#include "agent/metadata_persister.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <vector>

namespace keel::agent {
namespace {

using std::chrono::milliseconds;

TEST(MetadataPersister, RetriesAFailedJobAndKeepsTheOrder) {
  MetadataPersister persister(milliseconds(5));
  std::mutex mutex;
  std::vector<std::string> events;
  const auto note = [&](const std::string& event) {
    std::lock_guard lock(mutex);
    events.push_back(event);
  };
  int failures_left = 2;
  std::promise<void> second_done;
  persister.submit(
      [&]() -> Result<Ok> {
        if (failures_left-- > 0) return Error{"no space left on device"};
        return Ok{};
      },
      [&](const std::string& why, int attempt) {
        note("failed " + std::to_string(attempt) + ": " + why);
      },
      [&] { note("first done"); });
  persister.submit([]() -> Result<Ok> { return Ok{}; }, [&](const std::string&, int) { note("?"); },
                   [&] {
                     note("second done");
                     second_done.set_value();
                   });
  ASSERT_EQ(second_done.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  persister.stop();
  EXPECT_EQ(events, (std::vector<std::string>{"failed 1: no space left on device",
                                              "failed 2: no space left on device", "first done",
                                              "second done"}));
}

TEST(MetadataPersister, StopEndsAJobThatKeepsFailing) {
  MetadataPersister persister(std::chrono::hours(1));
  std::atomic<int> attempts{0};
  std::atomic<bool> done{false};
  std::promise<void> failed_once;
  persister.submit([]() -> Result<Ok> { return Error{"input/output error"}; },
                   [&](const std::string&, int attempt) {
                     if (++attempts == 1) failed_once.set_value();
                     (void)attempt;
                   },
                   [&] { done = true; });
  // Queued behind the failing job: must not run once it gives up (a later state would go to
  // disk without the earlier job's pages).
  std::atomic<bool> later_ran{false};
  persister.submit(
      [&]() -> Result<Ok> {
        later_ran = true;
        return Ok{};
      },
      [](const std::string&, int) {}, [] {});
  ASSERT_EQ(failed_once.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const auto start = std::chrono::steady_clock::now();
  persister.stop();  // would wait an hour for the retry if stop() did not wake it
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_FALSE(done.load());
  EXPECT_FALSE(later_ran.load());
}

}  // namespace
}  // namespace keel::agent
