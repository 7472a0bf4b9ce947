// Agents in one process, each on its own io_context and thread, on 127.0.0.x: they form one
// view, deliver group messages to every listener in one order, answer status, refuse bad
// requests with error lines, and keep their control socket private and bounded.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent/control_protocol.hpp"
#include "agent/ring_driver.hpp"
#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::AgentThread;
using testing::connect_or_die;
using testing::group_has;
using testing::in_ring_of;
using testing::Listener;
using testing::start_ring;
using testing::TestCluster;
using testing::wait_until;

const json kOk = json{{"ok", true}};

json send_request(ControlClient& client, const std::string& group, const std::string& message,
                  bool safe) {
  auto reply =
      client.request(json{{"op", "send"}, {"group", group}, {"message", message}, {"safe", safe}});
  EXPECT_TRUE(reply.ok());
  return reply.ok() ? reply.value() : json();
}

TEST(AgentControl, ThreeAgentsDeliverEveryMessageInOneOrder) {
  TestCluster cluster(3);
  auto agents = start_ring(cluster);
  std::vector<std::unique_ptr<Listener>> listeners;
  for (int i = 1; i <= 3; ++i) {
    listeners.push_back(std::make_unique<Listener>(cluster.socket_path(i), "order"));
  }
  for (auto& listener : listeners) {
    ASSERT_TRUE(listener->read_until(10s, group_has("order", {1, 2, 3})));
  }
  std::vector<ControlClient> senders;
  for (int i = 1; i <= 3; ++i) senders.push_back(connect_or_die(cluster.socket_path(i)));
  constexpr int kPerSender = 20;
  for (int round = 0; round < kPerSender; ++round) {
    for (int i = 0; i < 3; ++i) {
      const std::string text = "n" + std::to_string(i + 1) + " #" + std::to_string(round);
      EXPECT_EQ(send_request(senders[i], "order", text, round % 4 == 0), kOk);
    }
  }
  for (auto& listener : listeners) {
    ASSERT_TRUE(listener->read_until(
        10s, [&](const json&) { return listener->messages().size() == 3 * kPerSender; }));
  }
  const std::vector<json> reference = listeners[0]->messages();
  for (auto& listener : listeners) EXPECT_EQ(listener->messages(), reference);
  // Each sender's messages arrive in the order it sent them.
  std::map<NodeId, int> next;
  for (const json& message : reference) {
    const NodeId origin = message["origin"].get<NodeId>();
    const std::string expected = "n" + std::to_string(origin) + " #" + std::to_string(next[origin]);
    EXPECT_EQ(message["message"], expected);
    EXPECT_EQ(message["safe"], next[origin] % 4 == 0);
    ++next[origin];
  }
}

// A listener that arrives after the ring formed starts with the current regular view and its
// group's members (all "joined"), then gets the changes as they come.
TEST(AgentControl, ALateListenerStartsWithTheCurrentViewAndGroup) {
  TestCluster cluster(2);
  auto agents = start_ring(cluster);
  const auto ring = (*testing::status_of(cluster.socket_path(1)))["ring"];
  const auto first_two = [](Listener& listener) {
    return listener.read_until(5s, [&](const json&) { return listener.events().size() == 2; });
  };
  const json view = json{{"event", "view"},
                         {"kind", "regular"},
                         {"ring", ring},
                         {"previous_ring", nullptr},
                         {"members", {1, 2}}};

  Listener first(cluster.socket_path(1), "g");  // the group has no members yet
  ASSERT_TRUE(first.read_until(5s, group_has("g", {1})));
  EXPECT_EQ(first.events().front(), view);
  EXPECT_EQ(first.events()[1], json::parse(R"({"event":"group_view","group":"g","members":[1],
                                               "joined":[1],"left":[]})"));

  Listener second(cluster.socket_path(2), "g");
  ASSERT_TRUE(first_two(second));
  EXPECT_EQ(second.events()[0], view);
  EXPECT_EQ(second.events()[1], json::parse(R"({"event":"group_view","group":"g","members":[1],
                                                "joined":[1],"left":[]})"));
  ASSERT_TRUE(second.read_until(5s, group_has("g", {1, 2})));
  EXPECT_EQ(second.events().back()["joined"], json::array({2}));

  Listener third(cluster.socket_path(2), "g");  // a second listener where the group is joined
  ASSERT_TRUE(first_two(third));
  EXPECT_EQ(third.events()[0], view);
  EXPECT_EQ(third.events()[1], json::parse(R"({"event":"group_view","group":"g","members":[1,2],
                                               "joined":[1,2],"left":[]})"));
}

