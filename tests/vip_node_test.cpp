// VipNode (src/core/vip/vip_node.hpp) driven by a hand-made total order: every Broadcast goes to
// one queue and is delivered to every node of the sender's component in queue order, as the
// ring would. The simulator (keel sim --vip) runs the same node on the real ring with faults.
#include "core/vip/vip_node.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <set>

namespace keel::vip {
namespace {

constexpr TimeUs kSettle = 1'000'000;

VipConfig config(std::size_t addresses, std::vector<NodeId> nodes) {
  VipConfig c;
  c.settle_us = kSettle;
  c.startup_us = kSettle;
  PoolConfig pool;
  pool.name = "web";
  for (std::size_t i = 0; i < addresses; ++i) {
    pool.addresses.push_back("198.18.0." + std::to_string(i + 1) + "/24");
  }
  pool.nodes = std::move(nodes);
  c.pools.push_back(pool);
  return c;
}

struct Step {  // one acquire or release, in the order they happened
  NodeId node;
  std::uint32_t address;
  bool acquire;
};

class Cluster {
 public:
  explicit Cluster(VipConfig c, std::vector<NodeId> nodes) : config_(std::move(c)) {
    for (NodeId n : nodes) add(n);
  }

  // `checked`: the host's health check has reported healthy (else it has no result yet).
  void add(NodeId n, std::vector<std::uint32_t> adopted = {}, bool checked = true) {
    nodes_[n] = std::make_unique<VipNode>(n, config_, std::move(adopted));
    if (checked) nodes_[n]->set_healthy(0, true, now_);
    collect(n);
  }
  VipNode& node(NodeId n) { return *nodes_.at(n); }

  // Installs a regular view of `members` (one component) at every member (but those without a
  // VipNode here: members that never send a State).
  void view(std::vector<NodeId> members) {
    const RingId ring{++ring_seq_, members.front()};
    for (NodeId n : members) {
      if (!nodes_.contains(n)) continue;
      node(n).on_view(ring::View{ring::View::Kind::regular, ring, {}, members}, now_);
      collect(n);
    }
    component_[ring] = members;
  }
  // Delivers every queued broadcast to the members of its sender's view, in order.
  void deliver() {
    while (!queue_.empty()) deliver_one();
  }
  // Delivers the oldest queued broadcast only (what it causes is queued behind the rest).
  void deliver_one() {
    ASSERT_FALSE(queue_.empty());
    auto [origin, bytes] = queue_.front();
    queue_.pop_front();
    auto decoded = decode_vip_message(bytes);
    ASSERT_TRUE(decoded.ok());
    for (NodeId n : component_.at(decoded.value().view)) {
      if (!nodes_.contains(n) || node(n).view() != decoded.value().view) continue;
      node(n).on_message(origin, bytes, now_);
      collect(n);
    }
  }
  std::size_t queued() const { return queue_.size(); }
  void advance(TimeUs us) {
    now_ += us;
    for (auto& [n, v] : nodes_) {
      v->on_tick(now_);
      collect(n);
    }
  }
  void settle() {
    for (int i = 0; i < 20; ++i) {
      deliver();
      advance(kSettle);
    }
    deliver();
  }
  TimeUs now() const { return now_; }
  // Runs `n`'s actions as the service does: a State is encoded when its turn comes, and an add on
  // a host in failing_adds fails (the node hears so before the actions after it).
  void collect(NodeId n) {
    for (auto actions = node(n).take_actions(); !actions.empty();
         actions = node(n).take_actions()) {
      for (auto& action : actions) {
        if (std::holds_alternative<Broadcast>(action)) {
          queue_.push_back({n, node(n).state_message()});
        }
        if (auto* a = std::get_if<Acquire>(&action)) {
          if (failing_adds.contains(n)) {
            node(n).acquire_failed(a->address, now_);
          } else {
            steps.push_back({n, a->address, true});
          }
        }
        if (auto* r = std::get_if<Release>(&action)) steps.push_back({n, r->address, false});
        if (auto* t = std::get_if<Notice>(&action)) notices.push_back(t->text);
      }
    }
  }
  std::map<NodeId, std::size_t> counts() {
    std::map<NodeId, std::size_t> out;
    for (auto& [n, v] : nodes_) out[n] = v->held().size();
    return out;
  }
  NodeId holder(std::uint32_t a) {
    NodeId found = kNoNode;
    for (auto& [n, v] : nodes_) {
      if (v->held().count(a) != 0) {
        EXPECT_EQ(found, kNoNode) << "two holders of address " << a;
        found = n;
      }
    }
    return found;
  }

