// Tests for a volume's metadata file: what is written is what is read back, the two header slots
// alternate so that a torn or damaged one falls back to the other, a damaged bitmap page reads
// as all dirty, a file for another volume, size or node is refused with a message, create()
// does not overwrite without force, and a 1 TiB volume's file is sparse and quick to make.
#include "io/volume_metadata.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

namespace keel::io {
namespace {

using ::testing::HasSubstr;

class VolumeMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-meta-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;
    path_ = directory_ + "/data.keelmeta";
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  static MetadataHeader header(std::uint64_t size_bytes = 1ull << 30) {
    MetadataHeader h;
    h.volume_name = "data";
    h.size_bytes = size_bytes;
    h.node = 2;
    return h;
  }

  // The raw bytes of the file at `offset`, and overwriting them (a crash or damage at rest).
  std::vector<std::uint8_t> read_raw(std::uint64_t offset, std::size_t size) const {
    std::vector<std::uint8_t> bytes(size);
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(::pread(fd, bytes.data(), size, static_cast<off_t>(offset)),
              static_cast<ssize_t>(size));
    ::close(fd);
    return bytes;
  }
  void write_raw(std::uint64_t offset, const std::vector<std::uint8_t>& bytes) const {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  static void write_raw_file(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  std::uint64_t slot_sequence(int slot) const {
    auto decoded = decode_slot(read_raw(static_cast<std::uint64_t>(slot) * kSlotBytes, kSlotBytes));
    return decoded.ok() ? decoded.value().sequence : 0;
  }

  std::string directory_;
  std::string path_;
};

volume::PersistentState sample_state(volume::Generation current) {
  volume::PersistentState state;
  state.generations.current = current;
  state.generations.bitmap = 0x1111;
  state.generations.history = {0x2222, 0x3333};
  state.disk = volume::DiskState::UpToDate;
  state.primary_at_crash = true;
  state.peer_outdated = true;
  state.survived_primary = true;
  state.primary_sync_boot = 0xb0075eed;
  state.blank = true;
  return state;
}

BitmapPage page_with_bits(std::initializer_list<std::size_t> bits) {
  BitmapPage page{};
  for (const std::size_t bit : bits) page[bit / 8] |= std::byte{1} << (bit % 8);
  return page;
}

// Every page read_bitmap() visits.
std::map<std::uint64_t, BitmapPage> read_all(VolumeMetadataFile& file,
                                             BitmapReadSummary* summary = nullptr) {
  std::map<std::uint64_t, BitmapPage> pages;
  auto read = file.read_bitmap([&](std::uint64_t page, BitmapPageView bytes) {
    std::copy(bytes.begin(), bytes.end(), pages[page].begin());
  });
  EXPECT_TRUE(read.ok()) << read.error().message;
  if (summary != nullptr && read.ok()) *summary = read.value();
  return pages;
}

std::size_t count_bits(const BitmapPage& page) {
  std::size_t bits = 0;
  for (const std::byte b : page)
    bits += static_cast<std::size_t>(std::popcount(std::to_integer<unsigned>(b)));
  return bits;
}

// The fuzz target's seeds are slot bodies this version accepts (a format change must renew them).
TEST(VolumeMetadataFormat, FuzzSeedsAreSlotsOfThisVersion) {
  const std::filesystem::path corpus =
      std::filesystem::path(KEEL_SOURCE_DIR) / "fuzz" / "corpus" / "volume_metadata";
  std::size_t seeds = 0;
  bool with_boot = false;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    std::ifstream file(entry.path(), std::ios::binary);
    const std::vector<std::uint8_t> body((std::istreambuf_iterator<char>(file)),
                                         std::istreambuf_iterator<char>());
    auto decoded = decode_slot(frame_slot(body));
    ASSERT_TRUE(decoded.ok()) << entry.path() << ": " << decoded.error().message;
    with_boot = with_boot || decoded.value().state.primary_sync_boot != 0;
    ++seeds;
  }
  EXPECT_GE(seeds, 4u);
  EXPECT_TRUE(with_boot) << "no seed carries primary_sync_boot";
}

TEST(VolumeMetadataFormat, Crc32cIsCastagnoli) {
  const std::string text = "123456789";
  EXPECT_EQ(crc32c(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()),
                                                 text.size())),
            0xe3069283u);
  EXPECT_EQ(page_checksum(BitmapPage{}), 0u);
  EXPECT_NE(page_checksum(page_with_bits({0})), 0u);
}

