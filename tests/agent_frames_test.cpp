// The control socket's binary frames with real agents on 127.0.0.x: messages sent as frames on a
// send_stream connection reach binary and JSON listeners alike, in the same order, with the same
// fields; a binary listener starts with where it stands, as JSON event frames; a bad frame ends a
// send stream with an error frame; a bulk sender that outruns the ring is held back, not refused,
// and does not crowd out the agent's own messages.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <atomic>
#include <cstring>

#include "agent/control_frames.hpp"
#include "agent/control_protocol.hpp"
#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::AgentThread;
using testing::group_has;
using testing::in_ring_of;
using testing::Listener;
using testing::start_ring;
using testing::TestCluster;

// A raw connection to the control socket: one request line, then frames.
class FrameClient {
 public:
  explicit FrameClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  }
  ~FrameClient() { ::close(fd_); }
  FrameClient(const FrameClient&) = delete;
  FrameClient& operator=(const FrameClient&) = delete;

  void write(const std::string& bytes) {
    for (std::size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      done += static_cast<std::size_t>(n);
    }
  }
  void set_send_timeout_s(int seconds) {
    const timeval timeout{seconds, 0};
    EXPECT_EQ(::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout), 0);
  }
  // The reply line to the request that switches the connection.
  json request(const json& request) {
    write(request.dump() + "\n");
    while (in_.find('\n') == std::string::npos) {
      if (!fill(5000)) return json();
    }
    const auto end = in_.find('\n');
    const json reply = json::parse(in_.substr(0, end));
    in_.erase(0, end + 1);
    return reply;
  }
  // The next frame (type, body), or nothing if none comes within `timeout_ms` or the agent
  // closed the connection.
  std::optional<std::pair<std::uint8_t, std::string>> frame(int timeout_ms = 5000) {
    for (;;) {
      const auto parse = parse_frame(
          {reinterpret_cast<const std::uint8_t*>(in_.data()), in_.size()}, std::size_t{64} << 20);
      EXPECT_NE(parse.status, FrameParse::Status::invalid);
      if (parse.status == FrameParse::Status::complete) {
        auto out = std::make_pair(parse.frame.type,
                                  std::string(parse.frame.body.begin(), parse.frame.body.end()));
        in_.erase(0, parse.consumed);
        return out;
      }
      if (parse.status == FrameParse::Status::invalid || !fill(timeout_ms)) return std::nullopt;
    }
  }
  // Frames until the message events number `count`; JSON events are kept in json_events().
  std::vector<MessageEvent> messages(std::size_t count, std::vector<std::string>& payloads) {
    std::vector<MessageEvent> out;
    while (out.size() < count) {
      auto next = frame();
      if (!next) break;
      if (next->first == static_cast<std::uint8_t>(FrameType::json_event)) {
        json_events_.push_back(json::parse(next->second));
        continue;
      }
      EXPECT_EQ(next->first, static_cast<std::uint8_t>(FrameType::message_event));
      const auto body = std::span<const std::uint8_t>(
          reinterpret_cast<const std::uint8_t*>(next->second.data()), next->second.size());
      auto event = decode_message_event(body);
      EXPECT_TRUE(event.has_value());
      if (!event) break;
      payloads.emplace_back(event->payload.begin(), event->payload.end());
      event->payload = {};
      out.push_back(*event);
    }
    return out;
  }
  const std::vector<json>& json_events() const { return json_events_; }

 private:
  bool fill(int timeout_ms) {
    pollfd readable{fd_, POLLIN, 0};
    if (::poll(&readable, 1, timeout_ms) <= 0) return false;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    in_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string in_;
  std::vector<json> json_events_;
};

const json kOkReply = json{{"ok", true}};

// A binary listener on node 2 and a JSON listener on node 1 of `group`, both in the group.
struct BothListeners {
  BothListeners(const TestCluster& cluster, const std::string& group)
      : binary(cluster.socket_path(2)), text(cluster.socket_path(1), group), group_(group) {}
  bool ready() {
    const json listen{{"op", "listen"}, {"group", group_}, {"format", "binary"}};
    EXPECT_EQ(binary.request(listen), kOkReply);
    return text.read_until(10s, group_has(group_, {1, 2}));
  }
  FrameClient binary;
  Listener text;

 private:
  std::string group_;
};