  std::vector<Step> steps;
  std::vector<std::string> notices;
  std::set<NodeId> failing_adds;

 private:
  VipConfig config_;
  std::map<NodeId, std::unique_ptr<VipNode>> nodes_;
  std::deque<std::pair<NodeId, Bytes>> queue_;
  std::map<RingId, std::vector<NodeId>> component_;
  std::uint64_t ring_seq_ = 0;
  TimeUs now_ = 1;
};

TEST(VipNode, AcquiresOnlyAfterSyncAndSettleThenBalances) {
  Cluster c(config(6, {1, 2, 3}), {1, 2, 3});
  c.view({1, 2, 3});
  c.deliver();
  EXPECT_TRUE(c.steps.empty());  // synced, but the settle time has not passed
  EXPECT_EQ(c.node(1).next_deadline(), 1 + kSettle);
  c.advance(kSettle);
  c.deliver();
  EXPECT_EQ(c.counts(), (std::map<NodeId, std::size_t>{{1, 2}, {2, 2}, {3, 2}}));
  for (std::uint32_t a = 0; a < 6; ++a) {
    EXPECT_NE(c.holder(a), kNoNode);
  }
  EXPECT_TRUE(c.node(1).quiescent());
}

TEST(VipNode, FailureMovesOnlyTheFailedNodesAddresses) {
  Cluster c(config(6, {1, 2, 3}), {1, 2, 3});
  c.view({1, 2, 3});
  c.settle();
  std::vector<NodeId> before;
  for (std::uint32_t a = 0; a < 6; ++a) before.push_back(c.holder(a));
  c.steps.clear();
  c.node(3).set_healthy(0, false, c.now());  // stands in for host 3 being gone from the view
  c.collect(3);
  c.view({1, 2});
  c.settle();
  for (std::uint32_t a = 0; a < 6; ++a) {
    if (before[a] != 3) {
      EXPECT_EQ(c.holder(a), before[a]);
    }
    if (before[a] == 3) {
      EXPECT_NE(c.holder(a), 3u);
    }
  }
  EXPECT_EQ(c.node(1).held().size(), 3u);
  EXPECT_EQ(c.node(2).held().size(), 3u);
}

TEST(VipNode, JoinReleasesBeforeTheNewHolderAcquires) {
  Cluster c(config(4, {1, 2}), {1});
  c.view({1});
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 4u);
  c.add(2);
  c.steps.clear();
  c.view({1, 2});
  c.settle();
  EXPECT_EQ(c.node(2).held().size(), 2u);
  std::map<std::uint32_t, bool> released;
  for (const Step& s : c.steps) {
    if (!s.acquire) released[s.address] = true;
    if (s.acquire) {
      EXPECT_TRUE(released[s.address]) << "acquired before the release";
    }
    if (s.acquire) {
      EXPECT_EQ(s.node, 2u);
    }
  }
  EXPECT_EQ(c.steps.size(), 4u);  // two releases, two acquires: only the joiner's share moved
}

TEST(VipNode, DrainHandsOverMakeBeforeBreak) {
  Cluster c(config(4, {1, 2}), {1, 2});
  c.view({1, 2});
  c.settle();
  c.steps.clear();
  c.node(1).drain(c.now());
  c.collect(1);
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 0u);
  EXPECT_EQ(c.node(2).held().size(), 4u);
  std::map<std::uint32_t, bool> acquired;
  for (const Step& s : c.steps) {
    if (s.acquire) acquired[s.address] = true;
    if (!s.acquire) {
      EXPECT_TRUE(acquired[s.address]) << "released before the new holder had it";
    }
  }
  c.node(1).undrain(c.now());
  c.collect(1);
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 2u);
}

