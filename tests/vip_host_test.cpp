// VipHost (src/agent/vip_host.hpp): the floating IPs on a thread of their own, seen from the
// agent's loop. As root, in a private network namespace with a veth pair (v0, v1) and
// 198.18.79.1/24 on v0; one node alone in its ring, whose keel.vip broadcasts come back to it as
// the ring would deliver them. The agent's loop runs on a thread in the namespace with a 10 ms
// heartbeat timer that records how late it fires: a loop held up (as the ring's would be) shows
// there.
#include "agent/vip_host.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <utility>

#include "agent/control_protocol.hpp"
#include "netns_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kHostFloating = "198.18.79.10/24";

class VipHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = testing::netns_unavailable_reason()) GTEST_SKIP() << *reason;
    netns_ = std::make_unique<testing::TestNamespace>(testing::unique_prefix() + "-h");
    ASSERT_TRUE(netns_->created());
    ASSERT_TRUE(netns_->add_veth_pair("198.18.79.1/24"));
    auto parsed = config::parse_config(
        "[cluster]\nname = \"t\"\n\n[[node]]\nid = 1\nname = \"fe1\"\naddress = "
        "\"198.18.79.1\"\n\n[vip]\nstartup_ms = 0\nhandover_ms = 0\n\n[[vip.pool]]\nname = "
        "\"web\"\naddresses = [\"" +
            std::string(kHostFloating) + "\"]\ninterface = \"v0\"\nannounce_count = 1\n",
        "keel.toml");
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    config_ = std::move(parsed).value();
    work_.emplace(asio::make_work_guard(io_));
    loop_thread_ = std::thread([this] {
      netns_->run([this] {
        loop_id_ = std::this_thread::get_id();
        beat();
        io_.run();
        return 0;
      });
    });
    const std::string error = call([this] {
      auto opened = VipHost::open(io_, config_, 1, [this](const Bytes& payload) {
        if (std::this_thread::get_id() != loop_id_) broadcast_off_loop_ = true;
        ++broadcasts_;
        host_->on_message(1, payload);  // the ring delivers it back, in order
        return Result<Ok>(Ok{});
      });
      if (!opened) return opened.error().message;
      host_ = std::move(opened).value();
      auto started = host_->start();
      return started ? std::string() : started.error().message;
    });
    ASSERT_EQ(error, "");
  }

  void TearDown() override {
    if (loop_thread_.joinable()) {
      // All on the loop, in one handler: a broadcast the service posted before it stopped must
      // not run against a host already destroyed, and io_.stop() keeps it from running at all.
      call([this] {
        if (host_) host_->stop();
        host_.reset();
        heartbeat_.reset();
        io_.stop();
        return 0;
      });
      work_.reset();
      loop_thread_.join();
    }
    netns_.reset();
  }

  // A timer every 10 ms on the loop; its worst lateness so far, in worst_lateness_.
  void beat() {
    if (!heartbeat_) heartbeat_ = std::make_unique<asio::steady_timer>(io_);
    const auto due = Clock::now() + 10ms;
    heartbeat_->expires_at(due);
    heartbeat_->async_wait([this, due](const asio::error_code& error) {
      if (error) return;
      const auto late = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - due);
      worst_lateness_us_ = std::max<long>(worst_lateness_us_, late.count());
      beat();
    });
  }

  template <typename Work>
  auto call(Work work) -> decltype(work()) {
    std::promise<decltype(work())> done;
    auto result = done.get_future();
    asio::post(io_, [&] { done.set_value(work()); });
    return result.get();
  }

  // Sends `op` as the control socket would and returns a future of the reply.
  std::future<nlohmann::json> ask(const std::string& op) {
    auto reply = std::make_shared<std::promise<nlohmann::json>>();
    auto answer = reply->get_future();
    call([this, op, reply] {
      const bool known =
          host_->command(op, [reply](nlohmann::json json) { reply->set_value(std::move(json)); });
      EXPECT_TRUE(known) << op;
      return 0;
    });
    return answer;
  }

  bool floating_on_v0() const {
    return netns_->ip_output({"-o", "addr", "show", "dev", "v0"}).find(kHostFloating) !=
           std::string::npos;
  }

  std::unique_ptr<testing::TestNamespace> netns_;
  config::ClusterConfig config_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread loop_thread_;
  std::thread::id loop_id_;
  std::unique_ptr<asio::steady_timer> heartbeat_;
  std::atomic<long> worst_lateness_us_{0};
  std::atomic<int> broadcasts_{0};
  std::atomic<bool> broadcast_off_loop_{false};
  std::unique_ptr<VipHost> host_;
};

TEST_F(VipHostTest, TakesItsAddressAndAnswersOnTheLoop) {
  call([this] {
    host_->on_view(ring::View{ring::View::Kind::regular, RingId{1, 1}, {}, {1}});
    return 0;
  });
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  EXPECT_GT(broadcasts_.load(), 0);
  EXPECT_FALSE(broadcast_off_loop_.load()) << "the ring was handed a broadcast off its loop";
  const nlohmann::json status = ask("vip_status").get();
  ASSERT_EQ(status["ok"], true) << status;
  EXPECT_EQ(status["vip"]["pools"][0]["addresses"][0]["held_here"], true) << status;
  EXPECT_EQ(ask("drain").get()["ok"], true);
  EXPECT_EQ(ask("undrain").get()["ok"], true);
  bool known = true;
  call([this, &known] {
    known = host_->command("volume_status", [](nlohmann::json) {});
    return 0;
  });
  EXPECT_FALSE(known);
}

// The service's thread stuck, as in a netlink call waiting for the kernel's rtnl lock: the
// agent's loop keeps its timers on time, its ring events wait for the service instead of the
// other way round, and a status request gets the deadline's error. Once the thread goes on, the
// view it missed is acted upon.
TEST_F(VipHostTest, AStuckServiceThreadHoldsUpNeitherTheLoopNorItsRequests) {
  // Released at the latest when the test ends, even a failed one: a stuck thread cannot join.
  struct Release {
    std::promise<void> promise;
    bool done = false;
    void now() {
      if (!std::exchange(done, true)) promise.set_value();
    }
    ~Release() { now(); }
  } release;
  auto released = release.promise.get_future().share();
  std::promise<void> stuck;
  host_->post_to_service([released, &stuck] {
    stuck.set_value();
    released.wait();
  });
  stuck.get_future().wait();
  call([this] {
    worst_lateness_us_ = 0;
    return 0;
  });
  const auto asked = Clock::now();
  call([this] {
    host_->on_view(ring::View{ring::View::Kind::regular, RingId{1, 1}, {}, {1}});
    return 0;
  });
  const nlohmann::json status = ask("vip_status").get();
  EXPECT_GE(Clock::now() - asked, VipHost::kAskDeadline);
  EXPECT_EQ(status["ok"], false);
  EXPECT_NE(status.value("error", "").find("did not answer within"), std::string::npos) << status;
  EXPECT_FALSE(floating_on_v0());
  EXPECT_LT(worst_lateness_us_.load(), 50'000) << "the loop was held up";
  release.now();
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  EXPECT_EQ(ask("vip_status").get()["ok"], true);
}

}  // namespace
}  // namespace keel::agent
