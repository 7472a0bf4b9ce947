#include "core/ring/groups.hpp"

#include <gtest/gtest.h>

#include "core/ring/group_wire.hpp"

namespace keel::ring {
namespace {

View regular(std::uint64_t seq, std::vector<NodeId> members) {
  return View{View::Kind::regular, RingId{seq, members.front()}, {}, std::move(members)};
}

View transitional(std::uint64_t seq, std::uint64_t old_seq, std::vector<NodeId> members) {
  return View{View::Kind::transitional, RingId{seq, 1}, RingId{old_seq, 1}, std::move(members)};
}

DeliveredMessage from(NodeId origin, Bytes payload) {
  DeliveredMessage message;
  message.origin = origin;
  message.payload = std::move(payload);
  return message;
}

Bytes sync_of(RingId ring, std::vector<std::string> groups) {
  return encode_group_message({GroupWireMessage::Kind::sync, {}, {}, ring, std::move(groups)});
}

Bytes join_of(const std::string& group) {
  return encode_group_message({GroupWireMessage::Kind::join, group, {}, {}, {}});
}

std::vector<GroupView> views_in(const std::vector<GroupEvent>& events) {
  std::vector<GroupView> out;
  for (const auto& event : events) {
    if (const auto* view = std::get_if<GroupView>(&event)) out.push_back(*view);
  }
  return out;
}

TEST(GroupWire, RoundTripsEveryKind) {
  const std::vector<GroupWireMessage> messages = {
      {GroupWireMessage::Kind::join, "web", {}, {}, {}},
      {GroupWireMessage::Kind::leave, "web", {}, {}, {}},
      {GroupWireMessage::Kind::data, "web", {1, 2, 3}, {}, {}},
      {GroupWireMessage::Kind::data, "web", {}, {}, {}},
      {GroupWireMessage::Kind::sync, {}, {}, RingId{7, 2}, {"a", "b", "vip"}},
      {GroupWireMessage::Kind::sync, {}, {}, RingId{7, 2}, {}},
  };
  for (const auto& message : messages) {
    auto decoded = decode_group_message(encode_group_message(message));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(decoded.value(), message);
  }
}

TEST(GroupWire, RejectsMalformedInput) {
  EXPECT_FALSE(decode_group_message(Bytes{}).ok());
  EXPECT_FALSE(decode_group_message(Bytes{9, 1, 'a'}).ok());       // unknown kind
  EXPECT_FALSE(decode_group_message(Bytes{1, 0}).ok());            // empty name
  EXPECT_FALSE(decode_group_message(Bytes{1, 3, 'a'}).ok());       // truncated name
  EXPECT_FALSE(decode_group_message(Bytes{1, 1, 'a', 'x'}).ok());  // trailing bytes
  EXPECT_FALSE(decode_group_message(Bytes{1, 2, 'a', ' '}).ok());  // space in name
  Bytes unsorted = sync_of(RingId{1, 1}, {"a"});
  unsorted[13] = 2;  // claim two names, then append one that sorts before the first
  unsorted.insert(unsorted.end(), {1, 'a'});
  EXPECT_FALSE(decode_group_message(unsorted).ok());
}

TEST(GroupWire, ChecksNames) {
  EXPECT_FALSE(check_group_name("frontends").has_value());
  EXPECT_TRUE(check_group_name("").has_value());
  EXPECT_TRUE(check_group_name(std::string(kMaxGroupNameBytes + 1, 'x')).has_value());
  EXPECT_TRUE(check_group_name("with space").has_value());
}

TEST(ProcessGroups, SyncAfterARegularViewBuildsMembership) {
  ProcessGroups groups(1);
  ASSERT_TRUE(groups.join("web").ok());
  const View view = regular(5, {1, 2});
  groups.on_ring_action(view);
  auto submissions = groups.take_submissions();
  ASSERT_EQ(submissions.size(), 1u);
  EXPECT_TRUE(groups.syncing());
  groups.on_ring_action(from(1, submissions[0]));
  EXPECT_TRUE(views_in(groups.take_events()).empty());  // host 2 has not synced yet
  groups.on_ring_action(from(2, sync_of(view.ring, {"db", "web"})));
  EXPECT_FALSE(groups.syncing());
  auto views = views_in(groups.take_events());
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].group, "db");
  EXPECT_EQ(views[0].members, (std::vector<NodeId>{2}));
  EXPECT_EQ(views[1].group, "web");
  EXPECT_EQ(views[1].members, (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(views[1].joined, (std::vector<NodeId>{1, 2}));
}

TEST(ProcessGroups, JoinLeaveAndDataInAgreedOrder) {
  ProcessGroups groups(1);
  const View view = regular(5, {1, 2});
  groups.on_ring_action(view);
  groups.on_ring_action(from(1, sync_of(view.ring, {})));
  groups.on_ring_action(from(2, sync_of(view.ring, {})));
  groups.take_events();
  groups.on_ring_action(from(2, join_of("web")));
  auto views = views_in(groups.take_events());
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].joined, (std::vector<NodeId>{2}));
  auto data = groups.message("web", {42});
  ASSERT_TRUE(data.ok());
  groups.on_ring_action(from(2, data.value()));
  EXPECT_TRUE(groups.take_events().empty()) << "host 1 is not in web";
  auto join = groups.join("web");
  groups.on_ring_action(from(1, join.value()));
  groups.on_ring_action(from(2, data.value()));
  auto events = groups.take_events();
  ASSERT_EQ(events.size(), 2u);
  const auto* message = std::get_if<GroupMessage>(&events[1]);
  ASSERT_NE(message, nullptr);
  EXPECT_EQ(message->payload, Bytes{42});
  EXPECT_EQ(message->origin, 2u);
  auto leave = groups.leave("web");
  groups.on_ring_action(from(2, leave.value()));
  views = views_in(groups.take_events());
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].left, (std::vector<NodeId>{2}));
  EXPECT_EQ(groups.members("web"), (std::vector<NodeId>{1}));
}

