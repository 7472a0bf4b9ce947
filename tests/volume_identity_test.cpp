// The agent's identities of a volume copy: the boot a copy records being in sync in.
#include "agent/volume_identity.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace keel::agent {
namespace {

TEST(VolumeIdentity, BootFollowsTheKernelsBootIdOnly) {
  const std::uint64_t boot = boot_from_id("3f1c2a9e-5d7b-4c1e-9a2f-0b6d8e4c7a15\n");
  EXPECT_NE(boot, 0u);
  EXPECT_EQ(boot, boot_from_id("3f1c2a9e-5d7b-4c1e-9a2f-0b6d8e4c7a15"));
  EXPECT_NE(boot, boot_from_id("3f1c2a9e-5d7b-4c1e-9a2f-0b6d8e4c7a16"));
  EXPECT_EQ(boot_from_id(""), 0u);
  EXPECT_EQ(boot_from_id("\n"), 0u);
}

TEST(VolumeIdentity, ThisBootIsTheRunningKernels) {
  std::ifstream file("/proc/sys/kernel/random/boot_id");
  std::string text;
  ASSERT_TRUE(std::getline(file, text)) << "no /proc/sys/kernel/random/boot_id here";
  EXPECT_EQ(this_boot(), boot_from_id(text));
  EXPECT_NE(this_boot(), 0u);
}

}  // namespace
}  // namespace keel::agent
