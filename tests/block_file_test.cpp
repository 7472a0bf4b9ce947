// BlockFile (src/io/block_file.hpp): opening against the configured size, synchronous and
// asynchronous I/O, zeroing, and completions after close.
#include "io/block_file.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace keel::io {
namespace {

constexpr std::uint64_t kBytes = 1 << 20;
constexpr std::uint64_t kBlockFileTestMiB = 1 << 20;

class BlockFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/keel-blockfile-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/data.img";
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::unique_ptr<BlockFile> open(bool create = true, std::uint64_t bytes = kBytes) {
    auto file = BlockFile::open(io_, BlockFileOptions{path_, bytes, create, false, 2});
    EXPECT_TRUE(file.ok()) << file.error().message;
    return file.ok() ? std::move(file.value()) : nullptr;
  }
  // Runs the io_context until `done` has been called once; returns its error.
  int wait(const std::function<void(BlockFile::Done)>& start) {
    int result = -1;
    start([&](int error) { result = error; });
    io_.restart();
    io_.run();  // returns when the job's work guard and its completion are gone
    return result;
  }

  std::string dir_;
  std::string path_;
  asio::io_context io_;
};

volume::Bytes filled(std::size_t bytes, std::uint8_t value) {
  return volume::Bytes(bytes, static_cast<std::byte>(value));
}

TEST_F(BlockFileTest, CreatesAFileOfTheConfiguredSizeWithItsSpaceReserved) {
  auto file = open();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(std::filesystem::file_size(path_), kBytes);
  EXPECT_FALSE(file->is_block_device());
  EXPECT_EQ(file->created(), BlockFile::Created::reserved);
  struct stat info {};
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_GE(static_cast<std::uint64_t>(info.st_blocks) * 512, kBytes);  // allocated, not sparse
  file.reset();
  auto again = open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->created(), BlockFile::Created::no);
}

TEST_F(BlockFileTest, RefusesToCreateAFileTheFilesystemHasNoRoomFor) {
  const std::string small = dir_ + "/small";
  std::filesystem::create_directory(small);
  ASSERT_EQ(::mount("keel-test", small.c_str(), "tmpfs", 0, "size=256k"), 0)
      << "mounting a tmpfs (the tests run as root): " << std::strerror(errno);
  const std::string path = small + "/data.img";
  auto file = BlockFile::open(io_, BlockFileOptions{path, kBytes, true, false, 2});
  const bool exists = std::filesystem::exists(path);
  ::umount2(small.c_str(), MNT_DETACH);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message.find("cannot reserve 1048576 bytes for " + path),
            std::string::npos)
      << file.error().message;
  EXPECT_NE(file.error().message.find("bytes free for it"), std::string::npos)
      << file.error().message;
  EXPECT_FALSE(exists) << "a file that could not be reserved is removed";
}

TEST_F(BlockFileTest, RefusesAFileOfAnotherSizeWithAClearMessage) {
  std::ofstream(path_) << "short";
  auto file = BlockFile::open(io_, BlockFileOptions{path_, kBytes, true, false, 2});
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message.find("is 5 bytes, but the volume is configured with 1048576"),
            std::string::npos)
      << file.error().message;
  auto missing = BlockFile::open(io_, BlockFileOptions{dir_ + "/none", kBytes, false, false, 2});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos);
  auto directory = BlockFile::open(io_, BlockFileOptions{dir_, kBytes, false, true, 2});
  ASSERT_FALSE(directory.ok());
}

TEST_F(BlockFileTest, SyncReadWriteAndZeroing) {
  auto file = open();
  ASSERT_NE(file, nullptr);
  const auto ones = filled(8192, 0xff);
  ASSERT_EQ(file->write_sync(4096, ones), 0);
  auto back = filled(8192, 0);
  ASSERT_EQ(file->read_sync(4096, back), 0);
  EXPECT_EQ(back, ones);
  ASSERT_EQ(file->write_zeroes_sync(4096, 4096, /*may_unmap=*/true), 0);
  ASSERT_EQ(file->write_zeroes_sync(8192 + 100, 10, /*may_unmap=*/false), 0);
  ASSERT_EQ(file->read_sync(4096, back), 0);
  for (std::size_t i = 0; i < back.size(); ++i) {
    const bool zero = i < 4096 || (i >= 4196 && i < 4206);
    ASSERT_EQ(back[i], zero ? std::byte{0} : std::byte{0xff}) << i;
  }
  EXPECT_EQ(file->flush_sync(), 0);
  EXPECT_EQ(file->stats().errors, 0u);
}

