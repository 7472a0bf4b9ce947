// Tests for the simulator's foundations: the seeded PRNG (determinism, ranges), simulated message
// payloads (identity and byte-for-byte verification) and the simulated network (loss,
// duplication, delay, partitions, one-way cuts, isolation).
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "sim/message.hpp"
#include "sim/network.hpp"
#include "sim/random.hpp"

namespace keel::sim {
namespace {

// ---- Rng ----

TEST(SimRandom, SameSeedSameSequence) {
  Rng a(42);
  Rng b(42);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(a.next(), b.next());
}

TEST(SimRandom, DifferentSeedsDiffer) {
  Rng a(1);
  Rng b(2);
  int equal = 0;
  for (int i = 0; i < 100; ++i) equal += a.next() == b.next();
  EXPECT_LT(equal, 2);
}

TEST(SimRandom, KnownFirstValuesPinTheAlgorithm) {
  // If this changes, every recorded seed replays differently: change it only on purpose.
  Rng rng(0);
  const std::uint64_t first = rng.next();
  Rng again(0);
  EXPECT_EQ(first, again.next());
  std::uint64_t sm = 0;
  EXPECT_EQ(splitmix64(sm), 0xe220a8397b1dcdafull);
}

TEST(SimRandom, UniformStaysInRangeAndCoversIt) {
  Rng rng(7);
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const auto v = rng.uniform(3, 9);
    ASSERT_GE(v, 3u);
    ASSERT_LE(v, 9u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(rng.uniform(5, 5), 5u);
}

TEST(SimRandom, ChanceExtremesAndRate) {
  Rng rng(9);
  int hits = 0;
  for (int i = 0; i < 10000; ++i) {
    ASSERT_FALSE(rng.chance(0.0));
    ASSERT_TRUE(rng.chance(1.0));
    hits += rng.chance(0.25);
  }
  EXPECT_NEAR(hits / 10000.0, 0.25, 0.03);
}

TEST(SimRandom, PickAndShuffleAreDeterministic) {
  const std::vector<int> items = {1, 2, 3, 4, 5, 6};
  Rng a(11);
  Rng b(11);
  auto x = items;
  auto y = items;
  a.shuffle(x);
  b.shuffle(y);
  EXPECT_EQ(x, y);
  EXPECT_EQ(std::multiset<int>(x.begin(), x.end()), std::multiset<int>(items.begin(), items.end()));
  EXPECT_EQ(a.pick(items), b.pick(items));
}

TEST(SimRandom, ForkedStreamsAreIndependentOfLaterDraws) {
  Rng root_a(5);
  Rng root_b(5);
  Rng fork_a = root_a.fork(1);
  Rng fork_b = root_b.fork(1);
  for (int i = 0; i < 10; ++i) root_b.next();  // draws on the root do not move the fork
  for (int i = 0; i < 100; ++i) ASSERT_EQ(fork_a.next(), fork_b.next());
}

// ---- payloads ----

TEST(SimMessage, PayloadCarriesItsIdAndVerifies) {
  const MessageId id{3, 2, 17};
  const Bytes payload = make_payload(id, 500);
  ASSERT_EQ(payload.size(), kMessageHeaderBytes + 500);
  EXPECT_EQ(parse_message_id(payload), id);
  EXPECT_FALSE(verify_payload(payload, 500).has_value());
  EXPECT_EQ(make_payload(id, 500), payload);  // a pure function of id and length
}

TEST(SimMessage, EmptyFillerVerifies) {
  const Bytes payload = make_payload(MessageId{1, 1, 1}, 0);
  EXPECT_EQ(payload.size(), kMessageHeaderBytes);
  EXPECT_FALSE(verify_payload(payload, 0).has_value());
}

TEST(SimMessage, AnyChangeIsDetected) {
  const Bytes payload = make_payload(MessageId{1, 1, 9}, 64);
  for (std::size_t i = 16; i < payload.size(); ++i) {  // checksum and filler bytes
    Bytes changed = payload;
    changed[i] ^= 0x01;
    EXPECT_TRUE(verify_payload(changed, 64).has_value()) << "byte " << i;
  }
  Bytes shorter(payload.begin(), payload.end() - 1);
  EXPECT_TRUE(verify_payload(shorter, 64).has_value());
  // Another message's id in the header: the filler no longer matches.
  Bytes other_id = payload;
  other_id[11] ^= 0x02;
  EXPECT_TRUE(verify_payload(other_id, 64).has_value());
  EXPECT_FALSE(parse_message_id(Bytes(10, 0)).has_value());
}

// ---- network ----

NetworkOptions quiet() { return NetworkOptions{0.0, 0.0, 100, 100}; }

TEST(SimNetwork, DeliversWithDelayInRange) {
  Network net(3, NetworkOptions{0.0, 0.0, 50, 2000}, Rng(1));
  std::set<TimeUs> delays;
  for (int i = 0; i < 500; ++i) {
    const Arrivals a = net.transmit(1, 2, 1000);
    ASSERT_EQ(a.count, 1u);
    ASSERT_GE(a.at[0], 1050u);
    ASSERT_LE(a.at[0], 3000u);
    delays.insert(a.at[0]);
  }
  EXPECT_GT(delays.size(), 100u);  // varied delays: packets reorder
}

TEST(SimNetwork, SameSeedSameFates) {
  NetworkOptions options{0.2, 0.1, 10, 900};
  Network a(4, options, Rng(77));
  Network b(4, options, Rng(77));
  for (int i = 0; i < 1000; ++i) {
    const Arrivals x = a.transmit(1 + i % 4, 1 + (i + 1) % 4, i);
    const Arrivals y = b.transmit(1 + i % 4, 1 + (i + 1) % 4, i);
    ASSERT_EQ(x.count, y.count);
    for (std::size_t k = 0; k < x.count; ++k) ASSERT_EQ(x.at[k], y.at[k]);
  }
}

TEST(SimNetwork, LossAndDuplicationRates) {
  Network net(2, NetworkOptions{0.1, 0.05, 10, 20}, Rng(3));
  std::size_t arrived = 0;
  const int packets = 20000;
  for (int i = 0; i < packets; ++i) arrived += net.transmit(1, 2, 0).count;
  EXPECT_NEAR(static_cast<double>(net.stats().lost) / packets, 0.1, 0.01);
  EXPECT_NEAR(static_cast<double>(net.stats().duplicated) / (packets - net.stats().lost), 0.05,
              0.01);
  EXPECT_EQ(arrived, packets - net.stats().lost + net.stats().duplicated);
}

TEST(SimNetwork, FullLossDropsEverything) {
  Network net(2, NetworkOptions{1.0, 0.0, 10, 20}, Rng(3));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(net.transmit(1, 2, 0).count, 0u);
}

TEST(SimNetwork, PartitionBlocksAcrossGroupsOnly) {
  Network net(5, quiet(), Rng(1));
  net.partition({{1, 2}, {3, 4}});  // host 5 named in no group: alone
  EXPECT_TRUE(net.reachable(1, 2));
  EXPECT_TRUE(net.reachable(4, 3));
  EXPECT_FALSE(net.reachable(1, 3));
  EXPECT_FALSE(net.reachable(3, 1));
  EXPECT_FALSE(net.reachable(5, 1));
  EXPECT_FALSE(net.reachable(4, 5));
  EXPECT_EQ(net.transmit(2, 3, 0).count, 0u);
  EXPECT_EQ(net.stats().blocked, 1u);
  EXPECT_EQ(net.transmit(2, 1, 0).count, 1u);
  EXPECT_FALSE(net.healed());
  net.heal_all();
  EXPECT_TRUE(net.healed());
  EXPECT_TRUE(net.reachable(1, 5));
}

TEST(SimNetwork, OneWayCutIsAsymmetric) {
  Network net(3, quiet(), Rng(1));
  net.cut(1, 2);
  EXPECT_FALSE(net.reachable(1, 2));
  EXPECT_TRUE(net.reachable(2, 1));
  EXPECT_TRUE(net.reachable(1, 3));
  EXPECT_EQ(net.transmit(1, 2, 0).count, 0u);
  EXPECT_EQ(net.transmit(2, 1, 0).count, 1u);
  net.restore(1, 2);
  EXPECT_TRUE(net.reachable(1, 2));
  EXPECT_TRUE(net.healed());
}

TEST(SimNetwork, IsolationIsIndependentOfPartition) {
  Network net(3, quiet(), Rng(1));
  net.partition({{1, 2}, {3}});
  net.isolate(1);
  EXPECT_FALSE(net.reachable(1, 2));
  EXPECT_FALSE(net.reachable(2, 1));
  net.rejoin(1);
  EXPECT_TRUE(net.reachable(1, 2));  // the partition itself stays
  EXPECT_FALSE(net.reachable(1, 3));
}

}  // namespace
}  // namespace keel::sim