TEST(VolumeMetadataFormat, LayoutFitsTheVolume) {
  MetadataHeader header;
  header.volume_name = "v";
  header.node = 1;
  header.size_bytes = 1ull << 40;
  const MetadataLayout layout = layout_for(header);
  EXPECT_EQ(layout.blocks, 1ull << 28);
  EXPECT_EQ(layout.bitmap_pages, 8192u);  // 32 MiB of bitmap
  EXPECT_EQ(layout.table_bytes, 32u * 1024);
  EXPECT_EQ(layout.bitmap_offset % kMetadataPageBytes, 0u);
  EXPECT_EQ(layout.file_bytes, 2 * kSlotBytes + (32u << 10) + (32u << 20));
  header.size_bytes = (128ull << 20) + 4096;  // one block into a second page
  EXPECT_EQ(layout_for(header).bitmap_pages, 2u);
  EXPECT_EQ(layout_for(header).blocks_in_page(1), 1u);
}

TEST_F(VolumeMetadataTest, StateAndBitmapRoundTrip) {
  auto created = VolumeMetadataFile::create(path_, header(), false);
  ASSERT_TRUE(created.ok()) << created.error().message;
  VolumeMetadataFile& file = created.value();
  EXPECT_EQ(file.state(), volume::PersistentState{});
  EXPECT_TRUE(file.activity_extents().empty());
  ASSERT_TRUE(file.write_state(sample_state(0xabcd), {3, 200, 7}).ok());
  const std::vector<std::pair<std::uint64_t, BitmapPage>> pages = {
      {0, page_with_bits({0, 9, 4095})}, {5, page_with_bits({32767})}};
  ASSERT_TRUE(file.write_bitmap_pages(pages).ok());
  ASSERT_TRUE(file.write_bitmap_page(6, page_with_bits({1})).ok());
  ASSERT_TRUE(file.write_bitmap_page(6, BitmapPage{}).ok());  // cleared again

  auto opened = VolumeMetadataFile::open(path_, header());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened.value().state(), sample_state(0xabcd));
  EXPECT_EQ(opened.value().activity_extents(), (std::vector<std::uint64_t>{3, 200, 7}));
  BitmapReadSummary summary;
  const auto read = read_all(opened.value(), &summary);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read.at(0), pages[0].second);
  EXPECT_EQ(read.at(5), pages[1].second);
  EXPECT_EQ(summary.nonzero_pages, 2u);
  EXPECT_EQ(summary.damaged_pages, 0u);
}

TEST_F(VolumeMetadataTest, SlotsAlternate) {
  auto file = VolumeMetadataFile::create(path_, header(), false);
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(slot_sequence(0), 1u);
  EXPECT_EQ(slot_sequence(1), 0u);  // not written yet
  ASSERT_TRUE(file.value().write_state(sample_state(1), {}).ok());
  EXPECT_EQ(slot_sequence(0), 1u);
  EXPECT_EQ(slot_sequence(1), 2u);
  ASSERT_TRUE(file.value().write_state(sample_state(2), {}).ok());
  EXPECT_EQ(slot_sequence(0), 3u);
  EXPECT_EQ(slot_sequence(1), 2u);
  // Reopened, writing goes on in the slot that does not hold the newest state.
  auto reopened = VolumeMetadataFile::open(path_, header());
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  EXPECT_EQ(reopened.value().sequence(), 3u);
  ASSERT_TRUE(reopened.value().write_state(sample_state(3), {}).ok());
  EXPECT_EQ(slot_sequence(0), 3u);
  EXPECT_EQ(slot_sequence(1), 4u);
}

