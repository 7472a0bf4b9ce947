// One scripted scenario per claim of the Totem single-ring protocol (Amir, Moser, Melliar-Smith,
// Agarwal, Ciarfella: "The Totem single-ring ordering and membership protocol", ACM TOCS 13(4),
// 1995) and of extended virtual synchrony (Moser, Amir, Melliar-Smith, Agarwal, ICDCS 1994), in
// the manner of etcd's raft_paper_test.go. Each test states the claim in its own words, scripts
// the faults that exercise it, and asserts concrete views, deliveries and coverage marks; the
// simulator's checkers watch every step as well. Claims that need single packets steered run on
// the hand-wired Bench (ring_test_support.hpp) with a checker attached; the rest on SimCluster.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "ring_test_support.hpp"
#include "sim/cluster.hpp"

namespace keel::sim {
namespace {

using ring::DeliveryKind;
using ring::Mark;
using ring::test_support::Bench;
using ring::test_support::Fate;
using ring::test_support::hosts_range;
using ring::test_support::kMs;
using ring::test_support::kSecond;
using ring::test_support::mark_index;
using ring::test_support::Packet;

// ---- SimCluster helpers ----

// What one host did, in order: views installed and messages delivered.
struct Event {
  TimeUs at = 0;
  std::optional<ring::View> view;
  std::optional<MessageId> message;
};

class Recorder {
 public:
  explicit Recorder(std::size_t hosts, std::uint64_t seed)
      : cluster_(options(hosts, seed)), events_(hosts + 1) {
    cluster_.set_observer([this](NodeId host, const ring::Action& action, TimeUs now) {
      if (const auto* view = std::get_if<ring::View>(&action)) {
        events_[host].push_back(Event{now, *view, std::nullopt});
      } else if (const auto* m = std::get_if<ring::DeliveredMessage>(&action)) {
        events_[host].push_back(Event{now, std::nullopt, parse_message_id(m->payload)});
      }
    });
  }

  static ClusterOptions options(std::size_t hosts, std::uint64_t seed) {
    ClusterOptions o;
    o.hosts = hosts;
    o.seed = seed;
    o.network = NetworkOptions{0.0, 0.0, 50, 300};
    return o;
  }

  SimCluster& cluster() { return cluster_; }

  bool in_view(NodeId host, const std::vector<NodeId>& members) {
    const ring::Ring* r = cluster_.ring(host);
    return r != nullptr && r->state() == ring::State::operational && r->view() &&
           r->view()->members == members;
  }
  // Runs until every host of `members` is operational in a regular view of exactly `members`.
  bool settle(const std::vector<NodeId>& members, TimeUs within) {
    return cluster_.run_until(
        [&] {
          return std::all_of(members.begin(), members.end(),
                             [&](NodeId h) { return in_view(h, members); });
        },
        cluster_.now() + within);
  }
  bool converge(TimeUs within) {
    return cluster_.run_until([&] { return cluster_.converged(); }, cluster_.now() + within);
  }

  std::vector<MessageId> submit_each(const std::vector<NodeId>& hosts, int each) {
    std::vector<MessageId> ids;
    for (int i = 0; i < each; ++i) {
      for (NodeId h : hosts) {
        const auto kind = i % 3 == 2 ? DeliveryKind::safe : DeliveryKind::agreed;
        if (auto id = cluster_.submit(h, 40 + 150 * static_cast<std::size_t>(i % 4), kind)) {
          ids.push_back(*id);
        }
      }
    }
    return ids;
  }
  // Messages `host` delivered at or after `since`, in order.
  std::vector<MessageId> delivered(NodeId host, TimeUs since = 0) const {
    std::vector<MessageId> out;
    for (const Event& e : events_[host]) {
      if (e.message && e.at >= since) out.push_back(*e.message);
    }
    return out;
  }
  // The messages delivered between `view` (inclusive) and the next view.
  std::vector<MessageId> delivered_in(NodeId host, const ring::View& view) const {
    std::vector<MessageId> out;
    bool inside = false;
    for (const Event& e : events_[host]) {
      if (e.view) inside = *e.view == view;
      if (inside && e.message) out.push_back(*e.message);
    }
    return out;
  }
  std::vector<ring::View> views(NodeId host) const {
    std::vector<ring::View> out;
    for (const Event& e : events_[host]) {
      if (e.view) out.push_back(*e.view);
    }
    return out;
  }
  std::uint64_t marks(Mark mark) const { return cluster_.coverage()[mark_index(mark)]; }