TEST(AgentControl, StatusReportsNodeRingPeersAndCounters) {
  TestCluster cluster(2);
  auto agents = start_ring(cluster);
  Listener listener(cluster.socket_path(1), "status-group");
  ASSERT_TRUE(listener.read_until(5s, group_has("status-group", {1})));
  auto status = testing::status_of(cluster.socket_path(1));
  ASSERT_TRUE(status);
  const json& s = *status;
  EXPECT_EQ(s["ok"], true);
  EXPECT_EQ(s["node"]["id"], 1);
  EXPECT_EQ(s["node"]["name"], "n1");
  EXPECT_EQ(s["cluster"], "test");
  EXPECT_EQ(s["state"], "operational");
  EXPECT_TRUE(s["ring"].is_string());
  EXPECT_EQ(s["members"], json::parse(R"([{"id":1,"name":"n1"},{"id":2,"name":"n2"}])"));
  ASSERT_EQ(s["peers"].size(), 1u);
  const json& peer = s["peers"][0];
  EXPECT_EQ(peer["id"], 2);
  EXPECT_EQ(peer["address"], "127.0.0.2:" + std::to_string(cluster.ports[1]));
  EXPECT_TRUE(peer["last_heard_ms"].is_number());
  for (const char* reason :
       {"malformed", "forged", "replayed", "unknown_sender", "wrong_address", "undecodable"}) {
    EXPECT_EQ(peer["rejected"][reason], 0) << reason;
  }
  for (const char* counter : {"packets_sent", "packets_received", "messages_delivered",
                              "retransmissions", "views_installed", "tokens_received"}) {
    EXPECT_TRUE(s["ring_stats"][counter].is_number()) << counter;
  }
  EXPECT_GT(s["ring_stats"]["messages_delivered"], 0);
  for (const char* counter : {"opened", "forged", "replayed", "malformed", "datagrams_sent"}) {
    EXPECT_TRUE(s["transport_stats"][counter].is_number()) << counter;
  }
  EXPECT_EQ(s["send_queue"], 0);
  EXPECT_EQ(s["groups"], json::array({"status-group"}));
}

TEST(AgentControl, BadRequestsGetErrorLinesAndTheSessionGoesOn) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  ControlClient client = connect_or_die(cluster.socket_path(1));
  const std::vector<std::string> bad = {
      "not json",
      "[1,2]",
      R"({"no_op":1})",
      R"({"op":"reboot"})",
      R"({"op":"send"})",
      R"({"op":"send","group":"has space","message":"x"})",
      R"({"op":"send","group":"g"})",
      R"({"op":"send","group":"g","message":"x","message_base64":"eA=="})",
      R"({"op":"send","group":"g","message_base64":"not base64!"})",
      R"({"op":"send","group":"g","message":"x","safe":"yes"})",
      R"({"op":"listen","group":""})",
  };
  for (const std::string& line : bad) {
    ASSERT_TRUE(client.write_line(line).ok());
    auto reply = client.read_line();
    ASSERT_TRUE(reply.ok()) << line;
    const json parsed = json::parse(reply.value());
    EXPECT_EQ(parsed["ok"], false) << line;
    EXPECT_TRUE(parsed["error"].is_string() && !parsed["error"].get<std::string>().empty());
  }
  auto status = client.request(json{{"op", "status"}});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value()["ok"], true);
  auto sent = client.request(json{{"op", "send"}, {"group", "g"}, {"message_base64", "/w=="}});
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent.value(), kOk);
}

TEST(AgentControl, AnOverlongRequestLineEndsTheSession) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  ControlClient client = connect_or_die(cluster.socket_path(1));
  ASSERT_TRUE(client.write_line(std::string(kMaxRequestLineBytes + 10, 'x')).ok());
  auto reply = client.read_line();
  ASSERT_TRUE(reply.ok());
  EXPECT_NE(reply.value().find("longer than"), std::string::npos) << reply.value();
  EXPECT_FALSE(client.read_line().ok());                    // closed
  EXPECT_TRUE(testing::status_of(cluster.socket_path(1)));  // the agent goes on
}

