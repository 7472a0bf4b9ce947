// Scripted scenarios: the real ring on the simulated cluster, one claim of the protocol per test
// (formation, failure, partition and merge, flapping, token loss, pauses, one-way links, loss).
// Every checker runs throughout; each test also asserts the concrete views and deliveries.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "ring_test_support.hpp"
#include "sim/cluster.hpp"

namespace keel::sim {
namespace {

// The same names as totem_claims_test.cpp's (a unity build may put both in one unit).
using ring::test_support::kMs;
using ring::test_support::kSecond;

std::vector<NodeId> range(NodeId first, NodeId last) {
  std::vector<NodeId> ids;
  for (NodeId id = first; id <= last; ++id) ids.push_back(id);
  return ids;
}

class Scenario {
 public:
  explicit Scenario(std::size_t hosts, std::uint64_t seed = 1, double loss = 0.0)
      : cluster_(options(hosts, seed, loss)) {
    cluster_.set_observer([this](NodeId host, const ring::Action& action, TimeUs) {
      if (const auto* view = std::get_if<ring::View>(&action)) {
        ++views_[host];
        if (view->regular()) ++regular_views_;
      } else if (const auto* m = std::get_if<ring::DeliveredMessage>(&action)) {
        delivered_[host].push_back(parse_message_id(m->payload).value());
      }
    });
  }

  static ClusterOptions options(std::size_t hosts, std::uint64_t seed, double loss) {
    ClusterOptions o;
    o.hosts = hosts;
    o.seed = seed;
    o.network = NetworkOptions{loss, 0.0, 50, 300};
    return o;
  }

  SimCluster& cluster() { return cluster_; }

  // Runs until every host in `hosts` is operational in a regular view with exactly `members`.
  bool settle(const std::vector<NodeId>& hosts, const std::vector<NodeId>& members, TimeUs within) {
    return cluster_.run_until(
        [&] {
          return std::all_of(hosts.begin(), hosts.end(), [&](NodeId h) {
            const ring::Ring* r = cluster_.ring(h);
            return cluster_.state(h) == HostState::up && r->state() == ring::State::operational &&
                   r->view() && r->view()->members == members;
          });
        },
        cluster_.now() + within);
  }

  bool converge(TimeUs within) {
    return cluster_.run_until([&] { return cluster_.converged(); }, cluster_.now() + within);
  }

  std::vector<MessageId> submit_from(const std::vector<NodeId>& hosts, int each) {
    std::vector<MessageId> ids;
    for (int i = 0; i < each; ++i) {
      for (NodeId h : hosts) {
        const auto kind = i % 4 == 3 ? ring::DeliveryKind::safe : ring::DeliveryKind::agreed;
        const std::size_t filler = i % 5 == 4 ? 3000 : static_cast<std::size_t>(20 * i);
        if (auto id = cluster_.submit(h, filler, kind)) ids.push_back(*id);
      }
    }
    return ids;
  }

  std::vector<MessageId> delivered_since(NodeId host, std::size_t from) {
    const auto& all = delivered_[host];
    return std::vector<MessageId>(all.begin() + static_cast<std::ptrdiff_t>(from), all.end());
  }
  std::size_t delivered_count(NodeId host) { return delivered_[host].size(); }
  std::uint64_t regular_views() const { return regular_views_; }

  // Every host in `hosts` delivered exactly `ids` (as a set) since `marks`, in one common order.
  void expect_same_deliveries(const std::vector<NodeId>& hosts, std::map<NodeId, std::size_t> marks,
                              const std::vector<MessageId>& ids) {
    const auto reference = delivered_since(hosts.front(), marks[hosts.front()]);
    auto sorted_reference = reference;
    auto sorted_ids = ids;
    std::sort(sorted_reference.begin(), sorted_reference.end());
    std::sort(sorted_ids.begin(), sorted_ids.end());
    EXPECT_EQ(sorted_reference, sorted_ids);
    for (NodeId h : hosts) EXPECT_EQ(delivered_since(h, marks[h]), reference) << "host " << h;
  }

  std::map<NodeId, std::size_t> marks() {
    std::map<NodeId, std::size_t> m;
    for (NodeId h = 1; h <= cluster_.hosts(); ++h) m[h] = delivered_count(h);
    return m;
  }

