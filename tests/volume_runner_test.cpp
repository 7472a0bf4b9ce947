// VolumeRunner on one node whose peer never answers: promoted by force, it serves the volume on
// its own (the peer's copy recorded outdated through a hook standing in for the ring).
#include "agent/volume_runner.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "agent/volume_identity.hpp"
#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

constexpr std::uint32_t kRangeBytes = 1u << 20;

std::uint16_t free_tcp_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(
      io, asio::ip::tcp::endpoint(asio::ip::make_address(testing::TestCluster::address(1)), 0));
  return acceptor.local_endpoint().port();
}

std::int64_t allocated_blocks(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<std::int64_t>(info.st_blocks) : -1;
}

// A cluster of two whose volume "data" has node 1's copy on `backing`: created as
// `keel volume create` does (a fresh copy, UpToDate, its backing file reserved where the
// filesystem can: `reserved` says whether it could).
struct OneCopy {
  testing::TestCluster cluster{2};
  std::string backing = cluster.dir.file("data.img");
  std::optional<config::ClusterConfig> config;
  bool reserved = false;
  std::string size = "4MiB";
  std::string extra;  // more keys for the [[volume]] section

  const config::VolumeConfig& volume() const { return config->volumes.at(0); }

  bool create() {
    auto parsed = config::parse_config(
        cluster.config_text(1) + "\n[[volume]]\nname = \"data\"\nnodes = [\"n1\", \"n2\"]\n" +
            "size = \"" + size + "\"\nbacking = \"" + backing + "\"\nmetadata = \"" +
            cluster.dir.file("data.meta") + "\"\nnbd_socket = \"" + cluster.dir.file("nbd.sock") +
            "\"\nreplication_port = " + std::to_string(free_tcp_port()) + "\n" + extra,
        "keel.toml");
    EXPECT_TRUE(parsed.ok()) << parsed.error().message;
    if (!parsed.ok()) return false;
    config = std::move(parsed).value();
    auto metadata = io::VolumeMetadataFile::create(volume().metadata_for(1),
                                                   volume_metadata_header(volume(), 1), false);
    EXPECT_TRUE(metadata.ok()) << metadata.error().message;
    asio::io_context io;
    io::BlockFileOptions disk;
    disk.path = backing;
    disk.size_bytes = volume().size_bytes;
    disk.create = true;
    disk.threads = 1;
    auto made = io::BlockFile::open(io, disk);
    EXPECT_TRUE(made.ok()) << made.error().message;
    if (!metadata.ok() || !made.ok()) return false;
    reserved = made.value()->created() == io::BlockFile::Created::reserved;
    volume::PersistentState state;
    state.disk = volume::DiskState::UpToDate;
    state.generations.current = empty_generation(volume());
    state.blank = true;
    return metadata.value().write_state(state, {}).ok();
  }

  // The copy's state as its metadata file holds it now.
  std::optional<volume::DiskState> disk_on_file() const {
    auto file =
        io::VolumeMetadataFile::open(volume().metadata_for(1), volume_metadata_header(volume(), 1));
    if (!file.ok()) return std::nullopt;
    return file.value().state().disk;
  }
};

// Node 1's runner, promoted by force and serving alone: its peer's copy is recorded outdated as
// soon as it asks.
struct ServingAlone {
  asio::io_context io;
  std::unique_ptr<VolumeRunner> runner;

  ~ServingAlone() {
    if (runner) runner->stop();
  }

  void start(const OneCopy& copy) {
    VolumeRunner::Hooks hooks;
    hooks.record_outdated = [this](const std::string&, volume::Generation generation) {
      asio::post(io, [this, generation] { runner->on_peer_outdated_recorded(generation); });
    };
    hooks.clear_outdated = [](const std::string&, volume::Generation) {};
    auto opened = VolumeRunner::open(io, *copy.config, copy.volume(), 1, io::ClusterKey{}, hooks);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    runner = std::move(opened).value();
    runner->start();
    ASSERT_TRUE(runner->promote(/*force=*/true).ok());
    ASSERT_TRUE(testing::run_io_until(io, [&] { return runner->unavailable_reason().empty(); }))
        << runner->unavailable_reason();
  }

  int write(std::uint64_t offset, std::size_t length, std::byte value) {
    int result = -1;
    runner->write(offset, std::make_shared<const volume::Bytes>(length, value), false,
                  [&](int error) { result = error; });
    return testing::run_io_until(io, [&] { return result != -1; }) ? result : -1;
  }

  std::optional<volume::Bytes> read(std::uint64_t offset, std::uint32_t length) {
    volume::Bytes into(length);
    int result = -1;
    runner->read(offset, length, into.data(), [&](int error) { result = error; });
    if (!testing::run_io_until(io, [&] { return result != -1; }) || result != 0) {
      return std::nullopt;
    }
    return into;
  }
};