// Requests are parsed on the thread that runs the ring, where 8 MiB of `[` or of `1,` took
// seconds to parse: such a line is refused unparsed, at once, and the session and the ring go on.
TEST(AgentControl, ARequestTooDeepOrTooWideIsRefusedAtOnce) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  ControlClient client = connect_or_die(cluster.socket_path(1));
  const json ring = (*testing::status_of(cluster.socket_path(1)))["ring"];
  std::string wide = R"({"op":"send","group":"g","message":[)";
  while (wide.size() < kMaxRequestLineBytes - 4) wide += "1,";
  wide += "1]}";
  const std::vector<std::pair<std::string, std::string>> refused = {
      {std::string(kMaxRequestLineBytes, '['), "at most 64 deep"},
      {wide, "at most 4096 bytes outside its strings"},
  };
  for (const auto& [line, why] : refused) {
    ASSERT_TRUE(client.write_line(line).ok());
    const auto written = std::chrono::steady_clock::now();
    auto reply = client.read_line();
    const auto waited = std::chrono::steady_clock::now() - written;
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    const json parsed = json::parse(reply.value());
    EXPECT_EQ(parsed["ok"], false);
    EXPECT_NE(parsed["error"].get<std::string>().find(why), std::string::npos) << parsed;
    EXPECT_LT(waited, 200ms) << why;
  }
  auto status = client.request(json{{"op", "status"}});
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(status.value()["ok"], true);
  EXPECT_EQ(status.value()["ring"], ring);
}

// The largest message, escaped into the longest request a send makes, with brackets and quotes
// in its text, passes the checks before parsing and arrives whole.
TEST(AgentControl, TheLargestSendRequestGoesThrough) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  Listener listener(cluster.socket_path(1), "g");
  ASSERT_TRUE(listener.read_until(5s, group_has("g", {1})));
  std::string message;
  const std::string pattern = "[{\"\\\x01\x01\x01\x01\x01\x01\x01";
  while (message.size() < kMaxGroupPayloadBytes) message += pattern;
  message.resize(kMaxGroupPayloadBytes);
  const std::string request = to_line(json{{"op", "send"}, {"group", "g"}, {"message", message}});
  EXPECT_GT(request.size(), kMaxRequestLineBytes / 2);
  ASSERT_LE(request.size(), kMaxRequestLineBytes);
  ControlClient sender = connect_or_die(cluster.socket_path(1));
  ASSERT_TRUE(sender.write_line(request).ok());
  auto reply = sender.read_line();
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(json::parse(reply.value()), kOk);
  ASSERT_TRUE(listener.read_until(
      10s, [](const json& event) { return event.value("event", "") == "message"; }));
  EXPECT_EQ(listener.messages().back()["message"], message);
}

TEST(AgentControl, LastListenerLeavingLeavesTheGroup) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  auto groups = [&] { return (*testing::status_of(cluster.socket_path(1)))["groups"]; };
  {
    Listener first(cluster.socket_path(1), "g");
    Listener second(cluster.socket_path(1), "g");
    ASSERT_TRUE(first.read_until(5s, group_has("g", {1})));
    EXPECT_EQ(groups(), json::array({"g"}));
  }
  EXPECT_TRUE(wait_until(5s, [&] { return groups() == json::array(); }));
}