std::string message_frame(const std::string& text, bool safe) {
  std::string out;
  append_frame(out, safe ? FrameType::safe_message : FrameType::agreed_message,
               std::string_view(text));
  return out;
}

TEST(AgentFrames, FramesReachBinaryAndJsonListenersInOneOrder) {
  TestCluster cluster(2);
  auto agents = start_ring(cluster);
  BothListeners both(cluster, "bulk");
  ASSERT_TRUE(both.ready());
  FrameClient& binary = both.binary;
  Listener& text = both.text;

  FrameClient sender(cluster.socket_path(1));
  EXPECT_EQ(sender.request(json{{"op", "send_stream"}, {"group", "bulk"}}), kOkReply);
  constexpr int kMessages = 300;
  std::string frames;
  for (int i = 0; i < kMessages; ++i) frames += message_frame("m" + std::to_string(i), i % 7 == 0);
  frames += message_frame(std::string("\xff\x00z", 3), false);  // not UTF-8: base64 in JSON
  sender.write(frames);

  std::vector<std::string> payloads;
  const auto events = binary.messages(kMessages + 1, payloads);
  ASSERT_EQ(events.size(), std::size_t{kMessages + 1});
  ASSERT_TRUE(text.read_until(
      10s, [&](const json&) { return text.messages().size() == std::size_t{kMessages + 1}; }));
  const auto json_messages = text.messages();
  for (int i = 0; i <= kMessages; ++i) {
    const json& expected = json_messages[static_cast<std::size_t>(i)];
    const MessageEvent& got = events[static_cast<std::size_t>(i)];
    EXPECT_EQ(got.origin, 1u);
    EXPECT_EQ(to_string(got.ring), expected["ring"]);
    EXPECT_EQ(got.seq, expected["seq"]);
    EXPECT_EQ(got.index, expected["index"]);
    EXPECT_EQ(got.safe, expected["safe"]);
    const auto payload = event_payload(expected);
    ASSERT_TRUE(payload.has_value());
    EXPECT_EQ(payloads[static_cast<std::size_t>(i)], std::string(payload->begin(), payload->end()));
    if (i < kMessages) {
      EXPECT_EQ(payloads[static_cast<std::size_t>(i)], "m" + std::to_string(i));
      EXPECT_EQ(got.safe, i % 7 == 0);
    }
  }
  // The binary listener started with the view and the group as JSON event frames.
  ASSERT_GE(binary.json_events().size(), 2u);
  EXPECT_EQ(binary.json_events()[0]["event"], "view");
  EXPECT_EQ(binary.json_events()[0]["members"], json::array({1, 2}));
  EXPECT_TRUE(group_has("bulk", {1, 2})(binary.json_events().back()));
}

TEST(AgentFrames, ABadFrameEndsTheSendStreamWithAnErrorFrame) {
  TestCluster cluster(1);
  auto agents = start_ring(cluster);
  {
    FrameClient sender(cluster.socket_path(1));
    EXPECT_EQ(sender.request(json{{"op", "send_stream"}, {"group", "g"}}), kOkReply);
    std::string bad;
    append_frame(bad, FrameType::json_event, std::string_view("{}"));
    sender.write(bad);
    const auto last = sender.frame();
    ASSERT_TRUE(last.has_value());
    EXPECT_EQ(last->first, static_cast<std::uint8_t>(FrameType::json_event));
    const json error = json::parse(last->second);
    EXPECT_EQ(error["ok"], false);
    EXPECT_NE(error["error"].get<std::string>().find("unknown send frame type 16"),
              std::string::npos);
    EXPECT_FALSE(sender.frame(2000).has_value());  // closed
  }
  {
    FrameClient sender(cluster.socket_path(1));
    EXPECT_EQ(sender.request(json{{"op", "send_stream"}, {"group", "g"}}), kOkReply);
    sender.write(std::string("\x01\x00\x00\x02", 4));  // longer than any message
    const auto last = sender.frame();
    ASSERT_TRUE(last.has_value());
    EXPECT_NE(json::parse(last->second)["error"].get<std::string>().find("frame length"),
              std::string::npos);
  }
  FrameClient refused(cluster.socket_path(1));
  EXPECT_EQ(refused.request(json{{"op", "send_stream"}, {"group", "bad group"}})["ok"], false);
  EXPECT_EQ(refused.request(json{{"op", "listen"}, {"group", "g"}, {"format", "xml"}})["ok"],
            false);
  EXPECT_TRUE(testing::status_of(cluster.socket_path(1)));  // the agent goes on
}

