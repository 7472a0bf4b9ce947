// Tests for the journal a volume's agent keeps while its metadata may lag behind the replica:
// how updates combine (the newest state, the pages in order, every extent kept), the journal's
// format (round trip, damage and another volume refused), when the journal file exists (only
// from a failure until every update is written, and at a stop with updates not seen written),
// and a start that applies it to the metadata on disk and removes it. Real files in a temporary
// directory.
#include "agent/volume_unsaved_metadata.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "agent_test_support.hpp"
#include "file_test_support.hpp"
#include "io/unsaved_updates_format.hpp"

namespace keel::agent {
namespace {

constexpr std::uint64_t kSize = 256ull << 20;  // 64 extents, two bitmap pages

volume::BitmapPageBytes page_with(std::size_t at, std::uint8_t value) {
  volume::BitmapPageBytes page{};
  page[at] = std::byte{value};
  return page;
}

volume::UnsavedUpdate update_of(
    volume::DiskState disk, std::vector<std::uint64_t> extents,
    std::vector<std::pair<std::uint64_t, volume::BitmapPageBytes>> pages = {}) {
  volume::UnsavedUpdate update;
  update.state.generations.current = 0x1234;
  update.state.disk = disk;
  update.activity_extents = std::move(extents);
  update.pages = std::move(pages);
  return update;
}

TEST(RecoverUnsavedUpdates, TheNewestStateThePagesInOrderAndEveryExtentNewestFirst) {
  volume::PersistentState state;
  state.disk = volume::DiskState::UpToDate;
  volume::DirtyBitmap bitmap(kSize);
  std::vector<std::uint64_t> extents{1, 2};
  const std::vector<volume::UnsavedUpdate> updates{
      update_of(volume::DiskState::UpToDate, {3, 1}, {{0, page_with(0, 0x01)}}),
      // It drops 1 and 3 from the log after a flush of the data that may have failed.
      update_of(volume::DiskState::Inconsistent, {4}, {{0, page_with(0, 0x02)}}),
  };
  volume::recover_unsaved_updates(updates, state, bitmap, extents, 4096);
  EXPECT_EQ(state.disk, volume::DiskState::Inconsistent);
  EXPECT_EQ(extents, (std::vector<std::uint64_t>{4, 3, 1, 2}));
  EXPECT_FALSE(bitmap.test(0));  // the later page won
  EXPECT_TRUE(bitmap.test(1));
  EXPECT_EQ(bitmap.set_count(), 1u);

  // Without room in the log, the extents left out are marked out of sync instead.
  std::vector<std::uint64_t> capped{1, 2};
  volume::DirtyBitmap marked(kSize);
  volume::recover_unsaved_updates(updates, state, marked, capped, 2);
  EXPECT_EQ(capped, (std::vector<std::uint64_t>{4, 3}));
  const std::uint64_t per_extent = volume::kExtentBytes / volume::kBlockBytes;
  EXPECT_EQ(marked.set_count(), 1 + 2 * per_extent);
  EXPECT_TRUE(marked.test(1 * per_extent) && marked.test(3 * per_extent - 1));
  EXPECT_FALSE(marked.test(3 * per_extent));
}

class UnsavedMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metadata_path_ = directory_.file("data.keelmeta");
    journal_path_ = unsaved_metadata_path(directory_.file("state"), "data");
    header_.volume_name = "data";
    header_.size_bytes = kSize;
    header_.node = 1;
    auto created = io::VolumeMetadataFile::create(metadata_path_, header_, false);
    ASSERT_TRUE(created.ok()) << created.error().message;
    state_.generations.current = 0x1234;
    state_.disk = volume::DiskState::UpToDate;
    ASSERT_TRUE(created.value().write_state(state_, {7}).ok());
  }
  io::VolumeMetadataFile reopen() {
    auto opened = io::VolumeMetadataFile::open(metadata_path_, header_);
    EXPECT_TRUE(opened.ok()) << opened.error().message;
    return std::move(opened).value();
  }
  Result<std::vector<volume::UnsavedUpdate>> journal_on_disk() const {
    const std::string text = keel::testing::read_file(journal_path_);
    return io::decode_unsaved_updates(header_, Bytes(text.begin(), text.end()));
  }
  std::shared_ptr<const volume::UnsavedUpdate> shared(volume::UnsavedUpdate update) {
    return std::make_shared<const volume::UnsavedUpdate>(std::move(update));
  }

