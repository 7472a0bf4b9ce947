// VolumeRunner on one node whose peer never answers: promoted by force, it serves the volume on
// its own (the peer's copy recorded outdated through a hook standing in for the ring).
#include "agent/volume_runner.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

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

// The space `keel volume create` reserved must stay reserved: WRITE_ZEROES may carry NO_HOLE,
// which forbids deallocating, and a hole left by either command lets a later write fail for room.
TEST(VolumeRunner, ZeroingAndTrimKeepTheBackingFilesReservedSpace) {
  testing::TestCluster cluster(2);
  const std::string backing = cluster.dir.file("data.img");
  auto config = config::parse_config(
      cluster.config_text(1) + "\n[[volume]]\nname = \"data\"\nnodes = [\"n1\", \"n2\"]\n" +
          "size = \"4MiB\"\nbacking = \"" + backing + "\"\nmetadata = \"" +
          cluster.dir.file("data.meta") + "\"\nnbd_socket = \"" + cluster.dir.file("nbd.sock") +
          "\"\nreplication_port = " + std::to_string(free_tcp_port()) + "\n",
      "keel.toml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  const config::VolumeConfig& volume = config.value().volumes.at(0);
  {
    // What `keel volume create` does: a reserved backing file and a fresh copy, UpToDate.
    auto metadata = io::VolumeMetadataFile::create(volume.metadata_for(1),
                                                   volume_metadata_header(volume, 1), false);
    ASSERT_TRUE(metadata.ok()) << metadata.error().message;
    asio::io_context io;
    io::BlockFileOptions disk;
    disk.path = backing;
    disk.size_bytes = volume.size_bytes;
    disk.create = true;
    disk.threads = 1;
    auto made = io::BlockFile::open(io, disk);
    ASSERT_TRUE(made.ok()) << made.error().message;
    if (made.value()->created() != io::BlockFile::Created::reserved) {
      GTEST_SKIP() << "this filesystem cannot reserve space";
    }
    volume::PersistentState state;
    state.disk = volume::DiskState::UpToDate;
    state.generations.current = empty_generation(volume);
    ASSERT_TRUE(metadata.value().write_state(state, {}).ok());
  }
  const std::int64_t reserved = allocated_blocks(backing);
  ASSERT_GT(reserved, 0);

  asio::io_context io;
  std::unique_ptr<VolumeRunner> runner;
  VolumeRunner::Hooks hooks;
  hooks.record_outdated = [&](const std::string&, volume::Generation generation) {
    asio::post(io, [&runner, generation] { runner->on_peer_outdated_recorded(generation); });
  };
  hooks.clear_outdated = [](const std::string&, volume::Generation) {};
  auto opened = VolumeRunner::open(io, config.value(), volume, 1, io::ClusterKey{}, hooks);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  runner = std::move(opened).value();
  runner->start();
  ASSERT_TRUE(runner->promote(/*force=*/true).ok());
  ASSERT_TRUE(testing::run_io_until(io, [&] { return runner->unavailable_reason().empty(); }))
      << runner->unavailable_reason();

  int trimmed = -1;
  int zeroed = -1;
  runner->trim(0, kRangeBytes, false, [&](int error) { trimmed = error; });
  runner->write_zeroes(kRangeBytes, kRangeBytes, true, [&](int error) { zeroed = error; });
  ASSERT_TRUE(testing::run_io_until(io, [&] { return trimmed != -1 && zeroed != -1; }));
  EXPECT_EQ(trimmed, 0);
  EXPECT_EQ(zeroed, 0);
  EXPECT_EQ(allocated_blocks(backing), reserved);
  runner->stop();
}

}  // namespace
}  // namespace keel::agent