TEST_F(VolumeMetadataTest, TornOrDamagedSlotFallsBackToTheOther) {
  auto file = VolumeMetadataFile::create(path_, header(), false);
  ASSERT_TRUE(file.ok()) << file.error().message;
  ASSERT_TRUE(file.value().write_state(sample_state(1), {1}).ok());  // slot B, sequence 2
  ASSERT_TRUE(file.value().write_state(sample_state(2), {2}).ok());  // slot A, sequence 3
  // A torn write of slot A: its start new, the rest not written.
  std::vector<std::uint8_t> slot = read_raw(0, kSlotBytes);
  std::fill(slot.begin() + 40, slot.end(), 0);
  write_raw(0, slot);
  auto opened = VolumeMetadataFile::open(path_, header());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened.value().state(), sample_state(1));
  EXPECT_EQ(opened.value().activity_extents(), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(opened.value().sequence(), 2u);
  // The next write goes to the broken slot, never over the good one.
  ASSERT_TRUE(opened.value().write_state(sample_state(4), {}).ok());
  EXPECT_EQ(slot_sequence(0), 3u);
  EXPECT_EQ(slot_sequence(1), 2u);

  // One flipped bit in each slot: nothing to fall back to.
  for (const std::uint64_t offset : {std::uint64_t{40}, kSlotBytes + 40}) {
    std::vector<std::uint8_t> byte = read_raw(offset, 1);
    byte[0] ^= 0x10;
    write_raw(offset, byte);
  }
  auto damaged = VolumeMetadataFile::open(path_, header());
  ASSERT_FALSE(damaged.ok());
  EXPECT_THAT(damaged.error().message,
              HasSubstr("is damaged: slot A: bad checksum (a torn or damaged write); slot B: bad "
                        "checksum"));
}

TEST_F(VolumeMetadataTest, DamagedBitmapPageReadsAsAllDirty) {
  // Two bitmap pages; the second covers only 8 blocks.
  const MetadataHeader small = header((128ull << 20) + 8 * 4096);
  auto file = VolumeMetadataFile::create(path_, small, false);
  ASSERT_TRUE(file.ok()) << file.error().message;
  ASSERT_TRUE(file.value().write_bitmap_page(0, page_with_bits({5})).ok());
  ASSERT_TRUE(file.value().write_bitmap_page(1, page_with_bits({2})).ok());
  const MetadataLayout& layout = file.value().layout();
  // Page 0 damaged at rest; page 1's write lost while its checksum landed (read back as zeros).
  write_raw(layout.page_offset(0) + 100, {0x01});
  write_raw(layout.page_offset(1), std::vector<std::uint8_t>(kMetadataPageBytes, 0));

  auto opened = VolumeMetadataFile::open(path_, small);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  BitmapReadSummary summary;
  const auto read = read_all(opened.value(), &summary);
  EXPECT_EQ(summary.damaged_pages, 2u);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(count_bits(read.at(0)), kBlocksPerBitmapPage);
  EXPECT_EQ(read.at(1), page_with_bits({0, 1, 2, 3, 4, 5, 6, 7}));  // never past the end
}