TEST_F(BlockFileTest, AsyncOperationsCompleteOnTheIoContext) {
  auto file = open();
  ASSERT_NE(file, nullptr);
  auto data = std::make_shared<const volume::Bytes>(filled(4096, 0x5a));
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write(kBytes - 4096, data, true, done); }), 0);
  auto into = filled(4096, 0);
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->read(kBytes - 4096, 4096, into.data(), done); }),
            0);
  EXPECT_EQ(into, *data);
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->flush(done); }), 0);
  EXPECT_EQ(wait([&](BlockFile::Done done) {
              file->write_zeroes(kBytes - 4096, 4096, true, true, done);
            }),
            0);
  ASSERT_EQ(file->read_sync(kBytes - 4096, into), 0);
  EXPECT_EQ(into, filled(4096, 0));
  file->close();
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->flush(done); }), ESHUTDOWN);
}

// A large aligned write_uncached() goes past the page cache (the filesystem under /tmp takes
// O_DIRECT: ext4 on the test machines), reads back what was written, and leaves no stale page in
// the cache for the range; an unaligned or small one goes through the cache as write() does.
TEST_F(BlockFileTest, UncachedWritesBypassThePageCacheWhenAligned) {
  constexpr std::uint64_t kFileBytes = 4 * kBlockFileTestMiB;
  auto file = open(true, kFileBytes);
  ASSERT_NE(file, nullptr);
  // Cached, then overwritten past the cache: a stale cached page would read back 0x11.
  ASSERT_EQ(file->write_sync(0, filled(kMinDirectWriteBytes * 2, 0x11)), 0);
  auto big = std::make_shared<const volume::Bytes>(filled(kMinDirectWriteBytes * 2, 0x77));
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write_uncached(0, big, false, done); }), 0);
  EXPECT_EQ(file->stats().direct_writes, 1u);
  // Written from its own memory, which volume::Bytes aligns for a buffer this large.
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big->data()) % kDirectAlignBytes, 0u);
  auto into = filled(big->size(), 0);
  // The cache holds nothing for the range, or the new data: the kernel writes through the cache
  // instead when it cannot drop the range's pages (a page still referenced elsewhere), which is
  // rare and not ours to prevent. A stale page would read back 0x11 here.
  if (file->read_cached(0, into) == 0) {
    EXPECT_EQ(into, *big);
  }
  into.assign(big->size(), std::byte{0});
  ASSERT_EQ(file->read_sync(0, into), 0);
  EXPECT_EQ(into, *big);

  // Larger, with FUA.
  auto chunks = std::make_shared<volume::Bytes>(kBlockFileTestMiB / 2 * 3);
  for (std::size_t i = 0; i < chunks->size(); ++i) (*chunks)[i] = static_cast<std::byte>(i % 251);
  EXPECT_EQ(wait([&](BlockFile::Done done) {
              file->write_uncached(kFileBytes - chunks->size(), chunks, true, done);
            }),
            0);
  EXPECT_EQ(file->stats().direct_writes, 2u);
  into.assign(chunks->size(), std::byte{0});
  ASSERT_EQ(file->read_sync(kFileBytes - chunks->size(), into), 0);
  EXPECT_EQ(into, *chunks);

  // Unaligned, or small: through the page cache.
  auto odd = std::make_shared<const volume::Bytes>(filled(kMinDirectWriteBytes, 0x33));
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write_uncached(512, odd, false, done); }), 0);
  auto small = std::make_shared<const volume::Bytes>(filled(kDirectAlignBytes, 0x44));
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write_uncached(0, small, false, done); }), 0);
  EXPECT_EQ(file->stats().direct_writes, 2u);
  into.assign(kDirectAlignBytes + 512 + kMinDirectWriteBytes, std::byte{0});
  ASSERT_EQ(file->read_sync(0, into), 0);
  for (std::size_t i = 0; i < into.size(); ++i) {
    const auto want = i < kDirectAlignBytes ? 0x44 : i < 512 + kMinDirectWriteBytes ? 0x33 : 0x77;
    ASSERT_EQ(into[i], static_cast<std::byte>(want)) << i;
  }
  EXPECT_EQ(file->stats().errors, 0u);
}