// A listener may shut down its writing side after the request (`nc -N`, a client writing from a
// pipe) and still read its stream; once it hangs up altogether it is gone, event or no event.
TEST(AgentControl, AListenerThatShutsDownItsWritingSideKeepsItsStream) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  auto listener = std::make_unique<ControlClient>(connect_or_die(cluster.socket_path(1)));
  auto listening = listener->request(json{{"op", "listen"}, {"group", "g"}});
  ASSERT_TRUE(listening.ok()) << listening.error().message;
  ASSERT_EQ(listening.value(), kOk);
  ASSERT_TRUE(listener->shut_down_writing().ok());
  const auto read_until = [&](const std::function<bool(const json&)>& done) {
    for (;;) {
      auto line = listener->read_line();
      if (!line.ok()) {
        ADD_FAILURE() << line.error().message;
        return;
      }
      if (done(json::parse(line.value()))) return;
    }
  };
  read_until(group_has("g", {1}));
  ControlClient sender = connect_or_die(cluster.socket_path(1));
  EXPECT_EQ(send_request(sender, "g", "after the half-close", false), kOk);
  read_until([](const json& event) {
    return event.value("event", "") == "message" && event["message"] == "after the half-close";
  });
  listener.reset();
  EXPECT_TRUE(wait_until(5s, [&] {
    return (*testing::status_of(cluster.socket_path(1)))["groups"] == json::array();
  }));
}

TEST(AgentControl, ListenersAreBounded) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  std::vector<std::unique_ptr<Listener>> listeners;
  for (std::size_t i = 0; i < kMaxListeners; ++i) {
    listeners.push_back(std::make_unique<Listener>(cluster.socket_path(1), "g"));
  }
  ControlClient extra = connect_or_die(cluster.socket_path(1));
  auto reply = extra.request(json{{"op", "listen"}, {"group", "g"}});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value()["ok"], false);
  EXPECT_NE(reply.value()["error"].get<std::string>().find("too many listeners"),
            std::string::npos);
}

// A listener learns why its stream ends when the agent stops, rather than seeing a bare EOF.
TEST(AgentControl, ShutdownTellsEachConnectionWhy) {
  TestCluster cluster(1);
  AgentThread agent(cluster.options(1));
  ControlClient listener = connect_or_die(cluster.socket_path(1));
  auto listening = listener.request(json{{"op", "listen"}, {"group", "g"}});
  ASSERT_TRUE(listening.ok()) << listening.error().message;
  ASSERT_EQ(listening.value()["ok"], true) << listening.value().dump();
  agent.stop();
  for (;;) {
    auto line = listener.read_line();
    ASSERT_TRUE(line.ok()) << "no final line before the end: " << line.error().message;
    const json event = json::parse(line.value());
    if (event.contains("ok")) {
      EXPECT_EQ(event["ok"], false);
      EXPECT_EQ(event["error"], "the agent is shutting down");
      break;
    }
  }
}

TEST(AgentControl, SocketIsPrivateAndItsDirectoryIsCreated) {
  TestCluster cluster(1);
  AgentOptions options = cluster.options(1);
  const std::string directory = cluster.dir.file("run/keel");
  options.config.agent.control_socket = directory + "/keel.sock";
  AgentThread agent(options);
  struct stat info {};
  ASSERT_EQ(::stat(options.config.agent.control_socket.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(directory.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0755u);
  agent.stop();
  EXPECT_NE(::stat(options.config.agent.control_socket.c_str(), &info), 0);  // removed on exit
}

// A socket file left behind by a crashed agent: bound, never unlinked, nobody listening.
void leave_stale_socket(const std::string& path) {
  asio::io_context io;
  asio::local::stream_protocol::acceptor acceptor(io);
  acceptor.open();
  acceptor.bind(asio::local::stream_protocol::endpoint(path));
}

TEST(AgentControl, StaleSocketIsReplacedALiveOneIsNot) {
  TestCluster cluster(1);
  leave_stale_socket(cluster.socket_path(1));
  asio::io_context io;
  Agent first(io, cluster.options(1));
  auto started = first.start();
  ASSERT_TRUE(started.ok()) << started.error().message;
  Agent second(io, cluster.options(1));
  auto refused = second.start();
  ASSERT_FALSE(refused.ok());
  // The UDP port is taken first; with another port, the live control socket is what refuses.
  AgentOptions other = cluster.options(1);
  other.config.nodes[0].port = testing::free_udp_port("127.0.0.1");
  other.self.port = other.config.nodes[0].port;
  Agent third(io, other);
  refused = third.start();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("listens on"), std::string::npos)
      << refused.error().message;
  first.shutdown();
  testing::write_file(cluster.socket_path(1), "not a socket");
  Agent fourth(io, cluster.options(1));
  refused = fourth.start();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("not a socket"), std::string::npos);
}

}  // namespace
}  // namespace keel::agent
