// ControlSession on a socket pair: a listener that stops reading is cut off with a final error
// line once its backlog passes the bound, instead of the agent's memory growing; and the
// protocol's encodings (UTF-8 check, base64, events).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/control_protocol.hpp"
#include "agent/control_session.hpp"

namespace keel::agent {
namespace {

using nlohmann::json;

// Reads everything until end of file.
std::string read_all(int fd) {
  std::string out;
  char buffer[65536];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got <= 0) return out;
    out.append(buffer, static_cast<std::size_t>(got));
  }
}

TEST(AgentSession, ASlowListenerIsDisconnectedWithAnErrorLine) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  asio::io_context io;
  bool closed = false;
  auto session = std::make_shared<ControlSession>(
      asio::local::stream_protocol::socket(io, asio::local::stream_protocol(), fds[0]), 1,
      [](ControlSession&, const std::string&) {}, [&](ControlSession&) { closed = true; });
  session->set_listening("g");
  const std::string event(1 << 20, 'e');  // the peer reads nothing meanwhile
  using Streamed = ControlSession::Streamed;
  std::size_t accepted = 0;
  Streamed outcome;
  while ((outcome = session->stream_line(event)) == Streamed::queued) ++accepted;
  EXPECT_EQ(outcome, Streamed::disconnected);
  EXPECT_GE(accepted, kMaxListenerBacklogBytes / event.size() - 1);
  EXPECT_LE(accepted, kMaxListenerBacklogBytes / event.size() + 1);
  // Reported once: later events are dropped without another disconnection (or log line).
  EXPECT_EQ(session->stream_line("late"), Streamed::dropped);
  std::string received;
  std::thread reader([&] { received = read_all(fds[1]); });
  io.run();  // returns once the session wrote its last line and closed
  reader.join();
  ::close(fds[1]);
  EXPECT_TRUE(closed);
  ASSERT_FALSE(received.empty());
  ASSERT_EQ(received.back(), '\n');
  const auto last_start = received.rfind('\n', received.size() - 2) + 1;
  const json last = json::parse(received.substr(last_start));
  EXPECT_EQ(last["ok"], false);
  EXPECT_NE(last["error"].get<std::string>().find("fell"), std::string::npos);
  // Only whole lines were written: every line before the last is a complete event.
  EXPECT_EQ(last_start % (event.size() + 1), 0u);
}

TEST(AgentProtocol, Utf8IsCheckedStrictly) {
  auto bytes = [](std::initializer_list<int> values) {
    Bytes out;
    for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
    return out;
  };
  EXPECT_TRUE(valid_utf8(bytes({'a', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80})));
  EXPECT_TRUE(valid_utf8(bytes({})));
  EXPECT_FALSE(valid_utf8(bytes({0xff})));
  EXPECT_FALSE(valid_utf8(bytes({0xc0, 0x80})));              // overlong
  EXPECT_FALSE(valid_utf8(bytes({0xed, 0xa0, 0x80})));        // surrogate
  EXPECT_FALSE(valid_utf8(bytes({0xf4, 0x90, 0x80, 0x80})));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8(bytes({0xe2, 0x82})));              // cut short
}

// The scan before parsing follows strings (brackets and escaped quotes in them are text) and
// stops at the first bracket or byte past its bounds.
TEST(AgentProtocol, RequestsTooDeepOrWithTooMuchOutsideStringsAreRefused) {
  const auto nested = [](std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  EXPECT_FALSE(request_structure_error(nested(kMaxRequestDepth)));
  const auto deep = request_structure_error(nested(kMaxRequestDepth + 1));
  ASSERT_TRUE(deep);
  EXPECT_EQ(*deep, "a request may nest arrays and objects at most 64 deep");
  // Closed brackets do not count towards the depth.
  std::string siblings = "[";
  for (int i = 0; i < 20; ++i) siblings += nested(kMaxRequestDepth - 1) + ",";
  siblings += "1]";
  EXPECT_FALSE(request_structure_error(siblings).has_value()) << siblings.size();

  const std::string brackets_in_strings = R"({"op":"send","group":"g","message":")" +
                                          std::string(100'000, '[') +
                                          R"("[{\\"[","message_base64":"\"})";
  EXPECT_FALSE(request_structure_error(brackets_in_strings));
  // An escaped quote does not end the string; an escaped backslash before a quote does.
  EXPECT_FALSE(request_structure_error(R"([""[[[[", "\\"])"));
  EXPECT_TRUE(request_structure_error(R"(["\\")" + nested(kMaxRequestDepth) + R"("])"));

  std::string flat = "[";
  for (std::size_t i = 0; i < (kMaxRequestStructureBytes - 4) / 2; ++i) flat += "1,";
  flat += "1] ";
  ASSERT_EQ(flat.size(), kMaxRequestStructureBytes);
  EXPECT_FALSE(request_structure_error(flat));
  const auto wide = request_structure_error(flat + " ");
  ASSERT_TRUE(wide);
  EXPECT_EQ(*wide, "a request may hold at most 4096 bytes outside its strings");
  EXPECT_FALSE(request_structure_error(R"({"op":"status"})"));
  EXPECT_FALSE(request_structure_error(""));
}

TEST(AgentProtocol, Base64RoundTripsAndRejectsJunk) {
  const Bytes data{0, 1, 2, 0xff, 0xfe};
  EXPECT_EQ(base64_encode(data), "AAEC//4=");
  EXPECT_EQ(base64_decode("AAEC//4="), data);
  EXPECT_EQ(base64_decode(""), Bytes{});
  EXPECT_FALSE(base64_decode("AAE!"));
  EXPECT_FALSE(base64_decode("AAEC//4=x"));
}

TEST(AgentProtocol, EventsCarryTheDocumentedFields) {
  const ring::View view{ring::View::Kind::transitional, RingId{12, 1}, RingId{11, 2}, {1, 2}};
  EXPECT_EQ(view_event(view), json::parse(R"({"event":"view","kind":"transitional",
      "ring":"12.1","previous_ring":"11.2","members":[1,2]})"));
  ring::DeliveredMessage carrier;
  carrier.origin = 2;
  carrier.ring = RingId{12, 1};
  carrier.seq = 7;
  carrier.index = 1;
  carrier.safe = true;
  const ring::GroupMessage text{"g", 2, true, Bytes{'h', 'i', '\n'}};
  EXPECT_EQ(message_event(text, carrier), json::parse(R"({"event":"message","group":"g",
      "origin":2,"ring":"12.1","seq":7,"index":1,"safe":true,"message":"hi\n"})"));
  const ring::GroupMessage binary{"g", 2, true, Bytes{0xff}};
  EXPECT_EQ(message_event(binary, carrier)["message_base64"], "/w==");
  EXPECT_EQ(event_payload(message_event(binary, carrier)), Bytes{0xff});
  const ring::GroupView group{"g", {1, 2}, {2}, {}};
  EXPECT_EQ(group_view_event(group), json::parse(R"({"event":"group_view","group":"g",
      "members":[1,2],"joined":[2],"left":[]})"));
}

}  // namespace
}  // namespace keel::agent