TEST_F(VolumeMetadataTest, OtherVolumeSizeOrNodeIsRefused) {
  ASSERT_TRUE(VolumeMetadataFile::create(path_, header(), false).ok());
  auto bigger = VolumeMetadataFile::open(path_, header(2ull << 30));
  ASSERT_FALSE(bigger.ok());
  EXPECT_THAT(bigger.error().message,
              HasSubstr("metadata for volume data says size 1 GiB but the config says 2 GiB"));
  MetadataHeader other = header();
  other.volume_name = "logs";
  auto renamed = VolumeMetadataFile::open(path_, other);
  ASSERT_FALSE(renamed.ok());
  EXPECT_THAT(renamed.error().message, HasSubstr("is for volume \"data\", not \"logs\""));
  other = header();
  other.node = 1;
  auto moved = VolumeMetadataFile::open(path_, other);
  ASSERT_FALSE(moved.ok());
  EXPECT_THAT(moved.error().message, HasSubstr("belongs to node 2, not to this node (1)"));
  auto missing = VolumeMetadataFile::open(directory_ + "/none", header());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("does not exist"));
}

TEST_F(VolumeMetadataTest, CreateRefusesToOverwriteWithoutForce) {
  {
    auto file = VolumeMetadataFile::create(path_, header(), false);
    ASSERT_TRUE(file.ok()) << file.error().message;
    ASSERT_TRUE(file.value().write_state(sample_state(9), {}).ok());
  }
  auto again = VolumeMetadataFile::create(path_, header(), false);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("already holds keel metadata for volume \"data\""));
  auto opened = VolumeMetadataFile::open(path_, header());
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened.value().state(), sample_state(9));  // untouched

  auto forced = VolumeMetadataFile::create(path_, header(), true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_EQ(forced.value().state(), volume::PersistentState{});
  EXPECT_FALSE(std::filesystem::exists(path_ + ".new"));

  const std::string other = directory_ + "/notes.txt";
  write_raw_file(other, "not metadata");
  auto foreign = VolumeMetadataFile::create(other, header(), false);
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(foreign.error().message, HasSubstr("is not a keel metadata file"));
  auto not_metadata = VolumeMetadataFile::open(other, header());
  ASSERT_FALSE(not_metadata.ok());
  EXPECT_THAT(not_metadata.error().message, HasSubstr("is not a keel metadata file"));
}

TEST_F(VolumeMetadataTest, FileIsPrivate) {
  ::umask(0);
  auto file = VolumeMetadataFile::create(path_, header(), false);
  ::umask(022);
  ASSERT_TRUE(file.ok()) << file.error().message;
  struct stat info {};
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

TEST_F(VolumeMetadataTest, TerabyteVolumeIsSparseAndQuick) {
  const auto start = std::chrono::steady_clock::now();
  auto file = VolumeMetadataFile::create(path_, header(1ull << 40), false);
  ASSERT_TRUE(file.ok()) << file.error().message;
  struct stat info {};
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(info.st_size), file.value().layout().file_bytes);
  EXPECT_LT(static_cast<std::uint64_t>(info.st_blocks) * 512, 1u << 20);  // of a 32 MiB bitmap
  ASSERT_TRUE(file.value().write_bitmap_page(8191, page_with_bits({32767})).ok());

  auto opened = VolumeMetadataFile::open(path_, header(1ull << 40));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  const auto read = read_all(opened.value());
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read.at(8191), page_with_bits({32767}));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

// Anything with load_page() takes the pages directly (volume::DirtyBitmap does).
struct FakeBitmap {
  std::map<std::uint64_t, BitmapPage> pages;
  void load_page(std::uint64_t page, BitmapPageView bytes) {
    std::copy(bytes.begin(), bytes.end(), pages[page].begin());
  }
};

TEST_F(VolumeMetadataTest, ReadsIntoABitmap) {
  auto file = VolumeMetadataFile::create(path_, header(), false);
  ASSERT_TRUE(file.ok()) << file.error().message;
  ASSERT_TRUE(file.value().write_bitmap_page(3, page_with_bits({7})).ok());
  FakeBitmap bitmap;
  ASSERT_TRUE(file.value().read_bitmap(bitmap).ok());
  ASSERT_EQ(bitmap.pages.size(), 1u);
  EXPECT_EQ(bitmap.pages.at(3), page_with_bits({7}));
}

}  // namespace
}  // namespace keel::io