  testing::TempDir directory_;
  std::string metadata_path_;
  std::string journal_path_;
  io::MetadataHeader header_;
  volume::PersistentState state_;
};

TEST_F(UnsavedMetadataTest, TheFormatRoundTripsAndRefusesDamageAndOtherVolumes) {
  const std::vector<volume::UnsavedUpdate> updates{
      update_of(volume::DiskState::UpToDate, {3, 1}, {{1, page_with(9, 0x80)}}),
      update_of(volume::DiskState::Inconsistent, {})};
  Bytes bytes = io::encode_unsaved_updates(header_, updates);
  auto decoded = io::decode_unsaved_updates(header_, bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ(decoded.value().size(), 2u);
  EXPECT_EQ(decoded.value()[0].state, updates[0].state);
  EXPECT_EQ(decoded.value()[0].activity_extents, updates[0].activity_extents);
  EXPECT_EQ(decoded.value()[0].pages, updates[0].pages);
  EXPECT_EQ(decoded.value()[1].state, updates[1].state);

  io::MetadataHeader other = header_;
  other.node = 2;
  EXPECT_FALSE(io::decode_unsaved_updates(other, bytes).ok());
  bytes[bytes.size() / 2] ^= 0x01;
  EXPECT_FALSE(io::decode_unsaved_updates(header_, bytes).ok());
  bytes.pop_back();
  EXPECT_FALSE(io::decode_unsaved_updates(header_, bytes).ok());
}

TEST_F(UnsavedMetadataTest, TheJournalExistsFromAFailureUntilEveryUpdateIsWritten) {
  UnsavedMetadataJournal journal(journal_path_, "data", header_);
  journal.submitted(shared(update_of(volume::DiskState::UpToDate, {1})), 1);
  journal.written();
  EXPECT_FALSE(std::filesystem::exists(journal_path_)) << "nothing failed";

  journal.submitted(shared(update_of(volume::DiskState::UpToDate, {2})), 2);
  journal.activate("a disk operation failed");
  ASSERT_TRUE(journal_on_disk().ok());
  EXPECT_EQ(journal_on_disk().value().size(), 1u);
  journal.submitted(shared(update_of(volume::DiskState::Inconsistent, {2})), 3);
  ASSERT_TRUE(journal_on_disk().ok());
  EXPECT_EQ(journal_on_disk().value().size(), 2u) << "journaled before it is handed on";
  journal.written();
  EXPECT_TRUE(std::filesystem::exists(journal_path_)) << "the step-down is not written yet";
  journal.written();
  EXPECT_FALSE(std::filesystem::exists(journal_path_));
  EXPECT_FALSE(journal.active());
}

// A failed rewrite keeps the journal written before: it may hold a step-down's mark that the
// replica was told is safe. The metadata worker removes it just before writing the first update
// it lacks (by then every update it holds is written), so it never rolls the metadata back.
TEST_F(UnsavedMetadataTest, AFailedRewriteKeepsTheJournalUntilTheMetadataWouldPassIt) {
  UnsavedMetadataJournal journal(journal_path_, "data", header_);
  journal.activate("a disk operation failed");
  journal.submitted(shared(update_of(volume::DiskState::Inconsistent, {1})), 1);
  ASSERT_TRUE(journal.holds_pending());
  // The next rewrite cannot create its temporary file.
  std::filesystem::create_directories(journal_path_ + ".new");
  journal.submitted(shared(update_of(volume::DiskState::Inconsistent, {2})), 2);
  EXPECT_FALSE(journal.holds_pending()) << "the file lacks update 2";
  ASSERT_TRUE(journal_on_disk().ok()) << "the journal written before is gone";
  ASSERT_EQ(journal_on_disk().value().size(), 1u);
  EXPECT_EQ(journal_on_disk().value()[0].state.disk, volume::DiskState::Inconsistent);

  EXPECT_TRUE(journal.before_metadata_write(1).ok());
  EXPECT_TRUE(std::filesystem::exists(journal_path_)) << "update 1 is not written yet";
  journal.written();  // update 1
  EXPECT_TRUE(journal.before_metadata_write(2).ok());
  EXPECT_FALSE(std::filesystem::exists(journal_path_)) << "it would roll back update 2";

  // The directory works again: the next update is journaled whole.
  std::filesystem::remove(journal_path_ + ".new");
  journal.submitted(shared(update_of(volume::DiskState::Inconsistent, {3})), 3);
  EXPECT_TRUE(journal.holds_pending());
  ASSERT_TRUE(journal_on_disk().ok());
  EXPECT_EQ(journal_on_disk().value().size(), 2u);
  EXPECT_TRUE(journal.before_metadata_write(2).ok());
  EXPECT_TRUE(std::filesystem::exists(journal_path_)) << "a current journal stays";
}

TEST_F(UnsavedMetadataTest, AStopJournalsTheUpdatesNotSeenWritten) {
  UnsavedMetadataJournal journal(journal_path_, "data", header_);
  journal.stopping();
  EXPECT_FALSE(std::filesystem::exists(journal_path_)) << "nothing was pending";
  journal.submitted(shared(update_of(volume::DiskState::UpToDate, {1})), 1);
  journal.submitted(shared(update_of(volume::DiskState::Inconsistent, {1})), 2);
  journal.written();
  journal.stopping();  // the worker dropped the second one
  ASSERT_TRUE(journal_on_disk().ok());
  ASSERT_EQ(journal_on_disk().value().size(), 1u);
  EXPECT_EQ(journal_on_disk().value()[0].state.disk, volume::DiskState::Inconsistent);
}

TEST_F(UnsavedMetadataTest, AStartAppliesTheJournalToTheMetadataAndRemovesIt) {
  {
    UnsavedMetadataJournal journal(journal_path_, "data", header_);
    journal.activate("a metadata update failed");
    journal.submitted(
        shared(update_of(volume::DiskState::Inconsistent, {}, {{0, page_with(0, 1)}})), 1);
  }  // the agent stops with it unwritten
  ASSERT_TRUE(std::filesystem::exists(journal_path_));
  {
    io::VolumeMetadataFile metadata = reopen();
    volume::PersistentState state = metadata.state();
    volume::DirtyBitmap bitmap(kSize);
    std::vector<std::uint64_t> extents = metadata.activity_extents();
    auto applied =
        recover_unsaved_metadata(journal_path_, "data", metadata, state, bitmap, extents);
    ASSERT_TRUE(applied.ok()) << applied.error().message;
    EXPECT_EQ(applied.value(), 1u);
    EXPECT_EQ(state.disk, volume::DiskState::Inconsistent);
    EXPECT_EQ(extents, (std::vector<std::uint64_t>{7}));
    EXPECT_TRUE(bitmap.test(0));
  }
  EXPECT_FALSE(std::filesystem::exists(journal_path_));
  // On disk: a second start, without the journal, does not go back to UpToDate.
  io::VolumeMetadataFile metadata = reopen();
  EXPECT_EQ(metadata.state().disk, volume::DiskState::Inconsistent);
  EXPECT_EQ(metadata.activity_extents(), (std::vector<std::uint64_t>{7}));
  volume::DirtyBitmap bitmap(kSize);
  ASSERT_TRUE(metadata.read_bitmap(bitmap).ok());
  EXPECT_TRUE(bitmap.test(0));
  EXPECT_EQ(bitmap.set_count(), 1u);
}

TEST_F(UnsavedMetadataTest, WithoutAJournalNothingChangesAndADamagedOneStopsTheStart) {
  io::VolumeMetadataFile metadata = reopen();
  volume::PersistentState state = metadata.state();
  volume::DirtyBitmap bitmap(kSize);
  std::vector<std::uint64_t> extents = metadata.activity_extents();
  auto applied = recover_unsaved_metadata(journal_path_, "data", metadata, state, bitmap, extents);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied.value(), 0u);
  EXPECT_EQ(state, state_);

  // A journal begun with nothing pending holds no update: it only goes.
  UnsavedMetadataJournal(journal_path_, "data", header_).activate("a disk operation failed");
  ASSERT_TRUE(std::filesystem::exists(journal_path_));
  applied = recover_unsaved_metadata(journal_path_, "data", metadata, state, bitmap, extents);
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied.value(), 0u);
  EXPECT_EQ(state, state_);
  EXPECT_FALSE(std::filesystem::exists(journal_path_));

  std::ofstream(journal_path_) << "not a journal";
  auto refused = recover_unsaved_metadata(journal_path_, "data", metadata, state, bitmap, extents);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(journal_path_), std::string::npos)
      << refused.error().message;
  EXPECT_TRUE(std::filesystem::exists(journal_path_)) << "kept for the operator";
}

}  // namespace
}  // namespace keel::agent