// read_uncached() reads what was written without bringing the range into the page cache (the
// filesystem under /tmp takes O_DIRECT: ext4 on the test machines), a dirty cached page included;
// memory it cannot read into directly goes through the cache as read() does.
TEST_F(BlockFileTest, UncachedReadsLeaveThePageCacheAlone) {
  auto file = open(true, 4 * kBlockFileTestMiB);
  ASSERT_NE(file, nullptr);
  auto big = std::make_shared<const volume::Bytes>(filled(kBlockFileTestMiB, 0x3c));
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write_uncached(0, big, false, done); }), 0);
  ASSERT_EQ(file->stats().direct_writes, 1u);
  // One page rewritten through the cache and left dirty: the direct read must see it.
  ASSERT_EQ(file->write_sync(4096, filled(4096, 0x5a)), 0);
  volume::Bytes into(big->size());
  EXPECT_EQ(wait([&](BlockFile::Done done) {
              file->read_uncached(0, static_cast<std::uint32_t>(into.size()), into.data(), done);
            }),
            0);
  volume::Bytes expected = *big;
  std::fill_n(expected.begin() + 4096, 4096, std::byte{0x5a});
  EXPECT_EQ(into, expected);
  EXPECT_FALSE(file->range_cached(8192, big->size() - 8192)) << "the direct read cached the range";
  // Memory off a page boundary: read through the cache, and right all the same.
  volume::Bytes off(big->size() + 4096);
  EXPECT_EQ(wait([&](BlockFile::Done done) {
              file->read_uncached(0, static_cast<std::uint32_t>(big->size()), off.data() + 512,
                                  done);
            }),
            0);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), off.begin() + 512));
}

// range_cached() tells a range the page cache holds whole from one it lacks (cachestat(2)), so
// that the NBD server sends the first by sendfile and has the pool read the second.
TEST_F(BlockFileTest, TellsWhetherTheCacheHoldsARange) {
  constexpr long kCachestatSyscall = 451;
  std::uint64_t range[2] = {0, 4096};
  std::uint64_t stat[5] = {};
  if (::syscall(kCachestatSyscall, -1, range, stat, 0) != 0 && errno == ENOSYS) {
    GTEST_SKIP() << "this kernel has no cachestat(2); range_cached() answers true";
  }
  auto file = open(true, 4 * kBlockFileTestMiB);
  ASSERT_NE(file, nullptr);
  EXPECT_FALSE(file->range_cached(3 * kBlockFileTestMiB, 4096));  // never written nor read
  auto big = std::make_shared<const volume::Bytes>(filled(kBlockFileTestMiB, 0x21));
  ASSERT_EQ(file->write_sync(0, *big), 0);
  EXPECT_TRUE(file->range_cached(0, big->size()));
  EXPECT_TRUE(file->range_cached(100, 5000));  // unaligned: the pages it touches
  // On disk but not in the cache: a range never cached before, since the kernel may keep the pages
  // of a cached range that a direct write covers (it then writes through the cache).
  const std::uint64_t direct_at = 2 * kBlockFileTestMiB;
  EXPECT_EQ(wait([&](BlockFile::Done done) { file->write_uncached(direct_at, big, false, done); }),
            0);
  ASSERT_EQ(file->stats().direct_writes, 1u);
  EXPECT_FALSE(file->range_cached(direct_at, big->size()));
  auto into = filled(big->size(), 0);
  ASSERT_EQ(file->read_sync(direct_at, into), 0);
  EXPECT_EQ(into, *big);
  EXPECT_TRUE(file->range_cached(direct_at, big->size()));
}

}  // namespace
}  // namespace keel::io