// The space `keel volume create` reserved must stay reserved: WRITE_ZEROES may carry NO_HOLE,
// which forbids deallocating, and a hole left by either command lets a later write fail for room.
TEST(VolumeRunner, ZeroingAndTrimKeepTheBackingFilesReservedSpace) {
  OneCopy copy;
  ASSERT_TRUE(copy.create());
  if (!copy.reserved) GTEST_SKIP() << "this filesystem cannot reserve space";
  const std::int64_t reserved = allocated_blocks(copy.backing);
  ASSERT_GT(reserved, 0);
  ServingAlone alone;
  ASSERT_NO_FATAL_FAILURE(alone.start(copy));

  int trimmed = -1;
  int zeroed = -1;
  alone.runner->trim(0, kRangeBytes, false, [&](int error) { trimmed = error; });
  alone.runner->write_zeroes(kRangeBytes, kRangeBytes, true, [&](int error) { zeroed = error; });
  ASSERT_TRUE(testing::run_io_until(alone.io, [&] { return trimmed != -1 && zeroed != -1; }));
  EXPECT_EQ(trimmed, 0);
  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(allocated_blocks(copy.backing), reserved);
}

// Clients zero and discard up to 4 GiB in one request, more extents than a small activity log
// holds: such a request is done in pieces, all of it, and answered once.
TEST(VolumeRunner, ZeroingMoreExtentsThanTheActivityLogHoldsIsDoneInPieces) {
  OneCopy copy;
  copy.size = "64MiB";
  copy.extra = "activity_log_extents = 9\n";  // pieces of 4 extents (16 MiB)
  ASSERT_TRUE(copy.create());
  ServingAlone alone;
  ASSERT_NO_FATAL_FAILURE(alone.start(copy));
  constexpr std::uint64_t kVolumeBytes = 64u << 20;
  constexpr std::uint32_t kEdgeBytes = 512u << 10;
  for (const std::uint64_t at : {std::uint64_t{0}, kVolumeBytes / 3, kVolumeBytes - kRangeBytes}) {
    ASSERT_EQ(alone.write(at, kRangeBytes, std::byte{0x5a}), 0) << at;
  }

  int zeroed = -1;
  int answers = 0;
  alone.runner->write_zeroes(kEdgeBytes, kVolumeBytes - 2 * kEdgeBytes, true, [&](int error) {
    zeroed = error;
    ++answers;
  });
  ASSERT_TRUE(testing::run_io_until(alone.io, [&] { return zeroed != -1; }));
  EXPECT_EQ(zeroed, 0);
  int trimmed = -1;
  alone.runner->trim(0, kVolumeBytes / 2, false, [&](int error) { trimmed = error; });
  ASSERT_TRUE(testing::run_io_until(alone.io, [&] { return trimmed != -1; }));
  EXPECT_EQ(trimmed, 0);
  EXPECT_EQ(answers, 1);

  const auto head = alone.read(0, kRangeBytes);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(*head, volume::Bytes(kRangeBytes, std::byte{0}));  // the trim reached the start
  const auto middle = alone.read(kVolumeBytes / 3, kRangeBytes);
  ASSERT_TRUE(middle.has_value());
  EXPECT_EQ(*middle, volume::Bytes(kRangeBytes, std::byte{0}));
  const auto tail = alone.read(kVolumeBytes - kRangeBytes, kRangeBytes);
  ASSERT_TRUE(tail.has_value());
  volume::Bytes want(kRangeBytes, std::byte{0});
  std::fill(want.end() - kEdgeBytes, want.end(), std::byte{0x5a});  // past the zeroed range
  EXPECT_EQ(*tail, want);
}

// A volume not created on this node is refused with the command that creates it (and the
// half-opened runner goes away cleanly).
// `nbd_listen` is usually a floating IP that follows the primary: a node that does not hold it
// (yet) still starts and listens, and serves once the address arrives. No packet is sent to it.
TEST(VolumeRunner, ListensForNbdOnAnAddressThisHostDoesNotHoldYet) {
  OneCopy copy;
  copy.extra = "nbd_listen = \"198.18.255.77:" + std::to_string(free_tcp_port()) + "\"\n";
  ASSERT_TRUE(copy.create());
  asio::io_context io;
  VolumeRunner::Hooks hooks;
  hooks.record_outdated = [](const std::string&, volume::Generation) {};
  hooks.clear_outdated = [](const std::string&, volume::Generation) {};
  auto opened = VolumeRunner::open(io, *copy.config, copy.volume(), 1, io::ClusterKey{}, hooks);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  opened.value()->stop();
}

