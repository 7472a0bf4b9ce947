// The checks the e2e tests and the demo run on `keel ring listen --json` logs
// (src/lab/ring_log.hpp), each shown to catch what it is for; and the status parser.
#include <gtest/gtest.h>

#include "lab/agent_status.hpp"
#include "lab/ring_log.hpp"

namespace keel::lab {
namespace {

// A tiny builder of listen logs.
struct LogBuilder {
  ListenLog log;
  LogBuilder(int host, int incarnation = 0) { log = ListenLog{host, incarnation, {}}; }
  LogBuilder& join(std::vector<int> members) {
    log.events.push_back(GroupViewEvent{"t", std::move(members)});
    return *this;
  }
  LogBuilder& view(std::uint64_t ring, std::vector<int> members) {
    log.events.push_back(ViewEvent{true, RingId{ring, 1}, RingId{}, std::move(members)});
    return *this;
  }
  LogBuilder& transitional(std::uint64_t ring, std::uint64_t previous, std::vector<int> members) {
    log.events.push_back(
        ViewEvent{false, RingId{ring, 1}, RingId{previous, 1}, std::move(members)});
    return *this;
  }
  LogBuilder& message(const std::string& text, std::uint64_t ring, std::uint64_t seq) {
    const int origin = text[1] - '0';
    log.events.push_back(MessageEvent{"t", origin, RingId{ring, 1}, seq, 0, false, text});
    return *this;
  }
};

SentMessages sent_all(std::initializer_list<std::string> texts) {
  SentMessages sent;
  for (const auto& text : texts) {
    sent[text] = SentMessage{text[1] - '0', std::stoull(text.substr(3)), SendOutcome::acknowledged};
  }
  return sent;
}

const SentMessages kSent = sent_all({"h1-1", "h1-2", "h2-1", "h2-2", "h3-1"});

// h1 and h2 share ring 10, then move together to ring 11 without h3.
std::vector<ListenLog> good_logs() {
  return {LogBuilder(1)
              .join({1, 2})
              .message("h1-1", 10, 1)
              .message("h2-1", 10, 2)
              .transitional(11, 10, {1, 2})
              .view(11, {1, 2})
              .message("h1-2", 11, 1)
              .transitional(12, 11, {1, 2})
              .view(12, {1, 2})
              .log,
          LogBuilder(2)
              .join({1, 2})
              .message("h1-1", 10, 1)
              .message("h2-1", 10, 2)
              .transitional(11, 10, {1, 2})
              .view(11, {1, 2})
              .message("h1-2", 11, 1)
              .transitional(12, 11, {1, 2})
              .view(12, {1, 2})
              .log};
}

bool mentions(const LogCheck& check, const std::string& text) {
  for (const auto& problem : check.problems) {
    if (problem.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(LabRingLog, ParsesTheAgentsEvents) {
  const std::string text =
      "{\"event\":\"group_view\",\"group\":\"t\",\"joined\":[2],\"left\":[],\"members\":[2,1]}\n"
      "{\"event\":\"view\",\"kind\":\"transitional\",\"ring\":\"17.2\",\"previous_ring\":\"16.1\","
      "\"members\":[2,1]}\n"
      "{\"event\":\"message\",\"group\":\"t\",\"index\":3,\"message\":\"h1-4\",\"origin\":1,"
      "\"ring\":\"16.1\",\"safe\":true,\"seq\":5}\n"
      "{\"event\":\"view\",\"kin";  // still being written
  auto log = parse_listen_log(text, 2, 1);
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_EQ(log.value().name(), "h2#1");
  ASSERT_EQ(log.value().events.size(), 3u);
  EXPECT_EQ(std::get<GroupViewEvent>(log.value().events[0]).members, (std::vector<int>{1, 2}));
  const auto& view = std::get<ViewEvent>(log.value().events[1]);
  EXPECT_FALSE(view.regular);
  EXPECT_EQ(view.ring, (RingId{17, 2}));
  EXPECT_EQ(view.previous_ring, (RingId{16, 1}));
  const auto& message = std::get<MessageEvent>(log.value().events[2]);
  EXPECT_EQ(message.origin, 1);
  EXPECT_EQ(message.seq, 5u);
  EXPECT_EQ(message.index, 3u);
  EXPECT_TRUE(message.safe);
  EXPECT_EQ(message.message, "h1-4");
  EXPECT_EQ(log.value().count_messages(), 1u);

  EXPECT_FALSE(parse_listen_log("{\"event\":\"bogus\"}\n", 1, 0).ok());
  EXPECT_FALSE(parse_listen_line("{\"event\":\"view\",\"kind\":\"regular\",\"ring\":\"x\"}").ok());
  EXPECT_FALSE(parse_ring_id("12").ok());
  EXPECT_FALSE(parse_ring_id("12.x").ok());
}

TEST(LabRingLog, GoodLogsPass) {
  const LogCheck check = check_listen_logs(good_logs(), kSent);
  EXPECT_TRUE(check.ok()) << check.summary();
  EXPECT_EQ(check.deliveries, 6u);
  EXPECT_EQ(check.distinct_messages, 3u);
  EXPECT_EQ(check.views, 8u);
}

TEST(LabRingLog, CatchesDifferentOrders) {
  auto logs = good_logs();
  logs[1] = LogBuilder(2).join({1, 2}).message("h2-1", 10, 1).message("h1-1", 10, 2).log;
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "order: 'h1-1'"));
  logs[1] = LogBuilder(2).join({1, 2}).message("h1-1", 10, 2).message("h2-1", 10, 1).log;
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "order: h2 delivered"));
}

TEST(LabRingLog, CatchesDuplicatesInventionsAndWrongOrigins) {
  auto logs = good_logs();
  logs[0].events.push_back(MessageEvent{"t", 1, RingId{12, 1}, 9, 0, false, "h1-1"});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "'h1-1' twice"));
  logs = good_logs();
  logs[0].events.push_back(MessageEvent{"t", 3, RingId{12, 1}, 9, 0, false, "h3-9"});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "nobody sent"));
  logs = good_logs();
  logs[0].events.push_back(MessageEvent{"t", 2, RingId{12, 1}, 9, 0, false, "h3-1"});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "with origin 2"));
}

