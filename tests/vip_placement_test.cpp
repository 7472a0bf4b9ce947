// Placement (src/core/vip/placement.hpp): balance, minimal movement, preferences, weights.
#include <gtest/gtest.h>

#include <map>

#include "core/vip/placement.hpp"

namespace keel::vip {
namespace {

std::vector<Candidate> equal(std::vector<NodeId> nodes) {
  std::vector<Candidate> out;
  for (NodeId node : nodes) out.push_back({node, 1});
  return out;
}

std::map<NodeId, std::size_t> counts(const std::vector<NodeId>& target) {
  std::map<NodeId, std::size_t> out;
  for (NodeId node : target) ++out[node];
  return out;
}

// A small deterministic generator for the randomized properties below.
struct Lcg {
  std::uint64_t state;
  std::uint64_t next(std::uint64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (state >> 33) % bound;
  }
};

TEST(VipPlacement, SpreadsEvenlyFromNothing) {
  PoolInput input{equal({1, 2, 3}), std::vector<NodeId>(10, kNoNode), {}};
  const auto target = place_pool(input);
  const auto c = counts(target);
  EXPECT_EQ(c.count(kNoNode), 0u);
  EXPECT_EQ(c.at(1), 4u);  // lowest node id wins the tie for the extra one
  EXPECT_EQ(c.at(2), 3u);
  EXPECT_EQ(c.at(3), 3u);
}

TEST(VipPlacement, NoCandidateLeavesEveryAddressHomeless) {
  PoolInput input{{}, {1, 2, kNoNode}, {}};
  EXPECT_EQ(place_pool(input), std::vector<NodeId>(3, kNoNode));
}

TEST(VipPlacement, KeepsBalancedHoldersAndIsIdempotent) {
  PoolInput input{equal({1, 2, 3}), {3, 1, 2, 3, 1, 2, 1}, {}};
  const auto target = place_pool(input);
  EXPECT_EQ(target, input.current);
  input.current = target;
  EXPECT_EQ(place_pool(input), target);
}

TEST(VipPlacement, IneligibleHoldersLoseEverything) {
  PoolInput input{equal({1, 2}), {3, 3, 3, 3}, {}};
  const auto c = counts(place_pool(input));
  EXPECT_EQ(c.at(1), 2u);
  EXPECT_EQ(c.at(2), 2u);
}

TEST(VipPlacement, OverloadedHolderShedsOnlyItsExcess) {
  PoolInput input{equal({1, 2}), {1, 1, 1, 1, 1, 1}, {}};
  const auto target = place_pool(input);
  // Node 1 keeps the first three (address order), node 2 takes the others.
  EXPECT_EQ(target, (std::vector<NodeId>{1, 1, 1, 2, 2, 2}));
}

TEST(VipPlacement, TooManyExtrasGiveUpFromTheHighestNode) {
  // 5 addresses on 4 nodes: one node may hold 2. Nodes 1 and 3 hold 2 each now.
  PoolInput input{equal({1, 2, 3, 4}), {1, 1, 3, 3, kNoNode}, {}};
  const auto target = place_pool(input);
  EXPECT_EQ(target[0], 1u);
  EXPECT_EQ(target[1], 1u);
  EXPECT_EQ(target[2], 3u);
  EXPECT_NE(target[3], 3u);  // node 3 gave up its extra one
  const auto c = counts(target);
  EXPECT_EQ(c.at(2), 1u);
  EXPECT_EQ(c.at(4), 1u);
}

TEST(VipPlacement, HomelessAddressGoesToItsPreferredNodeWhenItHasRoom) {
  PoolInput input{equal({1, 2}), {kNoNode, kNoNode}, {2, kNoNode}};
  EXPECT_EQ(place_pool(input), (std::vector<NodeId>{2, 1}));
}

TEST(VipPlacement, OverloadedHolderShedsAddressesPreferringOthersFirst) {
  PoolInput input{equal({1, 2}), {1, 1, 1, 1}, {kNoNode, kNoNode, 2, kNoNode}};
  const auto target = place_pool(input);
  EXPECT_EQ(target[2], 2u);  // prefers node 2: shed first
  EXPECT_EQ(counts(target).at(1), 2u);
}

TEST(VipPlacement, PreferenceAloneNeverMovesAnAddress) {
  PoolInput input{equal({1, 2}), {1, 2}, {2, 1}};
  EXPECT_EQ(place_pool(input), input.current);
}

TEST(VipPlacement, WeightedQuotasAreFloorAndCeilingOfTheShare) {
  const auto quotas = weighted_quotas(9, {{1, 1}, {2, 2}, {3, 3}});
  // Shares 1.5, 3, 4.5.
  EXPECT_EQ(quotas[0].low, 1u);
  EXPECT_EQ(quotas[0].high, 2u);
  EXPECT_EQ(quotas[1].low, 3u);
  EXPECT_EQ(quotas[1].high, 3u);
  EXPECT_EQ(quotas[2].low, 4u);
  EXPECT_EQ(quotas[2].high, 5u);
  PoolInput input{{{1, 1}, {2, 2}, {3, 3}}, std::vector<NodeId>(9, kNoNode), {}};
  const auto c = counts(place_pool(input));
  EXPECT_EQ(c.at(1) + c.at(2) + c.at(3), 9u);
  EXPECT_EQ(c.at(2), 3u);
  EXPECT_TRUE(c.at(1) == 1 || c.at(1) == 2);
  EXPECT_TRUE(c.at(3) == 4 || c.at(3) == 5);
}

TEST(VipPlacement, WeightedFailureCanForceOneMoreMove) {
  // The documented exception (docs/vip.md): node 3 fails holding nothing, node 5's share
  // becomes exactly 1, so one of the other two holders must give its address up.
  PoolInput input{{{1, 1}, {4, 1}, {5, 4}, {6, 2}}, {1, 4}, {}};
  const auto target = place_pool(input);
  EXPECT_EQ(counts(target).at(5), 1u);
  EXPECT_TRUE(target[0] == 1 || target[1] == 4);
}

// Equal weights: removing a node moves only its addresses, adding one moves addresses only to it,
// and every answer is balanced.
TEST(VipPlacement, RandomFailuresAndJoinsMoveTheMinimum) {
  Lcg rng{42};
  for (int round = 0; round < 3000; ++round) {
    const std::size_t nodes = 1 + rng.next(8);
    const std::size_t addresses = rng.next(30);
    std::vector<NodeId> all;
    for (NodeId n = 1; n <= nodes; ++n) all.push_back(n);
    std::vector<NodeId> preferred(addresses, kNoNode);
    for (auto& p : preferred)
      p = rng.next(3) == 0 ? static_cast<NodeId>(1 + rng.next(nodes)) : kNoNode;
    PoolInput before{equal(all), std::vector<NodeId>(addresses, kNoNode), preferred};
    before.current = place_pool(before);
    for (std::size_t a = 0; a < addresses; ++a) {
      ASSERT_NE(before.current[a], kNoNode);
    }

    const NodeId gone = static_cast<NodeId>(1 + rng.next(nodes));
    std::vector<NodeId> rest;
    for (NodeId n : all) {
      if (n != gone) rest.push_back(n);
    }
    PoolInput failed{equal(rest), before.current, preferred};
    const auto after_failure = place_pool(failed);
    for (std::size_t a = 0; a < addresses; ++a) {
      if (before.current[a] != gone) {
        ASSERT_EQ(after_failure[a], before.current[a]) << round;
      }
    }
    for (const auto& [node, count] : counts(after_failure)) {
      if (rest.empty()) break;
      ASSERT_LE(count, (addresses + rest.size() - 1) / rest.size()) << round;
      ASSERT_GE(count, addresses / rest.size()) << round;
    }

    PoolInput joined{equal(all), after_failure, preferred};
    const auto after_join = place_pool(joined);
    for (std::size_t a = 0; a < addresses; ++a) {
      if (after_join[a] != after_failure[a]) {
        ASSERT_EQ(after_join[a], gone) << round;
      }
    }
  }
}

}  // namespace
}  // namespace keel::vip
