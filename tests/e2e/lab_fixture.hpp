// LabFixture: the e2e tests' lab, built with the same code as `keel lab` (src/lab), removed in
// TearDown, and guarded by a CleanupGuard so that it is removed even if the test process is
// interrupted or killed. A test that cannot build a lab here (not root, no `ip netns`) is skipped
// with the reason.
//
// Thread-safety: GoogleTest runs one test at a time; Traffic has its own threads.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lab/cleanup_guard.hpp"
#include "lab/lab.hpp"
#include "lab/network.hpp"
#include "lab/ring_clients.hpp"

// Asserts that a Result holds a value, printing the expression and the error otherwise.
#define ASSERT_OK(expression)                                                    \
  do {                                                                           \
    const auto result_ = (expression);                                           \
    ASSERT_TRUE(result_.ok()) << #expression << ": " << result_.error().message; \
  } while (false)

namespace keel::lab::testing {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Runs `work` on a thread of its own inside network namespace `netns` (setns changes only the
// calling thread; a socket opened there stays in it). An error if it could not enter.
inline Result<Ok> in_netns(const std::string& netns, const std::function<void()>& work) {
  Result<Ok> entered = Ok{};
  std::thread thread([&] {
    const int fd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      entered = Error{"cannot enter network namespace " + netns + ": " + std::strerror(errno)};
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    work();
  });
  thread.join();
  return entered;
}

inline std::vector<int> host_range(int first, int last) {
  std::vector<int> hosts;
  for (int host = first; host <= last; ++host) hosts.push_back(host);
  return hosts;
}

class LabFixture : public ::testing::Test {
 protected:
  static constexpr const char* kGroup = "t";

  void SetUp() override {
    if (auto reason = lab_unavailable_reason()) GTEST_SKIP() << "no lab here: " << *reason;
  }

  void TearDown() override {
    traffic_.reset();
    listeners_.reset();
    if (!lab_) return;
    const bool failed = HasFailure();
    const std::string prefix = lab_->state().prefix;
    const std::string dir = lab_->dir();
    auto down = lab_->down(!failed);
    EXPECT_TRUE(down.ok()) << (down ? "" : down.error().message);
    if (down && guard_) guard_->disarm();
    auto left = find_lab_objects(LabNames(prefix));
    ASSERT_TRUE(left.ok());
    EXPECT_TRUE(left.value().empty()) << "lab " << prefix << " left kernel objects behind";
    if (failed) std::cout << "[   lab    ] logs kept in " << dir << "\n";
  }

  // Builds a lab (agents or a stand-in) and waits for its ring; arms the cleanup guard first.
  void build(int hosts, std::vector<std::string> stand_in = {}) {
    LabOptions options;
    options.hosts = hosts;
    options.keel_binary = KEEL_BINARY;
    options.stand_in = std::move(stand_in);
    options.formation_timeout = milliseconds{20000};
    options.config = host_config_;
    options.client = client_;
    options.before_agents = options_hook_;
    options.on_claimed = [this](const std::string& dir, const std::string& keel) {
      auto armed = CleanupGuard::arm(keel, dir);
      if (armed) guard_.emplace(std::move(armed.value()));
      EXPECT_TRUE(armed.ok()) << (armed ? "" : armed.error().message);
    };
    auto made = Lab::up(options);
    ASSERT_TRUE(made.ok()) << made.error().message;
    lab_.emplace(std::move(made.value()));
  }

  // build() with agents, then a listener on every host, all joined to kGroup.
  void start_ring(int hosts) {
    ASSERT_NO_FATAL_FAILURE(build(hosts));
    listeners_ = std::make_unique<ListenerSet>(*lab_, kGroup);
    traffic_ = std::make_unique<Traffic>(*lab_, kGroup, milliseconds{100});
    ASSERT_OK(listeners_->start_all(all()));
    wait_joined(all());
  }

  std::vector<int> all() const { return host_range(1, lab_->host_count()); }

  void wait_joined(const std::vector<int>& hosts) {
    auto joined =
        listeners_->wait_until([&] { return listeners_->joined(hosts); }, milliseconds{15000});
    ASSERT_TRUE(joined.ok()) << joined.error().message;
    ASSERT_TRUE(joined.value()) << "listeners did not all join group " << kGroup;
  }

  // Time from `since` until every host in `hosts` is in one view of exactly `hosts`.
  milliseconds wait_view(const std::vector<int>& hosts, Clock::time_point since,
                         milliseconds timeout = milliseconds{15000}) {
    auto took = listeners_->wait_converged(hosts, since, timeout);
    EXPECT_TRUE(took.ok()) << took.error().message;
    return took ? took.value() : timeout;
  }

  // Waits until `count` more sends have been acknowledged than `base` (traffic kept flowing).
  void wait_traffic(std::size_t base, std::size_t count) {
    const auto deadline = Clock::now() + milliseconds{20000};
    while (traffic_->acknowledged() < base + count && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds{10});
    }
    ASSERT_GE(traffic_->acknowledged(), base + count) << "traffic stalled";
  }

  static void report_timing(const std::string& what, milliseconds took) {
    std::cout << "[  timing  ] " << what << ": " << took.count() << " ms\n";
    ::testing::Test::RecordProperty(what, std::to_string(took.count()));
  }

  // The end of every ring test: traffic stops, `live` must converge to one view, messages sent
  // then must reach every live host, and every listener log must pass the simulator's checks.
  // `crashed`: hosts whose agent was killed or stopped (no liveness claim for their messages).
  void finish(const std::vector<int>& live, const std::vector<int>& crashed = {}) {
    traffic_->stop();
    wait_view(live, Clock::now());
    ASSERT_NO_FATAL_FAILURE(wait_joined(live));
    std::vector<std::string> finals;
    for (int host : live) finals.push_back(traffic_->send_one(host));
    auto arrived = listeners_->wait_until([&] { return listeners_->delivered(live, finals); },
                                          milliseconds{15000});
    ASSERT_TRUE(arrived.ok()) << arrived.error().message;
    EXPECT_TRUE(arrived.value()) << "messages sent after the faults were not delivered everywhere";
    const auto logs = listeners_->all_logs();
    const LogCheck check = check_listen_logs(logs, traffic_->sent());
    EXPECT_TRUE(check.ok()) << check.summary();
    for (const auto& log : logs) {
      const bool kept = std::find(crashed.begin(), crashed.end(), log.host) == crashed.end();
      if (!kept) continue;
      for (const auto& problem : check_own_delivery(log, traffic_->sent()))
        ADD_FAILURE() << problem;
    }
    std::cout << "[  checks  ] " << check.summary() << "; " << traffic_->acknowledged()
              << " sends acknowledged\n";
  }

  HostConfigSettings host_config_;  // every host's keel.toml settings; set before build()
  bool client_ = false;             // build the lab's client namespace too; set before build()
  // Runs once the hosts' configs exist, before the agents start; set before build().
  std::function<Result<Ok>(const LabState&)> options_hook_;
  std::optional<Lab> lab_;
  std::optional<CleanupGuard> guard_;
  std::unique_ptr<ListenerSet> listeners_;
  std::unique_ptr<Traffic> traffic_;
};

}  // namespace keel::lab::testing
