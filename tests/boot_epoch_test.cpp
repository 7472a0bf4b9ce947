// next_boot_epoch (src/io/boot_epoch.hpp): the epoch a restarted agent seals with always exceeds
// the last run's, even when the wall clock went back. peer_epochs: the replay floors read back as
// written, and a garbled record (an empty one included) is an error, never "no floors".
#include "io/boot_epoch.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "agent_test_support.hpp"

namespace keel::io {
namespace {

using agent::testing::TempDir;
using agent::testing::write_file;

TEST(BootEpoch, FollowsTheClockAndNeverGoesBack) {
  TempDir dir;
  const std::string state = dir.file("state");  // created on first use
  auto first = next_boot_epoch(state, 5'000'000);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first.value(), 5'000'000u);
  struct stat info {};
  ASSERT_EQ(::stat(state.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);

  auto later = next_boot_epoch(state, 9'000'000);  // the clock moved on: the clock
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later.value(), 9'000'000u);
  auto set_back = next_boot_epoch(state, 1'000'000);  // the clock went back: one past the last
  ASSERT_TRUE(set_back.ok());
  EXPECT_EQ(set_back.value(), 9'000'001u);
  auto again = next_boot_epoch(state, 1'000'000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), 9'000'002u);
}

TEST(BootEpoch, AGarbledRecordIsAnErrorNotAReset) {
  TempDir dir;
  const std::string state = dir.file("state");
  ASSERT_TRUE(next_boot_epoch(state, 7).ok());
  write_file(state + "/" + kBootEpochFile, "12x\n");
  auto garbled = next_boot_epoch(state, 5);
  ASSERT_FALSE(garbled.ok());
  EXPECT_NE(garbled.error().message.find("does not hold a boot epoch"), std::string::npos)
      << garbled.error().message;
}

TEST(PeerEpochs, RoundTripAndNoneAtFirst) {
  TempDir dir;
  const std::string state = dir.file("state");
  ASSERT_TRUE(next_boot_epoch(state, 7).ok());  // creates the directory, as the agent's start does
  auto none = read_peer_epochs(state);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_TRUE(none.value().empty());
  const PeerEpochs epochs{{2, 1'700'000'000'000'001}, {65535, 3}};
  ASSERT_TRUE(write_peer_epochs(state, epochs).ok());
  auto read = read_peer_epochs(state);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read.value(), epochs);
}

TEST(PeerEpochs, AGarbledRecordNamesItsLine) {
  TempDir dir;
  const std::string state = dir.file("state");
  ASSERT_TRUE(next_boot_epoch(state, 7).ok());
  write_file(state + "/" + kPeerEpochsFile, "2 100\n3 x\n");
  auto garbled = read_peer_epochs(state);
  ASSERT_FALSE(garbled.ok());
  EXPECT_NE(garbled.error().message.find("peer-epochs:2: not \"NODE EPOCH\""), std::string::npos)
      << garbled.error().message;
}

// The record is never written empty, so an empty file is what a write that never reached the disk
// leaves (a crash soon after the rename): reported, not read as no floors. Likewise a last line
// without its newline.
TEST(PeerEpochs, AnEmptyOrCutShortRecordIsReportedNotReadAsNoFloors) {
  TempDir dir;
  const std::string state = dir.file("state");
  ASSERT_TRUE(next_boot_epoch(state, 7).ok());
  write_file(state + "/" + kPeerEpochsFile, "");
  auto empty = read_peer_epochs(state);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("peer-epochs is empty"), std::string::npos)
      << empty.error().message;
  write_file(state + "/" + kPeerEpochsFile, "2 1700000000000001\n3 17");
  auto cut_short = read_peer_epochs(state);
  ASSERT_FALSE(cut_short.ok());
  EXPECT_NE(cut_short.error().message.find("peer-epochs:2: cut short"), std::string::npos)
      << cut_short.error().message;
}

}  // namespace
}  // namespace keel::io