TEST(VolumeRunner, AVolumeWithoutMetadataIsRefusedWithTheCommandToRun) {
  OneCopy copy;
  ASSERT_TRUE(copy.create());
  ASSERT_EQ(::unlink(copy.volume().metadata_for(1).c_str()), 0);
  asio::io_context io;
  VolumeRunner::Hooks hooks;
  hooks.record_outdated = [](const std::string&, volume::Generation) {};
  hooks.clear_outdated = [](const std::string&, volume::Generation) {};
  auto opened = VolumeRunner::open(io, *copy.config, copy.volume(), 1, io::ClusterKey{}, hooks);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("keel volume create data"), std::string::npos)
      << opened.error().message;
  // The backing file missing: refused after the metadata was read.
  OneCopy other;
  ASSERT_TRUE(other.create());
  ASSERT_EQ(::unlink(other.backing.c_str()), 0);
  auto no_backing =
      VolumeRunner::open(io, *other.config, other.volume(), 1, io::ClusterKey{}, hooks);
  ASSERT_FALSE(no_backing.ok());
  EXPECT_NE(no_backing.error().message.find(other.backing), std::string::npos)
      << no_backing.error().message;
}

// Told by the ring that its copy is outdated, a node says so back only once its metadata file
// says it: the primary's record may count on that word alone (outdate_records.hpp).
TEST(VolumeRunner, SaysItsCopyIsOutdatedOnlyOnceItsDiskSaysSo) {
  OneCopy copy;
  ASSERT_TRUE(copy.create());
  asio::io_context io;
  std::vector<std::pair<volume::Generation, std::optional<volume::DiskState>>> said;
  VolumeRunner::Hooks hooks;
  hooks.record_outdated = [](const std::string&, volume::Generation) {};
  hooks.clear_outdated = [](const std::string&, volume::Generation) {};
  hooks.outdated_durable = [&](const std::string& name, volume::Generation generation) {
    EXPECT_EQ(name, "data");
    said.emplace_back(generation, copy.disk_on_file());
  };
  auto opened = VolumeRunner::open(io, *copy.config, copy.volume(), 1, io::ClusterKey{}, hooks);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  std::unique_ptr<VolumeRunner> runner = std::move(opened).value();
  runner->start();

  constexpr volume::Generation kPrimarysGeneration = 0x5eed;  // not in this copy's history
  runner->on_told_outdated(kPrimarysGeneration);
  // The metadata write completes on this loop, which has not run yet.
  EXPECT_TRUE(said.empty()) << "said before the metadata write was done";
  ASSERT_TRUE(testing::run_io_until(io, [&] { return !said.empty(); }));
  ASSERT_EQ(said.size(), 1u);
  EXPECT_EQ(said[0].first, kPrimarysGeneration);
  EXPECT_EQ(said[0].second, volume::DiskState::Outdated) << "said before the file said so";

  // Told again (a record repeated after a view change): the copy is marked already.
  runner->on_told_outdated(kPrimarysGeneration);
  ASSERT_TRUE(testing::run_io_until(io, [&] { return said.size() == 2; }));
  EXPECT_EQ(said[1].second, volume::DiskState::Outdated);

  runner->stop();
}

// Two records about this copy within one metadata write (a repeat after a view change carries the
// primary's current record and an older one): each is confirmed once the mark is on the disk,
// since the primary may be waiting for either.
TEST(VolumeRunner, ConfirmsEveryRecordToldWithinOneMetadataWrite) {
  OneCopy copy;
  ASSERT_TRUE(copy.create());
  asio::io_context io;
  std::vector<volume::Generation> confirmed;
  VolumeRunner::Hooks hooks;
  hooks.record_outdated = [](const std::string&, volume::Generation) {};
  hooks.clear_outdated = [](const std::string&, volume::Generation) {};
  hooks.outdated_durable = [&](const std::string&, volume::Generation generation) {
    confirmed.push_back(generation);
  };
  auto opened = VolumeRunner::open(io, *copy.config, copy.volume(), 1, io::ClusterKey{}, hooks);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  std::unique_ptr<VolumeRunner> runner = std::move(opened).value();
  runner->start();
  constexpr volume::Generation kCurrent = 0x5eed;
  constexpr volume::Generation kOlder = 0x5eec;
  runner->on_told_outdated(kCurrent);
  runner->on_told_outdated(kOlder);
  EXPECT_TRUE(confirmed.empty()) << "confirmed before the metadata write was done";
  ASSERT_TRUE(testing::run_io_until(io, [&] { return confirmed.size() == 2; }))
      << "confirmed " << confirmed.size() << " of the two records";
  std::sort(confirmed.begin(), confirmed.end());
  EXPECT_EQ(confirmed, (std::vector<volume::Generation>{kOlder, kCurrent}));
  EXPECT_EQ(copy.disk_on_file(), volume::DiskState::Outdated);
  runner->stop();
}

}  // namespace
}  // namespace keel::agent
