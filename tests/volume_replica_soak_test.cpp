// Replica under random schedules: writes, zeroing and flushes from one primary, interleaved with
// partial progress, link loss, reconnects and crashes of either node. After healing, the copies
// must be identical and every request since the primary's last restart answered.
#include <random>

#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

void soak(std::uint64_t seed, Mode mode, bool failover) {
  std::mt19937_64 rng(seed);
  World world(mode);
  start_connected(world);
  int primary = 0;
  RequestId next = 1;
  RequestId first_of_this_life = 1;
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  for (int round = 0; round < 300; ++round) {
    Node& a = world.node(primary);
    const std::uint64_t what = pick(100);
    const std::uint64_t offset = pick(kTestVolumeBytes / kBlockBytes - 4) * kBlockBytes;
    if (what < 45) {
      const RequestId request = next++;
      a.r().on_write(request, offset, pattern((1 + pick(4)) * kBlockBytes, request & 0xff),
                     pick(10) == 0);
    } else if (what < 50) {
      a.r().on_write_zeroes(next++, offset, (1 + pick(8)) * kBlockBytes, false);
    } else if (what < 58) {
      a.r().on_flush(next++);
    } else if (what < 85) {
      for (std::uint64_t i = pick(40); i > 0 && world.step(); --i) {
      }
    } else if (what < 90) {
      if (world.connected()) {
        world.disconnect();
      } else {
        world.connect();
      }
    } else if (what < 93) {
      world.crash(1 - primary);
    } else if (what < 95) {
      world.crash(primary);
      world.run();
      if (failover && world.node(1 - primary).r().promote(false).ok()) {
        primary = 1 - primary;
      } else {
        ASSERT_TRUE(world.node(primary).r().promote(false).ok()) << "seed " << seed;
      }
      world.run();
      first_of_this_life = next;
    } else {
      world.node(1 - primary).hold_disk = !world.node(1 - primary).hold_disk;
    }
  }
  world.a().hold_disk = world.b().hold_disk = false;
  world.run();
  if (!world.connected()) world.connect();
  world.run();
  const Node& p = world.node(primary);
  ASSERT_EQ(p.replica->status().link, LinkState::Connected) << "seed " << seed;
  EXPECT_EQ(world.node(1 - primary).replica->status().disk, DiskState::UpToDate) << seed;
  EXPECT_TRUE(world.same_disks()) << "seed " << seed;
  for (RequestId r = first_of_this_life; r < next; ++r) {
    EXPECT_TRUE(p.has_completed(r)) << "seed " << seed << " request " << r;
  }
  EXPECT_EQ(p.replica->status().writes_in_flight, 0u);
}

TEST(VolumeReplicaSoak, SyncSchedules) {
  for (std::uint64_t seed = 1; seed <= 100; ++seed) soak(seed, Mode::Sync, false);
}

TEST(VolumeReplicaSoak, SyncSchedulesWithFailover) {
  for (std::uint64_t seed = 1; seed <= 100; ++seed) soak(seed, Mode::Sync, true);
}

TEST(VolumeReplicaSoak, AsyncSchedules) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) soak(seed, Mode::Async, false);
}

}  // namespace
}  // namespace keel::volume::testing