// The handover's new owner cannot add the address: its State must not claim it, or the drained
// host would release it and nobody would hold it. The new owner's pool counts as unhealthy
// there, so the drained host, the only other one, keeps what it held.
TEST(VipNode, AFailedAddOnTheHandoverTargetLeavesTheDrainedHostHoldingIt) {
  Cluster c(config(4, {1, 2}), {1, 2});
  c.view({1, 2});
  c.settle();
  const std::set<std::uint32_t> drained_held = c.node(1).held();
  ASSERT_EQ(drained_held.size(), 2u);
  c.failing_adds.insert(2);
  c.node(1).drain(c.now());
  c.collect(1);
  c.settle();
  EXPECT_EQ(c.node(1).held(), drained_held) << "the drained host let go of an address";
  EXPECT_TRUE(c.node(2).held().empty());
  EXPECT_FALSE(c.node(2).healthy(0));
  for (std::uint32_t a = 0; a < 4; ++a) c.holder(a);  // never two holders
}

TEST(VipNode, DrainedHostKeepsAddressesNobodyElseMayHold) {
  Cluster c(config(2, {1}), {1, 2});
  c.view({1, 2});
  c.settle();
  c.node(1).drain(c.now());
  c.collect(1);
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 2u);
  EXPECT_TRUE(c.node(1).quiescent());
}

// A drained host that handed its address over and released it, then is undrained while its
// release is still on its way, must not take the address back from a table that still counts it
// drained (and so keeps it the holder once the new owner loses its health): that table is behind
// what the others decide, and the new owner may be taking the address again meanwhile.
TEST(VipNode, UndrainWaitsForTheTableBeforeTakingAnything) {
  Cluster c(config(1, {1, 2}), {1, 2});
  c.view({1, 2});
  c.settle();
  ASSERT_EQ(c.holder(0), 1u);
  c.node(1).drain(c.now());
  c.collect(1);
  c.deliver_one();  // the drain: host 2 takes the address, make-before-break
  ASSERT_EQ(c.node(2).held().count(0), 1u);
  c.node(2).set_healthy(0, false, c.now());  // and loses it again at once
  c.collect(2);
  c.node(1).undrain(c.now());
  c.collect(1);
  ASSERT_EQ(c.queued(), 3u);  // host 2 holding, host 2 unhealthy, host 1 undrained
  c.deliver_one();            // host 2 holds it: host 1 releases
  EXPECT_TRUE(c.node(1).held().empty());
  c.deliver_one();  // host 2 unhealthy: the table keeps host 1, still drained there, the holder
  EXPECT_TRUE(c.node(1).held().empty()) << "took an address from a table that counts it drained";
  c.settle();
  EXPECT_EQ(c.holder(0), 1u);  // once its undrain is in the table, it takes the address back
}

TEST(VipNode, MergeReleasesDuplicatesOnTheLoser) {
  Cluster c(config(4, {1, 2}), {1, 2});
  c.view({1});
  c.view({2});
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 4u);
  EXPECT_EQ(c.node(2).held().size(), 4u);
  c.steps.clear();
  c.view({1, 2});
  c.settle();
  EXPECT_EQ(c.node(1).held().size(), 2u);
  EXPECT_EQ(c.node(2).held().size(), 2u);
  // Each duplicate went to the holder with fewer so far (ties: lower id): no new holder needed.
  for (const Step& s : c.steps) {
    EXPECT_FALSE(s.acquire);
  }
  EXPECT_EQ(c.steps.size(), 4u);
  EXPECT_TRUE(c.node(1).held().count(0) != 0 && c.node(2).held().count(1) != 0);
}