TEST(LabRingLog, CatchesOwnMessagesOutOfOrderUnlessUnacknowledged) {
  const std::vector<ListenLog> logs = {
      LogBuilder(1).join({1}).message("h1-2", 10, 1).message("h1-1", 10, 2).log};
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "own FIFO"));
  SentMessages sent = kSent;
  sent["h1-1"].outcome = SendOutcome::unknown;  // its send timed out: no order was promised
  EXPECT_TRUE(check_listen_logs(logs, sent).ok());
}

TEST(LabRingLog, CatchesHostsThatMoveTogetherWithDifferentMessages) {
  auto logs = good_logs();
  // h2 misses h1-2 in ring 11 yet moves to ring 12 with h1.
  logs[1] = LogBuilder(2)
                .join({1, 2})
                .message("h1-1", 10, 1)
                .message("h2-1", 10, 2)
                .transitional(11, 10, {1, 2})
                .view(11, {1, 2})
                .transitional(12, 11, {1, 2})
                .view(12, {1, 2})
                .log;
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "synchrony: moving from regular 11.1"));
}

TEST(LabRingLog, SkipsTheViewInWhichAListenerJoined) {
  auto logs = good_logs();
  // h2's listener joined during ring 11, after h1-2: it cannot have that message.
  logs[1] = LogBuilder(2)
                .transitional(11, 10, {1, 2})
                .view(11, {1, 2})
                .join({1, 2})
                .transitional(12, 11, {1, 2})
                .view(12, {1, 2})
                .log;
  EXPECT_TRUE(check_listen_logs(logs, kSent).ok()) << check_listen_logs(logs, kSent).summary();
}

TEST(LabRingLog, CatchesViewDisagreementsAndBadViews) {
  auto logs = good_logs();
  logs[1].events.push_back(ViewEvent{true, RingId{13, 1}, RingId{}, {1, 2}});
  logs[0].events.push_back(ViewEvent{true, RingId{13, 1}, RingId{}, {1, 2, 3}});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "agreement: regular 13.1"));
  logs = good_logs();
  logs[0].events.push_back(ViewEvent{true, RingId{9, 1}, RingId{}, {1}});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "installed ring 9.1 after ring 12.1"));
  logs = good_logs();
  logs[0].events.push_back(ViewEvent{true, RingId{14, 1}, RingId{}, {2}});
  EXPECT_TRUE(mentions(check_listen_logs(logs, kSent), "without itself"));
}

TEST(LabRingLog, OwnDeliveryAndFingerprints) {
  const auto logs = good_logs();
  EXPECT_TRUE(check_own_delivery(logs[0], kSent).empty());
  const auto missing = check_own_delivery(logs[1], kSent);  // h2-2 was acknowledged, never seen
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_NE(missing[0].find("'h2-2'"), std::string::npos);

  std::size_t count = 0;
  const std::string a = last_view_fingerprint(
      LogBuilder(1).view(5, {1}).message("h1-1", 5, 1).message("h1-2", 5, 2).log, count);
  EXPECT_EQ(count, 2u);
  const std::string b = last_view_fingerprint(LogBuilder(1)
                                                  .message("h2-1", 4, 1)
                                                  .view(5, {1})
                                                  .message("h1-1", 5, 1)
                                                  .message("h1-2", 5, 2)
                                                  .log,
                                              count);
  const std::string c = last_view_fingerprint(
      LogBuilder(1).view(5, {1}).message("h1-2", 5, 1).message("h1-1", 5, 2).log, count);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(LabAgentStatus, ParsesTheStatusReply) {
  auto view = parse_agent_status(
      "{\"ok\":true,\"node\":{\"id\":2,\"name\":\"h2\"},\"state\":\"operational\","
      "\"ring\":\"12.1\",\"members\":[{\"id\":3,\"name\":\"h3\"},{\"id\":1,\"name\":\"h1\"}],"
      "\"peers\":[]}");
  ASSERT_TRUE(view.ok()) << view.error().message;
  EXPECT_TRUE(view.value().operational());
  EXPECT_EQ(view.value().ring, "12.1");
  EXPECT_EQ(view.value().members, (std::vector<int>{1, 3}));
  EXPECT_EQ(describe(view.value()), "operational, ring 12.1, members 1 3");

  auto starting = parse_agent_status("{\"state\":\"gather\",\"ring\":null,\"members\":[]}");
  ASSERT_TRUE(starting.ok());
  EXPECT_FALSE(starting.value().operational());
  EXPECT_EQ(starting.value().ring, "");
  EXPECT_FALSE(parse_agent_status("not json").ok());
}

}  // namespace
}  // namespace keel::lab