TEST(ProcessGroups, TransitionalViewRemovesHostsThatDidNotComeAlong) {
  ProcessGroups groups(1);
  ASSERT_TRUE(groups.join("web").ok());
  const View first = regular(5, {1, 2, 3});
  groups.on_ring_action(first);
  for (NodeId n : {1u, 2u, 3u}) groups.on_ring_action(from(n, sync_of(first.ring, {"web"})));
  groups.take_events();
  groups.on_ring_action(transitional(6, 5, {1, 3}));
  auto views = views_in(groups.take_events());
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].members, (std::vector<NodeId>{1, 3}));
  EXPECT_EQ(views[0].left, (std::vector<NodeId>{2}));
}

// One side of a partition saw host 2 leave "web"; the other did not. After the merge both
// rebuild the group from the syncs and agree.
TEST(ProcessGroups, SidesOfAHealedPartitionAgreeAfterSync) {
  ProcessGroups side_a(1);
  ProcessGroups side_b(3);
  ASSERT_TRUE(side_a.join("web").ok());
  ASSERT_TRUE(side_b.join("web").ok());
  const View before = regular(5, {1, 2, 3});
  for (ProcessGroups* g : {&side_a, &side_b}) {
    g->on_ring_action(before);
    for (NodeId n : {1u, 2u, 3u}) g->on_ring_action(from(n, sync_of(before.ring, {"web"})));
  }
  side_a.on_ring_action(transitional(6, 5, {1, 2}));
  side_a.on_ring_action(regular(6, {1, 2}));
  side_a.on_ring_action(from(1, sync_of(RingId{6, 1}, {"web"})));
  side_a.on_ring_action(from(2, sync_of(RingId{6, 1}, {"web"})));
  side_a.on_ring_action(
      from(2, encode_group_message({GroupWireMessage::Kind::leave, "web", {}, {}, {}})));
  side_b.on_ring_action(transitional(7, 5, {3}));
  side_b.on_ring_action(regular(7, {3}));
  side_b.on_ring_action(from(3, sync_of(RingId{7, 3}, {"web"})));
  EXPECT_EQ(side_a.members("web"), (std::vector<NodeId>{1}));
  EXPECT_EQ(side_b.members("web"), (std::vector<NodeId>{3}));
  const View merged = regular(8, {1, 2, 3});
  for (ProcessGroups* g : {&side_a, &side_b}) {
    g->on_ring_action(merged);
    g->on_ring_action(from(1, sync_of(merged.ring, {"web"})));
    g->on_ring_action(from(2, sync_of(merged.ring, {})));
    g->on_ring_action(from(3, sync_of(merged.ring, {"web"})));
  }
  EXPECT_EQ(side_a.members("web"), (std::vector<NodeId>{1, 3}));
  EXPECT_EQ(side_b.members("web"), side_a.members("web"));
}

TEST(ProcessGroups, IgnoresSyncsOfAnEarlierView) {
  ProcessGroups groups(1);
  groups.on_ring_action(regular(5, {1, 2}));
  groups.on_ring_action(regular(6, {1, 2}));
  groups.on_ring_action(from(2, sync_of(RingId{5, 1}, {"web"})));
  EXPECT_TRUE(groups.syncing());
  EXPECT_TRUE(groups.members("web").empty());
}

}  // namespace
}  // namespace keel::ring
