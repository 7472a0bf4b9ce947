// Replica under local disk errors (EIO): which copy is trusted afterwards, and how the copies
// become equal again without waiting for the link to break.
#include <cerrno>

#include "volume_test_support.hpp"

namespace keel::volume::testing {
namespace {

// The primary's own disk fails a write the peer applied: the application gets the error, and
// the primary copies its own content of the block to the peer at once, so that the copies are
// equal again without waiting for the link to break. (Sweep seed 13.)
TEST(VolumeReplicaDiskError, PrimaryWriteErrorIsResyncedAtOnce) {
  World world;
  start_connected(world);
  world.a().fail_next_write = EIO;
  world.a().r().on_write(1, 8192, pattern(4096, 1), false);
  world.run();
  EXPECT_EQ(world.a().error_of(1), EIO);
  EXPECT_EQ(world.a().r().status().disk, DiskState::UpToDate);
  EXPECT_EQ(world.a().r().status().link, LinkState::Connected);
  EXPECT_EQ(world.a().r().status().out_of_sync_bytes, 0u);
  EXPECT_EQ(world.a().r().status().resynced_blocks, 1u);
  EXPECT_EQ(world.b().r().status().disk, DiskState::UpToDate);
  EXPECT_TRUE(world.same_disks());
}

}  // namespace
}  // namespace keel::volume::testing