  // Reports a checker violation once (also from the destructor, after an ASSERT gave up early).
  ~Recorder() { expect_clean(); }
  void expect_clean() {
    if (!cluster_.checker().failed() || reported_) return;
    reported_ = true;
    std::string tail;
    for (const auto& line : cluster_.trace().tail()) tail += line + "\n";
    ADD_FAILURE() << cluster_.checker().violation()->text << "\n" << tail;
  }

 private:
  SimCluster cluster_;
  std::vector<std::vector<Event>> events_;  // by host
  bool reported_ = false;
};

// "1/1/3 2/1/1 ...": readable when two lists differ.
std::string text(const std::vector<MessageId>& ids) {
  std::string out;
  for (const MessageId& id : ids) out += to_string(id) + " ";
  return out;
}

bool contains(const std::vector<MessageId>& ids, const MessageId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// The transitional view `host` installed last, and the regular view before it.
std::pair<ring::View, ring::View> last_transition(const Recorder& r, NodeId host) {
  const auto views = r.views(host);
  for (std::size_t i = views.size(); i-- > 1;) {
    if (!views[i].regular()) return {views[i - 1], views[i]};
  }
  ADD_FAILURE() << "host " << host << " installed no transitional view";
  return {};
}

// ---- Bench helpers ----

std::vector<MessageId> delivered_ids(const Bench& bench, NodeId host) {
  std::vector<MessageId> out;
  for (const auto& d : bench.delivered(host)) out.push_back(*parse_message_id(d.message.payload));
  return out;
}

// Ring messages (mcast packets) sent in call `index`, counted once (at one destination).
std::size_t broadcasts_in(const Bench& bench, std::size_t index) {
  const ring::test_support::Call& call = bench.calls()[index];
  const NodeId witness = call.host == 1 ? 2 : 1;
  std::size_t count = 0;
  for (std::size_t i = call.sends_begin; i < call.sends_end; ++i) {
    const Packet& p = bench.sends()[i];
    if (p.is_mcast() && p.to == witness) ++count;
  }
  return count;
}

// ---- (a) ----

// Claim: only the holder of the token broadcasts; each message gets the next sequence number
// from the token, so every host delivers in one total order: the sequence-number order.
TEST(TotemClaims, OnlyTheTokenHolderBroadcastsAndAllDeliverInSequenceOrder) {
  Bench bench(4, {}, true);
  ASSERT_TRUE(bench.form());
  const std::size_t first_call = bench.calls().size();
  std::vector<MessageId> sent;
  for (int i = 0; i < 30; ++i) {
    for (NodeId h = 1; h <= 4; ++h) {
      const auto kind = i % 4 == 3 ? DeliveryKind::safe : DeliveryKind::agreed;
      sent.push_back(*bench.submit_checked(h, i % 5 == 4 ? 2500 : 30u * i, kind));
    }
  }
  bench.run_for(500 * kMs);
  std::uint64_t next_seq = 0;
  NodeId last_holder = 0;
  for (std::size_t c = first_call; c < bench.calls().size(); ++c) {
    const auto& call = bench.calls()[c];
    if (call.token_accepted) {
      if (last_holder != 0) {
        EXPECT_EQ(call.host, last_holder % 4 + 1) << "token skipped a host";
      }
      last_holder = call.host;
    }
    for (std::size_t i = call.sends_begin; i < call.sends_end; ++i) {
      const Packet& p = bench.sends()[i];
      if (!p.is_mcast()) continue;
      EXPECT_TRUE(call.token_accepted) << "host " << p.from << " broadcast without the token";
      if (p.message().seq > next_seq) {
        EXPECT_EQ(p.message().seq, next_seq + 1) << "a sequence number was skipped";
        next_seq = p.message().seq;
      }
    }
  }
  EXPECT_GT(next_seq, 10u);
  for (NodeId h = 1; h <= 4; ++h) {
    ASSERT_EQ(bench.delivered(h).size(), sent.size()) << "host " << h;
    EXPECT_EQ(text(delivered_ids(bench, h)), text(delivered_ids(bench, 1))) << "host " << h;
    const auto& d = bench.delivered(h);
    for (std::size_t i = 1; i < d.size(); ++i) {
      EXPECT_LE(d[i - 1].message.seq, d[i].message.seq) << "host " << h << " position " << i;
    }
  }
  bench.expect_clean();
}

// ---- (b) ----

// Claim: a host that misses a broadcast asks for it on the token (retransmission requests), and a
// host holding it re-sends it, so every host still delivers every message, in order.
TEST(TotemClaims, LostBroadcastsAreRecoveredThroughRetransmissionRequests) {
  Bench bench(3, {}, true);
  ASSERT_TRUE(bench.form());
  std::uint64_t base = 0;
  for (const Packet& p : bench.sends()) {
    if (p.is_mcast()) base = std::max(base, p.message().seq);
  }
  const std::set<std::pair<NodeId, std::uint64_t>> doomed = {
      {3, base + 2}, {3, base + 3}, {2, base + 5}};
  std::set<std::pair<NodeId, std::uint64_t>> dropped;
  bench.set_filter([&](const Packet& p) {
    if (!p.is_mcast()) return Fate::deliver;
    const auto key = std::pair(p.to, p.message().seq);
    if (doomed.count(key) == 0 || !dropped.insert(key).second) return Fate::deliver;
    return Fate::drop;  // the first copy only
  });
  const std::size_t views_before = bench.views(1).size();
  std::vector<MessageId> sent;
  for (int i = 0; i < 8; ++i) sent.push_back(*bench.submit_checked(1, 1250, DeliveryKind::agreed));
  bench.run_for(200 * kMs);
  EXPECT_EQ(dropped, doomed);
  EXPECT_GE(bench.marks(Mark::retransmit_served), 3u);
  for (NodeId h = 1; h <= 3; ++h) {
    EXPECT_EQ(text(delivered_ids(bench, h)), text(sent)) << "host " << h;
    EXPECT_EQ(bench.views(h).size(), views_before) << "host " << h;
  }
  bench.expect_clean();
}

// ---- (c) ----

// Claim: a host that passed the token re-sends it until it sees that the next host got it; when a
// re-sent copy gets through before the token timeout, the ring goes on without a membership change.
TEST(TotemClaims, LostTokenIsRetransmittedWithoutMembershipChange) {
  Bench bench(3, {}, true);
  ASSERT_TRUE(bench.form());
  int to_drop = 2;
  bench.set_filter([&](const Packet& p) {
    if (p.from == 2 && p.to == 3 && p.is_token() && to_drop > 0) {
      --to_drop;
      return Fate::drop;
    }
    return Fate::deliver;
  });
  std::vector<std::uint64_t> gathers_before;
  for (NodeId h = 1; h <= 3; ++h) gathers_before.push_back(bench.ring(h).stats().gathers_entered);
  const std::size_t views_before = bench.views(1).size();
  std::vector<MessageId> sent;
  for (int i = 0; i < 20; ++i) {
    for (NodeId h = 1; h <= 3; ++h) {
      sent.push_back(*bench.submit_checked(h, 100, DeliveryKind::safe));
    }
  }
  bench.run_for(kSecond);
  EXPECT_EQ(to_drop, 0);
  EXPECT_GE(bench.ring(2).stats().tokens_retransmitted, 2u);
  EXPECT_GE(bench.marks(Mark::token_retransmitted), 2u);
  EXPECT_EQ(bench.marks(Mark::token_lost_operational), 0u);
  for (NodeId h = 1; h <= 3; ++h) {
    EXPECT_EQ(bench.ring(h).stats().gathers_entered, gathers_before[h - 1]) << "host " << h;
    EXPECT_EQ(bench.views(h).size(), views_before) << "host " << h;
    EXPECT_EQ(bench.delivered(h).size(), sent.size()) << "host " << h;
  }
  bench.expect_clean();
}

// ---- (d) ----

// Claim: when the token is not seen for the token timeout, the hosts start the membership
// protocol; hosts that stay silent through the consensus timeout are declared failed and the rest
// form a new ring, within token timeout + consensus timeout + a formation.
TEST(TotemClaims, TokenLossBeyondTheTimeoutFormsANewRingWithoutTheSilentHost) {
  Recorder r(4, 21);
  ASSERT_TRUE(r.converge(2 * kSecond));
  r.cluster().run_for(300 * kMs);
  const auto& t = r.cluster().options().tunables;
  const RingId old_ring = r.cluster().view(1)->ring;
  r.cluster().isolate(4);
  const TimeUs silent_at = r.cluster().now();
  ASSERT_TRUE(r.settle({1, 2, 3}, 2 * kSecond));
  const TimeUs took = r.cluster().now() - silent_at;
  EXPECT_GE(took, ms_to_us(t.token_timeout_ms - t.token_hold_ms));
  EXPECT_LE(took, ms_to_us(t.token_timeout_ms + t.consensus_timeout_ms) + 50 * kMs);
  EXPECT_GT(r.cluster().view(1)->ring, old_ring);
  EXPECT_GT(r.marks(Mark::token_lost_operational), 0u);
  EXPECT_GT(r.marks(Mark::host_failed_in_gather), 0u);
  ASSERT_TRUE(r.settle({4}, kSecond));  // the silent host forms a ring of its own
  const TimeUs since = r.cluster().now();
  const auto ids = r.submit_each({1, 2, 3}, 4);
  r.cluster().run_for(500 * kMs);
  for (NodeId h = 1; h <= 3; ++h) EXPECT_EQ(r.delivered(h, since).size(), ids.size());
  EXPECT_TRUE(r.delivered(4, since).empty());
  r.expect_clean();
}

// ---- (e), (f) ----

const std::vector<std::vector<NodeId>> kComponents = {{1, 2}, {3, 4, 5}, {6, 7}};

// Submits from every host every 10 ms in [from, until); the ids go to `sent`, by origin.
void keep_sending(Recorder& r, TimeUs from, TimeUs until,
                  std::map<NodeId, std::vector<MessageId>>& sent) {
  for (TimeUs at = from; at < until; at += 10 * kMs) {
    r.cluster().at(at, "", [&r, &sent] {
      for (NodeId h = 1; h <= r.cluster().hosts(); ++h) {
        if (auto id = r.cluster().submit(h, 64, DeliveryKind::agreed)) sent[h].push_back(*id);
      }
    });
  }
}

// Claim: when the network partitions, the hosts of each component form a ring of their own, and
// every component goes on ordering and delivering its own messages.
TEST(TotemClaims, PartitionFormsOneRingPerComponentAndEachKeepsDelivering) {
  Recorder r(7, 22);
  ASSERT_TRUE(r.converge(2 * kSecond));
  std::map<NodeId, std::vector<MessageId>> sent;
  const TimeUs start = r.cluster().now();
  keep_sending(r, start, start + 3 * kSecond, sent);
  r.cluster().run_for(200 * kMs);
  r.cluster().partition(kComponents);
  std::set<RingId> rings;
  for (const auto& component : kComponents) {
    ASSERT_TRUE(r.settle(component, 2 * kSecond));
    rings.insert(r.cluster().view(component.front())->ring);
  }
  EXPECT_EQ(rings.size(), kComponents.size());
  const TimeUs settled = r.cluster().now() + 10 * kMs;
  r.cluster().run_until(start + 4 * kSecond);
  for (const auto& component : kComponents) {
    for (NodeId h : component) {
      EXPECT_TRUE(r.in_view(h, component)) << "host " << h;
      const auto got = r.delivered(h, settled);
      for (NodeId origin = 1; origin <= 7; ++origin) {
        const bool mine = std::count(component.begin(), component.end(), origin) != 0;
        std::size_t after = 0;
        for (const MessageId& id : sent[origin]) {
          if (contains(got, id)) ++after;
        }
        if (mine) {
          EXPECT_GT(after, 150u) << "host " << h << " from " << origin;
        } else {
          EXPECT_EQ(after, 0u) << "host " << h << " from " << origin;
        }
      }
      EXPECT_EQ(text(got), text(r.delivered(component.front(), settled))) << "host " << h;
    }
  }
  r.expect_clean();
}

// Claim: rings that can communicate again merge into one ring (found by the probes), whose id
// exceeds those of the rings it replaces, and which orders the messages of all its hosts. On the
// way each host installs a transitional view of only the hosts that shared its old ring.
TEST(TotemClaims, ComponentsMergeWhenTheyCanCommunicateAgain) {
  Recorder r(7, 23);
  ASSERT_TRUE(r.converge(2 * kSecond));
  r.cluster().partition(kComponents);
  std::vector<RingId> rings;
  for (const auto& component : kComponents) {
    ASSERT_TRUE(r.settle(component, 2 * kSecond));
    rings.push_back(r.cluster().view(component.front())->ring);
  }
  r.cluster().run_for(500 * kMs);
  const std::uint64_t merges_before = r.marks(Mark::merge_started_by_probe);
  r.cluster().heal_network();
  const TimeUs healed_at = r.cluster().now();
  ASSERT_TRUE(r.converge(2 * kSecond));
  const auto& t = r.cluster().options().tunables;
  EXPECT_LE(r.cluster().now() - healed_at,
            ms_to_us(2 * t.probe_interval_ms + t.consensus_timeout_ms) + 100 * kMs);
  EXPECT_GT(r.marks(Mark::merge_started_by_probe), merges_before);
  const RingId merged = r.cluster().view(1)->ring;
  EXPECT_GT(merged, *std::max_element(rings.begin(), rings.end()));
  // Each host comes through a transitional view of its own component only.
  for (std::size_t c = 0; c < kComponents.size(); ++c) {
    for (NodeId h : kComponents[c]) {
      const ring::View transitional = last_transition(r, h).second;
      EXPECT_EQ(transitional.members, kComponents[c]) << "host " << h;
      EXPECT_EQ(transitional.previous_ring, rings[c]) << "host " << h;
      EXPECT_EQ(transitional.ring, merged) << "host " << h;
    }
  }
  const TimeUs since = r.cluster().now();
  const auto ids = r.submit_each(hosts_range(1, 7), 3);
  r.cluster().run_for(500 * kMs);
  for (NodeId h = 1; h <= 7; ++h) {
    EXPECT_EQ(r.delivered(h, since).size(), ids.size()) << "host " << h;
    EXPECT_EQ(text(r.delivered(h, since)), text(r.delivered(1, since))) << "host " << h;
  }
  r.expect_clean();
}

// ---- (g), (h) ----

// Claim (extended virtual synchrony): at a partition, each host installs a transitional view
// holding exactly the members of its new ring that came from its old ring; the messages it
// delivers there were received by all of them; and hosts that move between the same two views
// delivered the same messages in between.
TEST(TotemClaims, TransitionalViewHoldsTheSurvivorsAndTheyDeliverTheSame) {
  Recorder r(5, 24);
  ASSERT_TRUE(r.converge(2 * kSecond));
  const RingId old_ring = r.cluster().view(1)->ring;
  r.submit_each(hosts_range(1, 5), 40);
  r.cluster().set_loss(0.3);  // so that hosts of one side hold different old messages
  r.cluster().run_for(3 * kMs);
  r.cluster().partition({{1, 2, 3}, {4, 5}});
  r.cluster().set_loss(0.0);
  for (const std::vector<NodeId>& component : {std::vector<NodeId>{1, 2, 3}, {4, 5}}) {
    ASSERT_TRUE(r.settle(component, 2 * kSecond));
    const RingId new_ring = r.cluster().view(component.front())->ring;
    const auto [old_view, transitional] = last_transition(r, component.front());
    EXPECT_EQ(old_view.ring, old_ring);
    EXPECT_EQ(transitional.members, component);
    EXPECT_EQ(transitional.previous_ring, old_ring);
    EXPECT_EQ(transitional.ring, new_ring);
    const auto in_old = r.delivered_in(component.front(), old_view);
    const auto in_transitional = r.delivered_in(component.front(), transitional);
    EXPECT_FALSE(in_transitional.empty()) << "the scenario should leave work for the transition";
    for (NodeId h : component) {
      EXPECT_EQ(last_transition(r, h).second, transitional) << "host " << h;
      EXPECT_EQ(text(r.delivered_in(h, old_view)), text(in_old)) << "host " << h;
      EXPECT_EQ(text(r.delivered_in(h, transitional)), text(in_transitional)) << "host " << h;
    }
  }
  EXPECT_GT(r.marks(Mark::old_message_recovered), 0u) << "the burst should need recovery";
  r.expect_clean();
}

// Claim: a safe message that some hosts of a component received just before a partition is not
// lost: it is delivered in the transitional view, where every member holds it, although the old
// ring never learnt that all of its members held it.
TEST(TotemClaims, SafeMessageSentJustBeforeAPartitionIsDeliveredInTheTransitionalView) {
  Recorder r(4, 25);
  ASSERT_TRUE(r.converge(2 * kSecond));
  r.cluster().run_for(300 * kMs);  // idle: host 1, the representative, holds the token
  r.cluster().cut(1, 3);           // 3 and 4 will miss host 1's broadcast ...
  r.cluster().cut(1, 4);
  const std::uint64_t broadcast = r.cluster().ring(1)->stats().ring_messages_broadcast;
  const MessageId id = *r.cluster().submit(1, 100, DeliveryKind::safe);
  ASSERT_TRUE(r.cluster().run_until(
      [&] { return r.cluster().ring(1)->stats().ring_messages_broadcast > broadcast; },
      r.cluster().now() + 100 * kMs));
  r.cluster().partition({{1, 2}, {3, 4}});  // ... and the token will not reach them
  r.cluster().restore(1, 3);
  r.cluster().restore(1, 4);
  ASSERT_TRUE(r.settle({1, 2}, 2 * kSecond));
  ASSERT_TRUE(r.settle({3, 4}, 2 * kSecond));
  for (NodeId h : {1, 2}) {
    const auto [old_view, transitional] = last_transition(r, h);
    EXPECT_FALSE(contains(r.delivered_in(h, old_view), id)) << "host " << h;
    EXPECT_EQ(text(r.delivered_in(h, transitional)), text({id})) << "host " << h;
    EXPECT_EQ(transitional.members, (std::vector<NodeId>{1, 2}));
  }
  for (NodeId h : {3, 4}) EXPECT_FALSE(contains(r.delivered(h), id)) << "host " << h;
  EXPECT_GT(r.marks(Mark::safe_delivered_in_transitional), 0u);
  r.expect_clean();
}

// ---- (i) ----

// Claim: flow control bounds what one host broadcasts in one token visit (max_messages_per_visit,
// retransmissions included) and what the whole ring broadcasts in one rotation (window_size).
TEST(TotemClaims, FlowControlBoundsBroadcastsPerVisitAndPerRotation) {
  ring::RingTunables tunables;
  tunables.window_size = 20;
  tunables.max_messages_per_visit = 6;
  Bench bench(4, tunables, true);
  ASSERT_TRUE(bench.form());
  const std::size_t first_call = bench.calls().size();
  for (int i = 0; i < 100; ++i) {
    for (NodeId h = 1; h <= 4; ++h)
      ASSERT_TRUE(bench.submit_checked(h, 1000, DeliveryKind::agreed));
  }
  ASSERT_TRUE(bench.run_until(
      [&] {
        for (NodeId h = 1; h <= 4; ++h) {
          if (bench.delivered(h).size() < 400) return false;
        }
        return true;
      },
      5 * kSecond));
  std::vector<std::size_t> visits;  // ring messages sent at each token visit, in token order
  for (std::size_t c = first_call; c < bench.calls().size(); ++c) {
    if (bench.calls()[c].token_accepted) visits.push_back(broadcasts_in(bench, c));
  }
  ASSERT_GT(visits.size(), 40u);
  EXPECT_EQ(*std::max_element(visits.begin(), visits.end()), 6u);
  std::size_t busiest_rotation = 0;
  for (std::size_t i = 0; i + 4 <= visits.size(); ++i) {
    std::size_t rotation = 0;
    for (std::size_t k = i; k < i + 4; ++k) rotation += visits[k];
    EXPECT_LE(rotation, 20u) << "visits " << i << ".." << i + 3;
    busiest_rotation = std::max(busiest_rotation, rotation);
  }
  EXPECT_EQ(busiest_rotation, 20u) << "4 hosts x 6 per visit would exceed the window";
  for (NodeId h = 1; h <= 4; ++h) {
    EXPECT_EQ(text(delivered_ids(bench, h)), text(delivered_ids(bench, 1))) << "host " << h;
  }
  bench.expect_clean();
}

// ---- (j) ----

// Claim: a host that crashes and restarts comes back as a new process, rejoins the ring, and every
// view it installs has a larger ring id than any ring it or the others had before.
TEST(TotemClaims, RestartedHostRejoinsWithLargerRingIds) {
  Recorder r(4, 26);
  ASSERT_TRUE(r.converge(2 * kSecond));
  r.cluster().crash(3);
  ASSERT_TRUE(r.settle({1, 2, 4}, 2 * kSecond));
  r.cluster().run_for(500 * kMs);
  RingId highest;
  for (NodeId h = 1; h <= 4; ++h) {
    for (const auto& view : r.views(h)) highest = std::max(highest, view.ring);
  }
  const std::size_t old_views = r.views(3).size();
  const TimeUs restarted_at = r.cluster().now();
  r.cluster().restart(3);
  ASSERT_TRUE(r.converge(3 * kSecond));
  EXPECT_EQ(r.cluster().incarnation(3), 2u);
  const auto views = r.views(3);
  ASSERT_GT(views.size(), old_views);
  EXPECT_TRUE(views[old_views].regular()) << "a fresh process has no old ring to leave";
  for (std::size_t i = old_views; i < views.size(); ++i) {
    EXPECT_GT(views[i].ring, highest);
    EXPECT_GT(views[i].ring.seq, restarted_at) << "the ring sequence floor is the boot time";
  }
  const TimeUs since = r.cluster().now();
  const auto ids = r.submit_each({3}, 5);
  r.cluster().run_for(500 * kMs);
  for (NodeId h = 1; h <= 4; ++h) EXPECT_EQ(text(r.delivered(h, since)), text(ids)) << "host " << h;
  r.expect_clean();
}

}  // namespace
}  // namespace keel::sim
