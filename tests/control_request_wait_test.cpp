// A control connection that sends no request within the server's request wait is told why and
// closed, so that silent clients cannot hold every connection and lock the operators out; a client
// that keeps asking, and a listener past its request, stay.
#include <gtest/gtest.h>

#include <asio.hpp>
#include <chrono>
#include <memory>
#include <thread>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "agent/control_server.hpp"
#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr std::chrono::milliseconds kShortWait = 300ms;

class AnsweringHandler : public ControlHandler {
 public:
  json status() override { return ok_reply(); }
  Result<Ok> send(const std::string&, const Bytes&, bool) override { return Ok{}; }
  Result<Ok> join(const std::string&) override { return Ok{}; }
  void leave(const std::string&) override {}
  std::optional<json> command(const std::string&, const json&) override { return std::nullopt; }
};

// A control server with a short request wait, on its own loop and thread.
class ServerWithShortWait {
 public:
  ServerWithShortWait() {
    auto server = ControlServer::open(io_, dir_.file("control.sock"), handler_, kShortWait);
    EXPECT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ServerWithShortWait() {
    asio::post(io_, [this] { server_->close(); });
    thread_.join();
  }
  std::string socket() const { return dir_.file("control.sock"); }
  // Sends `event` to every listener, from the server's thread.
  void publish(const json& event) {
    asio::post(io_, [this, event] { server_->publish_all(event); });
  }

 private:
  testing::TempDir dir_;
  asio::io_context io_;
  AnsweringHandler handler_;
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
};

ControlClient client_of(const std::string& socket, int timeout_ms) {
  auto client = ControlClient::connect(socket);
  EXPECT_TRUE(client.ok()) << client.error().message;
  client.value().set_timeout_ms(timeout_ms);
  return std::move(client).value();
}

const std::string kWaitOver = "no request within 300 ms; closing the connection";

TEST(ControlRequestWait, ASilentConnectionIsToldWhyAndClosed) {
  ServerWithShortWait server;
  const auto connected = std::chrono::steady_clock::now();
  ControlClient silent = client_of(server.socket(), 5000);
  auto line = silent.read_line();
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_GE(std::chrono::steady_clock::now() - connected, kShortWait);
  const json last = json::parse(line.value());
  EXPECT_EQ(last["ok"], false);
  EXPECT_EQ(last["error"], kWaitOver);
  EXPECT_FALSE(silent.read_line().ok());  // closed
}

// Each request starts the wait anew: a client asking again and again outlives a silent one that
// connected after it; and a listener waits for events, not requests.
TEST(ControlRequestWait, AClientThatKeepsAskingAndAListenerStay) {
  ServerWithShortWait server;
  ControlClient asking = client_of(server.socket(), 5000);
  ControlClient listener = client_of(server.socket(), 5000);
  auto listening = listener.request(json{{"op", "listen"}, {"group", "g"}});
  ASSERT_TRUE(listening.ok()) << listening.error().message;
  ASSERT_EQ(listening.value()["ok"], true);
  ControlClient silent = client_of(server.socket(), 10);
  const auto deadline = std::chrono::steady_clock::now() + 10 * kShortWait;
  for (;;) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the silent client was never closed";
    auto status = asking.request(json{{"op", "status"}});
    ASSERT_TRUE(status.ok()) << status.error().message;
    ASSERT_EQ(status.value()["ok"], true);
    auto line = silent.read_line();
    if (line.ok()) {
      EXPECT_EQ(json::parse(line.value())["error"], kWaitOver);
      break;
    }
    ASSERT_TRUE(silent.timed_out()) << line.error().message;
  }
  auto status = asking.request(json{{"op", "status"}});
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status.value()["ok"], true);
  const json event = {{"event", "view"}, {"kind", "regular"}};
  server.publish(event);
  auto line = listener.read_line();
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_EQ(json::parse(line.value()), event);
}

}  // namespace
}  // namespace keel::agent