TEST(VipNode, HealthLossReleasesAtOnceAndQuickRecoveryWaitsForTheTable) {
  Cluster c(config(2, {1, 2}), {1, 2});
  c.view({1, 2});
  c.settle();
  const std::size_t held = c.node(1).held().size();
  ASSERT_EQ(held, 1u);
  c.node(1).set_healthy(0, false, c.now());
  c.collect(1);
  EXPECT_TRUE(c.node(1).held().empty());  // before anything is delivered
  c.node(1).set_healthy(0, true, c.now());
  c.collect(1);
  c.node(1).on_tick(c.now());
  c.collect(1);
  EXPECT_TRUE(c.node(1).held().empty());  // its unhealthy State is not back yet
  c.settle();
  for (std::uint32_t a = 0; a < 2; ++a) {
    EXPECT_NE(c.holder(a), kNoNode);
  }
}

TEST(VipNode, AdoptedAddressesAreKeptWithoutFlapping) {
  Cluster c(config(2, {1, 2}), {2});
  c.add(1, {0});
  c.view({1, 2});
  c.settle();
  EXPECT_EQ(c.holder(0), 1u);
  EXPECT_EQ(c.holder(1), 2u);
  for (const Step& s : c.steps) {
    EXPECT_FALSE(s.node == 1 && s.address == 0);
  }
}

// A restarted agent rejoins before its first health check has a result: its adopted addresses
// stay (their pool counts as healthy, as the agent before it knew it) until a check fails.
TEST(VipNode, AdoptedPoolIsHealthyUntilACheckSaysOtherwise) {
  Cluster c(config(4, {1, 2}), {2});
  c.add(1, {0, 2}, /*checked=*/false);
  c.view({1, 2});
  c.settle();
  EXPECT_EQ(c.holder(0), 1u);
  EXPECT_EQ(c.holder(2), 1u);
  for (const Step& s : c.steps) EXPECT_NE(s.node, 1u) << "the restarted host flapped an address";
  c.node(1).set_healthy(0, false, c.now());
  c.collect(1);
  c.settle();
  EXPECT_EQ(c.counts()[1], 0u);
  EXPECT_EQ(c.counts()[2], 4u);
  // A pool with nothing adopted waits for its first check.
  EXPECT_FALSE(VipNode(3, config(4, {1, 2})).healthy(0));
}

// ... and acts on it as the agent before it would have: it takes its share of the pool.
TEST(VipNode, AdoptedPoolTakesItsShareBeforeItsFirstCheck) {
  Cluster c(config(4, {1, 2}), {2});
  c.add(1, {0}, /*checked=*/false);
  EXPECT_TRUE(c.node(1).presumed(0));
  c.view({1, 2});
  c.settle();
  EXPECT_EQ(c.holder(0), 1u);
  EXPECT_EQ(c.counts()[1], 2u);
  EXPECT_EQ(c.counts()[2], 2u);
  c.node(1).set_healthy(0, true, c.now());
  EXPECT_FALSE(c.node(1).presumed(0));
}

TEST(VipNode, TransitionalViewFreezesAndBadMessagesAreIgnored) {
  Cluster c(config(2, {1, 2}), {1, 2});
  c.view({1, 2});
  c.settle();
  VipNode& n = c.node(1);
  n.on_view(ring::View{ring::View::Kind::transitional, {99, 1}, *n.view(), {1}}, c.now());
  EXPECT_FALSE(n.synced());
  const Bytes garbage{1, 2, 3};
  n.on_message(2, garbage, c.now());
  auto actions = n.take_actions();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Notice>(actions[0]));
}

