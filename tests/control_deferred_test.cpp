// A control request answered by a volume's thread (volume_status and the volume commands) must
// not hold up the agent's loop, which carries the ring: while the volume's thread is busy (a
// write throttled by the kernel, a slow disk), the loop's timers keep firing on time; the reply
// comes when the volume answers, or as an error once the deadline passes; a client that went
// away meanwhile is no harm. The handler here asks a ServiceThread as VolumeService does.
#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "agent/control_server.hpp"
#include "agent/service_thread.hpp"
#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

class VolumeAskingHandler : public ControlHandler {
 public:
  VolumeAskingHandler(asio::io_context& io, ServiceThread& volume,
                      std::chrono::milliseconds deadline)
      : io_(io), volume_(volume), deadline_(deadline) {}
  json status() override { return ok_reply(); }
  Result<Ok> send(const std::string&, const Bytes&, bool) override { return Ok{}; }
  Result<Ok> join(const std::string&) override { return Ok{}; }
  void leave(const std::string&) override {}
  std::optional<json> command(const std::string&, const json&) override { return std::nullopt; }
  bool deferred_command(const std::string& op, const json&, Reply reply) override {
    if (op != "volume_status") return false;
    volume_.ask<Result<json>>(
        io_,
        []() -> Result<json> {
          return json{{"name", "data"}, {"role", "primary"}};
        },
        [reply = std::move(reply)](Result<json> answered) {
          json all = answered.ok() ? ok_reply() : error_reply(answered.error().message);
          if (answered.ok()) all["volumes"] = json::array({answered.value()});
          reply(all);
        },
        deadline_);
    return true;
  }

 private:
  asio::io_context& io_;
  ServiceThread& volume_;
  std::chrono::milliseconds deadline_;
};

// The agent's side: a control server on its own loop and thread, with a 10 ms heartbeat timer
// that records the longest it ever waited past its due time.
class AgentLoop {
 public:
  explicit AgentLoop(std::chrono::milliseconds deadline)
      : handler_(io_, volume_, deadline), heartbeat_(io_) {
    volume_.start();
    auto server = ControlServer::open(io_, dir_.file("control.sock"), handler_);
    EXPECT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();
    server_->start();
    beat(Clock::now());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~AgentLoop() {
    release();
    asio::post(io_, [this] {
      stopping_ = true;
      heartbeat_.cancel();
      server_->close();
    });
    thread_.join();
    volume_.stop([] {});
  }

  std::string socket() const { return dir_.file("control.sock"); }
  // Keeps the volume's thread busy until release().
  void make_volume_busy() {
    volume_.post([released = released_.get_future().share()] { released.wait(); });
  }
  void release() {
    if (!released_set_.exchange(true)) released_.set_value();
  }
  long beats() const { return beats_.load(); }
  std::chrono::milliseconds worst_lateness() const {
    return std::chrono::milliseconds(worst_late_ms_.load());
  }

 private:
  void beat(Clock::time_point due) {
    const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - due);
    if (late.count() > worst_late_ms_.load()) worst_late_ms_.store(late.count());
    ++beats_;
    heartbeat_.expires_at(Clock::now() + 10ms);
    heartbeat_.async_wait([this, next = Clock::now() + 10ms](const asio::error_code& error) {
      if (!error && !stopping_) beat(next);
    });
  }

  testing::TempDir dir_;
  asio::io_context io_;
  ServiceThread volume_{volume_thread_options("data", 0)};
  VolumeAskingHandler handler_;
  std::unique_ptr<ControlServer> server_;
  asio::steady_timer heartbeat_;
  std::atomic<long> beats_{0};
  std::atomic<long> worst_late_ms_{0};
  bool stopping_ = false;
  std::promise<void> released_;
  std::atomic<bool> released_set_{false};
  std::thread thread_;
};

ControlClient connect(const std::string& path) {
  auto client = ControlClient::connect(path);
  EXPECT_TRUE(client.ok()) << client.error().message;
  client.value().set_timeout_ms(10000);
  return std::move(client).value();
}

TEST(ControlDeferred, AVolumeStatusWaitingOnABusyVolumeLeavesTheLoopRunning) {
  AgentLoop agent(5000ms);
  ControlClient client = connect(agent.socket());
  agent.make_volume_busy();
  ASSERT_TRUE(client.write_line(R"({"op":"volume_status"})").ok());
  const long before = agent.beats();
  std::this_thread::sleep_for(500ms);  // longer than the ring's token timeout (300 ms)
  EXPECT_GE(agent.beats() - before, 20);
  EXPECT_LT(agent.worst_lateness(), 100ms);
  // Other sessions are served meanwhile.
  auto status = connect(agent.socket()).request(json{{"op", "status"}});
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status.value()["ok"], true);

  const auto released = Clock::now();
  agent.release();
  auto line = client.read_line();
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_LT(Clock::now() - released, 1s);
  const json reply = json::parse(line.value());
  EXPECT_EQ(reply["ok"], true);
  EXPECT_EQ(reply["volumes"][0]["role"], "primary");
  // The session goes on with the next request.
  auto again = client.request(json{{"op", "volume_status"}});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again.value()["ok"], true);
}

TEST(ControlDeferred, AVolumeThatNeverAnswersGetsTheDeadlineErrorWithoutStallingTheLoop) {
  AgentLoop agent(300ms);
  ControlClient client = connect(agent.socket());
  agent.make_volume_busy();
  const auto asked = Clock::now();
  const long before = agent.beats();
  auto reply = client.request(json{{"op", "volume_status"}});
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_GE(Clock::now() - asked, 300ms);
  EXPECT_GE(agent.beats() - before, 15);
  EXPECT_EQ(reply.value()["ok"], false);
  EXPECT_NE(reply.value()["error"].get<std::string>().find(
                "volume thread data did not answer within 300 ms (its disk may be stalled)"),
            std::string::npos)
      << reply.value();
  std::this_thread::sleep_for(50ms);  // a heartbeat held up by the request has run by now
  EXPECT_LT(agent.worst_lateness(), 100ms);
}

TEST(ControlDeferred, AClientGoneBeforeTheVolumeAnswersIsNoHarm) {
  AgentLoop agent(5000ms);
  agent.make_volume_busy();
  {
    ControlClient client = connect(agent.socket());
    ASSERT_TRUE(client.write_line(R"({"op":"volume_status"})").ok());
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(50ms);  // the server sees the session close
  agent.release();
  auto status = connect(agent.socket()).request(json{{"op", "volume_status"}});
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status.value()["ok"], true);
}

}  // namespace
}  // namespace keel::agent
