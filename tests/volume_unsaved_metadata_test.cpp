// Tests for the note a volume's agent leaves while a metadata update fails: written once at a
// failure, removed when an update is written, and at the next start an UpToDate copy that finds
// it is written back Inconsistent with every block out of sync (metadata and bitmap on disk),
// while a copy that recorded its peer outdated keeps its state. Real files in a temporary
// directory.
#include "agent/volume_unsaved_metadata.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace keel::agent {
namespace {

constexpr std::uint64_t kSize = 64ull << 20;

class UnsavedMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-unsaved-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;
    metadata_path_ = directory_ + "/data.keelmeta";
    note_ = unsaved_metadata_note_path(directory_ + "/state", "data");
    header_.volume_name = "data";
    header_.size_bytes = kSize;
    header_.node = 1;
    auto created = io::VolumeMetadataFile::create(metadata_path_, header_, false);
    ASSERT_TRUE(created.ok()) << created.error().message;
    state_.generations.current = 0x1234;
    state_.disk = volume::DiskState::UpToDate;
    state_.survived_primary = true;
    ASSERT_TRUE(created.value().write_state(state_, {}).ok());
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  io::VolumeMetadataFile reopen() {
    auto opened = io::VolumeMetadataFile::open(metadata_path_, header_);
    EXPECT_TRUE(opened.ok()) << opened.error().message;
    return std::move(opened).value();
  }
  struct Loaded {
    volume::PersistentState state;
    volume::DirtyBitmap bitmap{kSize};
  };
  // What an agent starting now works with: the metadata, distrusted if the note is there.
  Loaded start() {
    io::VolumeMetadataFile metadata = reopen();
    Loaded loaded{metadata.state()};
    auto done = distrust_metadata_if_noted(note_, "data", metadata, loaded.state, loaded.bitmap);
    EXPECT_TRUE(done.ok()) << done.error().message;
    return loaded;
  }
  std::string note_text() const {
    std::ifstream file(note_);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  std::string directory_;
  std::string metadata_path_;
  std::string note_;
  io::MetadataHeader header_;
  volume::PersistentState state_;
};

TEST_F(UnsavedMetadataTest, TheNoteIsWrittenOnceAtAFailureAndGoesWhenAnUpdateIsWritten) {
  UnsavedMetadataNote note(note_, "data");
  note.update_written();  // nothing to remove
  EXPECT_FALSE(std::filesystem::exists(note_));
  note.update_failed("writing the metadata: No space left on device");
  ASSERT_TRUE(std::filesystem::exists(note_));
  EXPECT_EQ(note_text(), "writing the metadata: No space left on device\n");
  note.update_failed("another attempt");  // the first reason stays
  EXPECT_EQ(note_text(), "writing the metadata: No space left on device\n");
  note.update_written();
  EXPECT_FALSE(std::filesystem::exists(note_));
}

TEST_F(UnsavedMetadataTest, WithoutTheNoteTheMetadataIsTrusted) {
  const Loaded loaded = start();
  EXPECT_EQ(loaded.state, state_);
  EXPECT_EQ(loaded.bitmap.set_count(), 0u);
}

TEST_F(UnsavedMetadataTest, AnUpToDateCopyWithTheNoteIsWrittenBackInconsistentAllOutOfSync) {
  UnsavedMetadataNote(note_, "data").update_failed("writing the metadata: Input/output error");
  ASSERT_TRUE(std::filesystem::exists(note_));
  const Loaded loaded = start();
  EXPECT_EQ(loaded.state.disk, volume::DiskState::Inconsistent);
  EXPECT_FALSE(loaded.state.survived_primary);
  EXPECT_EQ(loaded.state.generations, state_.generations);
  EXPECT_EQ(loaded.bitmap.set_count(), loaded.bitmap.blocks());
  EXPECT_FALSE(std::filesystem::exists(note_));
  // On disk too: a second restart, without the note, does not go back to UpToDate.
  io::VolumeMetadataFile metadata = reopen();
  EXPECT_EQ(metadata.state().disk, volume::DiskState::Inconsistent);
  volume::DirtyBitmap bitmap(kSize);
  ASSERT_TRUE(metadata.read_bitmap(bitmap).ok());
  EXPECT_EQ(bitmap.set_count(), bitmap.blocks());
}

TEST_F(UnsavedMetadataTest, ACopyThatRecordedItsPeerOutdatedKeepsItsState) {
  state_.peer_outdated = true;
  ASSERT_TRUE(reopen().write_state(state_, {}).ok());
  UnsavedMetadataNote(note_, "data").update_failed("writing the bitmap: Input/output error");
  const Loaded loaded = start();
  EXPECT_EQ(loaded.state, state_);
  EXPECT_EQ(loaded.bitmap.set_count(), 0u);
  EXPECT_FALSE(std::filesystem::exists(note_));
}

}  // namespace
}  // namespace keel::agent