// A member that never sends a State (no [vip] pools there, or a stuck vip thread) blocks the
// view, as it must: it may hold addresses. It is named, once, after kSilentMemberNoticeUs.
TEST(VipNode, ASilentMemberIsNamedOnceAfterTheNoticeTime) {
  Cluster c(config(2, {1, 2, 3}), {1, 2});
  c.view({1, 2, 3});
  c.deliver();
  EXPECT_FALSE(c.node(1).synced());
  EXPECT_EQ(c.node(1).waiting_for(), std::vector<NodeId>{3});
  EXPECT_EQ(c.node(1).next_deadline(), c.now() + kSilentMemberNoticeUs);
  c.advance(kSilentMemberNoticeUs - 1);
  EXPECT_TRUE(c.notices.empty());
  c.advance(1);
  ASSERT_EQ(c.notices.size(), 2u);  // nodes 1 and 2
  for (const std::string& text : c.notices) {
    EXPECT_NE(text.find("no State with this host's pools from node 3 after 5 s"), std::string::npos)
        << text;
  }
  EXPECT_EQ(c.node(1).next_deadline(), kNever);
  c.advance(kSilentMemberNoticeUs);
  EXPECT_EQ(c.notices.size(), 2u);
  EXPECT_TRUE(c.node(1).held().empty());
  EXPECT_TRUE(c.node(2).held().empty());
  // The next view without it places as usual.
  c.view({1, 2});
  c.settle();
  EXPECT_TRUE(c.node(1).waiting_for().empty());
  EXPECT_EQ(c.counts()[1] + c.counts()[2], 2u);
  EXPECT_EQ(c.notices.size(), 2u);
}

TEST(VipNode, ConfigMismatchBlocksAcquisition) {
  VipConfig other = config(2, {1, 2});
  other.pools[0].addresses[1] = "198.18.0.99/24";
  VipNode a(1, config(2, {1, 2}));
  VipNode b(2, other);
  a.set_healthy(0, true, 1);
  b.set_healthy(0, true, 1);
  const ring::View view{ring::View::Kind::regular, {1, 1}, {}, {1, 2}};
  a.on_view(view, 1);
  b.on_view(view, 1);
  std::vector<std::pair<NodeId, Bytes>> sent;
  for (auto* n : {&a, &b}) {
    for (auto& action : n->take_actions()) {
      if (std::holds_alternative<Broadcast>(action))
        sent.push_back({n->self(), n->state_message()});
    }
  }
  for (auto& [origin, bytes] : sent) a.on_message(origin, bytes, 1 + 2 * kSettle);
  a.on_tick(1 + 2 * kSettle);
  EXPECT_FALSE(a.synced());
  EXPECT_TRUE(a.held().empty());
  bool noticed = false;
  for (auto& action : a.take_actions()) noticed |= std::holds_alternative<Notice>(action);
  EXPECT_TRUE(noticed);
}

}  // namespace
}  // namespace keel::vip

namespace keel::vip {
namespace {

// A host that starts alone (most likely a restarted one that has not found the others yet) takes
// nothing during startup_us; once it has shared a view with another host, a failure is taken
// over with no wait at all (settle_us 0, the default).
TEST(VipNodeStartup, AloneAtStartWaitsButFailoverDoesNot) {
  VipConfig c = config(2, {1, 2});
  c.settle_us = 0;
  c.startup_us = 2'000'000;
  Cluster cluster(c, {1, 2});
  cluster.view({1});
  cluster.deliver();
  cluster.advance(1'000'000);
  cluster.deliver();
  EXPECT_TRUE(cluster.node(1).held().empty()) << "took addresses while alone at startup";
  cluster.view({1, 2});
  cluster.deliver();
  cluster.advance(1);
  cluster.deliver();
  EXPECT_EQ(cluster.counts(), (std::map<NodeId, std::size_t>{{1, 1}, {2, 1}}));
  cluster.view({1});  // node 2 fails
  cluster.deliver();
  cluster.advance(1);
  cluster.deliver();
  EXPECT_EQ(cluster.node(1).held().size(), 2u) << "failover waited for the startup time";
}

}  // namespace
}  // namespace keel::vip