// More messages than the send queue holds, written at once: the agent stops reading while the
// queue is full and takes the rest as it drains. Nothing is refused or lost.
TEST(AgentFrames, ABulkSenderIsHeldBackNotRefused) {
  TestCluster cluster(2);
  auto agents = start_ring(cluster);
  // On the sending host, which delivers every message it sent in whatever view: the count holds
  // even if a starved machine splits the ring for a moment.
  FrameClient binary(cluster.socket_path(1));
  EXPECT_EQ(binary.request(json{{"op", "listen"}, {"group", "flood"}, {"format", "binary"}}),
            kOkReply);
  const std::size_t count = ring::RingTunables{}.max_send_queue_messages * 3;
  std::thread writer([&] {
    FrameClient sender(cluster.socket_path(1));
    EXPECT_EQ(sender.request(json{{"op", "send_stream"}, {"group", "flood"}}), kOkReply);
    std::string frames;
    for (std::size_t i = 0; i < count; ++i) frames += message_frame(std::to_string(i), false);
    sender.write(frames);
    EXPECT_FALSE(sender.frame(100).has_value());  // no error frame
  });
  std::vector<std::string> payloads;
  const auto events = binary.messages(count, payloads);
  writer.join();
  ASSERT_EQ(payloads.size(), count)
      << "last received: " << (payloads.empty() ? "none" : payloads.back())
      << "\nnode 1: " << testing::status_of(cluster.socket_path(1)).value_or(json()).dump();
  for (std::size_t i = 0; i < count; ++i) EXPECT_EQ(payloads[i], std::to_string(i));
}

// A client that floods a group keeps the ring's send queue as full as clients may make it. The
// agent's own messages still go out: when a third host joins the ring meanwhile, the group sync of
// the new view is sent, and the host's listener is seen joining a group.
TEST(AgentFrames, AFloodingClientDoesNotHoldUpGroupMembership) {
  TestCluster cluster(3);
  AgentThread first(cluster.options(1));
  AgentThread second(cluster.options(2));
  ASSERT_TRUE(testing::wait_until(10s, [&] { return in_ring_of(cluster.socket_path(1), {1, 2}); }));
  Listener watcher(cluster.socket_path(1), "watch");
  ASSERT_TRUE(watcher.read_until(10s, group_has("watch", {1})));

  std::atomic<bool> stop{false};
  std::thread writer([&] {
    // To a group nobody listens to: the flood fills the queue and costs no listener anything.
    FrameClient sender(cluster.socket_path(1));
    EXPECT_EQ(sender.request(json{{"op", "send_stream"}, {"group", "flood"}}), kOkReply);
    std::string frames;
    for (int i = 0; i < 1000; ++i) frames += message_frame("x", false);
    sender.set_send_timeout_s(10);  // a stuck agent fails the test rather than hanging it
    while (!stop && !::testing::Test::HasFailure()) sender.write(frames);
  });
  const auto queued = [&] {
    const auto status = testing::status_of(cluster.socket_path(1));
    return status ? status->value("send_queue", std::size_t{0}) : std::size_t{0};
  };
  const std::size_t clients_limit = ring::RingTunables{}.max_send_queue_messages * 3 / 4;

  std::size_t most_queued = 0;
  const bool saturated = testing::wait_until(10s, [&] {
    most_queued = std::max(most_queued, queued());
    return most_queued >= clients_limit - 100;
  });

  AgentThread third(cluster.options(3));
  Listener newcomer(cluster.socket_path(3), "watch");
  const bool seen = watcher.read_until(20s, group_has("watch", {1, 3}));
  const std::size_t queued_at_end = queued();
  stop = true;
  writer.join();
  EXPECT_TRUE(saturated) << "the flood never filled the send queue: " << most_queued;
  EXPECT_TRUE(seen) << "node 3's listener was never seen in the group; send queue "
                    << queued_at_end;
  EXPECT_LE(queued_at_end, clients_limit + 10);  // the reserve stayed free
}

}  // namespace
}  // namespace keel::agent
