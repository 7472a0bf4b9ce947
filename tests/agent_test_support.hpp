// Helpers for the agent tests: a temporary directory, cluster configs on 127.0.0.x, agents run
// in-process (each on its own io_context and thread), a deadline-bound wait, and a listen stream
// read with deadlines. Every address is a loopback one: these tests never send traffic elsewhere.
// The agents log warnings only; KEEL_TEST_LOG_LEVEL=info (or debug) shows their views and groups
// when a test needs explaining.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.hpp"
#include "agent/control_client.hpp"
#include "config/config.hpp"
#include "io/sealed_packet.hpp"

namespace keel::agent::testing {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-agent-XXXXXX").string();
    KEEL_ASSERT(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A UDP port free on `address` right now (the kernel's choice).
inline std::uint16_t free_udp_port(const std::string& address) {
  asio::io_context io;
  asio::ip::udp::socket socket(io, asio::ip::udp::endpoint(asio::ip::make_address(address), 0));
  return socket.local_endpoint().port();
}

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
inline bool wait_until(std::chrono::milliseconds timeout, const std::function<bool()>& condition) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A token timeout that CPU starvation on a loaded test machine (sanitizers, parallel suites)
// does not reach: the tests of the agent's plumbing expect one ring throughout, and with the
// default 300 ms a starved moment could split it and rightly cost a listener the other side's
// messages. The tests of failure detection run in the simulator and the lab.
inline constexpr const char* kPatientRing = "token_timeout_ms = 3000\n";

// A cluster of `count` nodes n1..nN on 127.0.0.1..N, with a key and one config file per node.
struct TestCluster {
  TempDir dir;
  std::string key_file = dir.file("cluster.key");
  std::vector<std::uint16_t> ports;
  std::string ring_section;  // [ring] lines

  explicit TestCluster(int count, std::string ring = kPatientRing) : ring_section(std::move(ring)) {
    KEEL_ASSERT(io::write_new_key_file(key_file).ok());
    for (int i = 1; i <= count; ++i) ports.push_back(free_udp_port(address(i)));
  }
  int size() const { return static_cast<int>(ports.size()); }
  static std::string address(int node) { return "127.0.0." + std::to_string(node); }
  std::string socket_path(int node) const { return dir.file("n" + std::to_string(node) + ".sock"); }
  std::string config_path(int node) const { return dir.file("n" + std::to_string(node) + ".toml"); }

  std::string config_text(int node) const {
    std::string text = "[cluster]\nname = \"test\"\nkey_file = \"" + key_file + "\"\nnode = \"n" +
                       std::to_string(node) + "\"\n\n";
    for (int i = 1; i <= size(); ++i) {
      text += "[[node]]\nid = " + std::to_string(i) + "\nname = \"n" + std::to_string(i) +
              "\"\naddress = \"" + address(i) + "\"\nport = " + std::to_string(ports[i - 1]) +
              "\n\n";
    }
    text += "[ring]\n" + ring_section + "\n[agent]\ncontrol_socket = \"" + socket_path(node) +
            "\"\nlog_level = \"warn\"\nstate_dir = \"" +
            dir.file("state-n" + std::to_string(node)) + "\"\n";
    return text;
  }
  // Writes every node's config file; returns the path of `node`'s.
  void write_configs() const {
    for (int i = 1; i <= size(); ++i) write_file(config_path(i), config_text(i));
  }

  AgentOptions options(int node) const {
    auto config = config::parse_config(config_text(node), "test.toml");
    KEEL_ASSERT(config.ok());
    auto self = config::resolve_this_node(config.value(), "");
    KEEL_ASSERT(self.ok());
    auto key = io::read_key_file(key_file);
    KEEL_ASSERT(key.ok());
    return AgentOptions{config.value(), self.value(), key.value()};
  }
};

// One Agent on its own io_context and thread.
class AgentThread {
 public:
  explicit AgentThread(AgentOptions options) : agent_(io_, std::move(options)) {
    // The agents' view logs would drown the output; KEEL_TEST_LOG_LEVEL asks for them.
    const char* level = std::getenv("KEEL_TEST_LOG_LEVEL");
    spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    auto started = agent_.start();
    if (!started.ok()) {
      ADD_FAILURE() << "agent did not start: " << started.error().message;
      return;
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~AgentThread() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { agent_.shutdown(); });
    thread_.join();
  }

 private:
  asio::io_context io_{1};
  Agent agent_;
  std::thread thread_;
};

// Runs `io` in short slices until `done` holds or `limit` passes; whether it holds.
template <typename Predicate>
bool run_io_until(asio::io_context& io, Predicate done,
                  std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

inline ControlClient connect_or_die(const std::string& socket) {
  auto client = ControlClient::connect(socket);
  KEEL_ASSERT(client.ok());
  client.value().set_timeout_ms(5000);
  return std::move(client).value();
}

inline std::optional<json> status_of(const std::string& socket) {
  auto client = ControlClient::connect(socket);
  if (!client.ok()) return std::nullopt;
  client.value().set_timeout_ms(5000);
  auto reply = client.value().request(json{{"op", "status"}});
  if (!reply.ok()) return std::nullopt;
  return reply.value();
}

// Whether the agent at `socket` is operational in a ring of exactly `members`.
inline bool in_ring_of(const std::string& socket, const std::vector<NodeId>& members) {
  const auto status = status_of(socket);
  if (!status || status->value("state", "") != "operational") return false;
  std::vector<NodeId> ids;
  for (const json& member : status->value("members", json::array())) {
    ids.push_back(member["id"].get<NodeId>());
  }
  return ids == members;
}

// A `listen` session read with deadlines.
class Listener {
 public:
  Listener(const std::string& socket, const std::string& group) : client_(connect_or_die(socket)) {
    auto reply = client_.request(json{{"op", "listen"}, {"group", group}});
    KEEL_ASSERT(reply.ok() && reply.value().value("ok", false));
    client_.set_timeout_ms(50);
  }
  // Reads events until `done(event)` holds; false if `timeout` passes first. Every event read is
  // kept in events().
  bool read_until(std::chrono::milliseconds timeout, const std::function<bool(const json&)>& done) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto line = client_.read_line();
      if (!line.ok()) {
        if (client_.timed_out()) continue;
        return false;  // closed
      }
      events_.push_back(json::parse(line.value()));
      if (done(events_.back())) return true;
    }
    return false;
  }
  const std::vector<json>& events() const { return events_; }
  std::vector<json> messages() const {
    std::vector<json> out;
    for (const json& event : events_) {
      if (event.value("event", "") == "message") out.push_back(event);
    }
    return out;
  }

 private:
  ControlClient client_;
  std::vector<json> events_;
};

inline std::function<bool(const json&)> group_has(const std::string& group,
                                                  const std::vector<NodeId>& members) {
  return [group, members](const json& event) {
    return event.value("event", "") == "group_view" && event.value("group", "") == group &&
           event["members"].get<std::vector<NodeId>>() == members;
  };
}

// Starts an agent per node of `cluster` and waits until they are one ring.
inline std::vector<std::unique_ptr<AgentThread>> start_ring(const TestCluster& cluster) {
  std::vector<std::unique_ptr<AgentThread>> agents;
  std::vector<NodeId> all;
  for (int i = 1; i <= cluster.size(); ++i) {
    agents.push_back(std::make_unique<AgentThread>(cluster.options(i)));
    all.push_back(static_cast<NodeId>(i));
  }
  for (int i = 1; i <= cluster.size(); ++i) {
    EXPECT_TRUE(wait_until(std::chrono::seconds(10),
                           [&] { return in_ring_of(cluster.socket_path(i), all); }))
        << "node " << i << " did not join the ring of all nodes";
  }
  return agents;
}

}  // namespace keel::agent::testing