  void expect_clean() {
    if (!cluster_.checker().failed()) return;
    std::string tail;
    for (const auto& line : cluster_.trace().tail()) tail += line + "\n";
    ADD_FAILURE() << cluster_.checker().violation()->text << "\n" << tail;
  }

 private:
  SimCluster cluster_;
  std::map<NodeId, std::vector<MessageId>> delivered_;
  std::map<NodeId, int> views_;
  std::uint64_t regular_views_ = 0;
};

TEST(ScenarioRing, FormsOneRingFrom2To16Hosts) {
  for (std::size_t n = 2; n <= 16; ++n) {
    Scenario s(n, n);
    ASSERT_TRUE(s.converge(2 * kSecond)) << n << " hosts";
    const auto view = s.cluster().view(1);
    EXPECT_EQ(view->members, range(1, static_cast<NodeId>(n)));
    for (NodeId h = 2; h <= n; ++h) EXPECT_EQ(s.cluster().view(h)->ring, view->ring);
    const auto marks = s.marks();
    const auto ids = s.submit_from(range(1, static_cast<NodeId>(n)), 3);
    s.cluster().run_for(kSecond);
    s.expect_same_deliveries(range(1, static_cast<NodeId>(n)), marks, ids);
    s.expect_clean();
  }
}

TEST(ScenarioRing, SingleCrashIsDetectedWithinASecond) {
  Scenario s(5);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.cluster().run_for(500 * kMs);
  s.cluster().crash(3);
  const TimeUs crashed_at = s.cluster().now();
  const std::vector<NodeId> survivors = {1, 2, 4, 5};
  ASSERT_TRUE(s.settle(survivors, survivors, 2 * kSecond));
  EXPECT_LT(s.cluster().now() - crashed_at, kSecond);
  const auto marks = s.marks();
  const auto ids = s.submit_from(survivors, 5);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(survivors, marks, ids);
  s.expect_clean();
}

// A host that stops gracefully announces it; the others must not wait for a token timeout.
TEST(ScenarioRing, GracefulLeaveReformsWithoutWaitingForTheTokenTimeout) {
  Scenario s(5);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.submit_from({1, 2, 3, 4, 5}, 5);
  s.cluster().run_for(200 * kMs);
  s.cluster().stop(4);
  const TimeUs stopped_at = s.cluster().now();
  const std::vector<NodeId> survivors = {1, 2, 3, 5};
  ASSERT_TRUE(s.settle(survivors, survivors, 2 * kSecond));
  const TimeUs token_timeout = ms_to_us(ring::RingTunables{}.token_timeout_ms);
  EXPECT_LT(s.cluster().now() - stopped_at, token_timeout);
  const auto marks = s.marks();
  const auto ids = s.submit_from(survivors, 5);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(survivors, marks, ids);
  s.expect_clean();
}

TEST(ScenarioRing, CascadingFailures) {
  Scenario s(7, 3);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.submit_from(range(1, 7), 10);
  for (NodeId victim : {7, 6, 5}) {
    s.cluster().crash(victim);
    s.cluster().run_for(120 * kMs);  // the next failure arrives while membership is running
  }
  const auto survivors = range(1, 4);
  ASSERT_TRUE(s.settle(survivors, survivors, 3 * kSecond));
  const auto marks = s.marks();
  const auto ids = s.submit_from(survivors, 5);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(survivors, marks, ids);
  s.cluster().heal_all();  // restart the crashed hosts: all seven come back together
  ASSERT_TRUE(s.converge(5 * kSecond));
  s.expect_clean();
}

TEST(ScenarioRing, PartitionFormsTwoRingsThatMergeOnHeal) {
  Scenario s(5, 4);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.cluster().partition({{1, 2}, {3, 4, 5}});
  ASSERT_TRUE(s.settle({1, 2}, {1, 2}, 2 * kSecond));
  ASSERT_TRUE(s.settle({3, 4, 5}, {3, 4, 5}, 2 * kSecond));
  const auto marks = s.marks();
  const auto left = s.submit_from({1, 2}, 4);
  const auto right = s.submit_from({3, 4, 5}, 4);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries({1, 2}, marks, left);
  s.expect_same_deliveries({3, 4, 5}, marks, right);
  s.cluster().heal_network();
  ASSERT_TRUE(s.converge(3 * kSecond));
  const auto after = s.marks();
  const auto all = s.submit_from(range(1, 5), 4);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(range(1, 5), after, all);
  s.expect_clean();
}

TEST(ScenarioRing, FlappingHostSettles) {
  Scenario s(5, 5);
  ASSERT_TRUE(s.converge(2 * kSecond));
  for (int i = 0; i < 10; ++i) {
    i % 2 == 0 ? s.cluster().isolate(5) : s.cluster().rejoin(5);
    s.submit_from({1, 2}, 2);
    s.cluster().run_for(150 * kMs);
  }
  s.cluster().rejoin(5);
  ASSERT_TRUE(s.converge(10 * kSecond));
  const auto marks = s.marks();
  const auto ids = s.submit_from(range(1, 5), 3);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(range(1, 5), marks, ids);
  s.expect_clean();
}

TEST(ScenarioRing, TokenLossUnderLoadIsRepaired) {
  Scenario s(4, 6);
  ASSERT_TRUE(s.converge(2 * kSecond));
  const auto marks = s.marks();
  const auto ids = s.submit_from(range(1, 4), 50);
  s.cluster().run_for(2 * kMs);
  s.cluster().set_loss(1.0);  // everything in flight from now on is lost, tokens too
  s.cluster().run_for(25 * kMs);
  s.cluster().set_loss(0.0);
  s.cluster().run_for(3 * kSecond);
  ASSERT_TRUE(s.converge(3 * kSecond));
  s.expect_same_deliveries(range(1, 4), marks, ids);
  const auto coverage = s.cluster().coverage();
  EXPECT_GT(coverage[static_cast<std::size_t>(ring::Mark::token_retransmitted)], 0u);
  s.expect_clean();
}

TEST(ScenarioRing, HostPausedLongerThanTheTokenTimeoutRejoins) {
  Scenario s(4, 7);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.cluster().pause(2);
  ASSERT_TRUE(s.settle({1, 3, 4}, {1, 3, 4}, 2 * kSecond));
  s.submit_from({1, 3, 4}, 3);
  s.cluster().run_for(kSecond);
  s.cluster().resume(2);
  ASSERT_TRUE(s.converge(3 * kSecond));
  EXPECT_EQ(s.cluster().incarnation(2), 1u);  // the same process, not a restart
  const auto marks = s.marks();
  const auto ids = s.submit_from(range(1, 4), 3);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(range(1, 4), marks, ids);
  s.expect_clean();
}

TEST(ScenarioRing, OneWayLinkSettlesIntoAStableRing) {
  Scenario s(4, 8);
  ASSERT_TRUE(s.converge(2 * kSecond));
  s.cluster().cut(1, 2);  // 1 cannot reach 2; 2 still reaches 1
  s.cluster().run_for(5 * kSecond);
  const std::uint64_t views_before = s.regular_views();
  s.cluster().run_for(5 * kSecond);
  EXPECT_EQ(s.regular_views(), views_before) << "membership keeps changing";
  for (NodeId h = 1; h <= 4; ++h) {
    EXPECT_EQ(s.cluster().ring(h)->state(), ring::State::operational) << "host " << h;
  }
  // Whatever ring formed can carry traffic among its members.
  const auto members = s.cluster().view(3)->members;
  const auto marks = s.marks();
  const auto ids = s.submit_from(members, 3);
  s.cluster().run_for(kSecond);
  s.expect_same_deliveries(members, marks, ids);
  s.expect_clean();
}

TEST(ScenarioRing, TenPercentLossWithTraffic) {
  Scenario s(5, 9, 0.10);
  ASSERT_TRUE(s.converge(10 * kSecond));
  const auto marks = s.marks();
  const auto ids = s.submit_from(range(1, 5), 20);
  s.cluster().run_for(5 * kSecond);
  s.expect_same_deliveries(range(1, 5), marks, ids);
  const auto stats = s.cluster().ring_stats();
  EXPECT_GT(stats.retransmissions, 0u);
  s.expect_clean();
}

}  // namespace
}  // namespace keel::sim