namespace keel::vip {
namespace {

// An adopted address was left by the agent before this one; while it was gone another host may
// have taken it over. It stays unconfirmed (not to be announced) while the restarted host is
// alone within its startup time, and until placement in a settled view with the others gives it
// here.
TEST(VipNodeAdopted, UnconfirmedUntilPlacementWithTheOthersGivesItHere) {
  Cluster c(config(2, {1, 2}), {2});
  c.add(1, {0}, /*checked=*/false);
  EXPECT_TRUE(c.node(1).unconfirmed(0));
  EXPECT_FALSE(c.node(1).unconfirmed(1));
  c.view({1});
  c.deliver();
  c.advance(kSettle / 2);  // the startup time is kSettle
  c.deliver();
  EXPECT_TRUE(c.node(1).synced());
  EXPECT_TRUE(c.node(1).unconfirmed(0)) << "confirmed while alone at startup";
  c.view({1, 2});
  c.deliver();
  EXPECT_EQ(c.node(1).owner(0), 1u);
  EXPECT_TRUE(c.node(1).unconfirmed(0)) << "confirmed before the view settled";
  EXPECT_EQ(c.node(1).next_deadline(), c.now() + kSettle);
  c.advance(kSettle);
  EXPECT_FALSE(c.node(1).unconfirmed(0));
  EXPECT_EQ(c.holder(0), 1u);
}

// Placement in the first view with the others gives it elsewhere (here: the other host took it
// over meanwhile and is its preferred host): released without ever being confirmed.
TEST(VipNodeAdopted, PlacedElsewhereIsReleasedUnconfirmed) {
  VipConfig with_preference = config(2, {1, 2});
  with_preference.pools[0].preferred["198.18.0.1/24"] = 2;
  Cluster c(with_preference, {});
  c.add(2, {0});  // took it over while node 1 was down
  c.add(1, {0}, /*checked=*/false);
  c.view({1});
  c.view({2});
  c.deliver();
  c.view({1, 2});
  while (c.queued() > 0) {
    c.deliver_one();
    EXPECT_TRUE(c.node(1).unconfirmed(0) || c.node(1).held().count(0) == 0)
        << "node 1 was told the address is its own";
  }
  c.settle();
  EXPECT_EQ(c.holder(0), 2u);
  EXPECT_FALSE(c.node(1).unconfirmed(0));
}

// Alone, a host cannot tell a dead cluster from one it has not found yet: it confirms an adopted
// address when it would take an address without holder, after the startup time. Only when no
// other host may hold the address (a pool of one node) is it confirmed at once.
TEST(VipNodeAdopted, AloneConfirmedAfterTheStartupTimeOrAtOnceInAPoolOfOne) {
  Cluster survivor(config(1, {1, 2}), {});  // one address: the deadline is its own
  survivor.add(1, {0}, /*checked=*/false);
  survivor.view({1});
  survivor.deliver();
  EXPECT_TRUE(survivor.node(1).unconfirmed(0));
  EXPECT_EQ(survivor.node(1).next_deadline(), survivor.now() + kSettle);
  survivor.advance(kSettle);
  EXPECT_FALSE(survivor.node(1).unconfirmed(0));
  EXPECT_EQ(survivor.holder(0), 1u);

  Cluster alone(config(1, {1}), {});
  alone.add(1, {0}, /*checked=*/false);
  EXPECT_TRUE(alone.node(1).unconfirmed(0));
  alone.view({1});
  alone.deliver();
  EXPECT_FALSE(alone.node(1).unconfirmed(0));
  EXPECT_EQ(alone.holder(0), 1u);
}

}  // namespace
}  // namespace keel::vip
