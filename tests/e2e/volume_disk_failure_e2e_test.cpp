// A copy on a disk whose flushes fail, for real: h2's backing is a file that nbdfuse exposes from
// an nbdkit device (the sh plugin over a plain file) whose flush answers EIO while a flag file
// exists. keel's fdatasync there fails as on a dying disk.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "volume_fixture.hpp"

namespace keel::lab::testing {
namespace {

// The device's methods (nbdkit-sh-plugin): reads and writes go to DISK, a flush fails while
// FLAG exists and otherwise syncs DISK.
constexpr const char* kDeviceScript = R"(#!/bin/sh
case "$1" in
  get_size) stat -L -c %s "$DISK" ;;
  can_write|can_flush) exit 0 ;;
  pread) exec dd if="$DISK" iflag=skip_bytes,count_bytes skip="$4" count="$3" bs=128K status=none ;;
  pwrite) exec dd of="$DISK" oflag=seek_bytes seek="$4" iflag=fullblock,count_bytes count="$3" \
            bs=128K conv=notrunc status=none ;;
  flush)
    if [ -e "$FLAG" ]; then echo "EIO flush failure injected by the test" >&2; exit 1; fi
    exec sync --data "$DISK" ;;
  *) exit 2 ;;
esac
)";

class VolumeFailingFlushE2e : public VolumeLab {
 protected:
  VolumeFailingFlushE2e() {
    prepare_backing_ = [this](const LabState& state, int host) -> Result<Ok> {
      if (host != 2) return Ok{};
      return start_device(state.host(2).dir);
    };
  }

  void TearDown() override {
    // Killing nbdfuse first aborts the FUSE connection, so that nothing waits on it.
    for (ProcessId* process : {&nbdfuse_, &nbdkit_}) {
      if (!process->valid()) continue;
      send_signal(*process, SIGKILL);
      wait_gone(*process, std::chrono::milliseconds{10000});
      *process = {};
    }
    if (!fuse_dir_.empty()) {
      (void)run_capture({"fusermount3", "-u", "-z", fuse_dir_}, std::chrono::milliseconds{10000});
    }
    VolumeLab::TearDown();
  }

  Result<Ok> start_device(const std::string& dir) {
    const std::string script = dir + "/device.sh";
    const std::string disk = dir + "/device.img";
    const std::string socket = dir + "/device.sock";
    flag_ = dir + "/fail-flushes";
    fuse_dir_ = dir + "/device";
    {
      std::ofstream out(script);
      // The script's first line, then where its files are.
      out << "#!/bin/sh\nDISK=" << disk << "\nFLAG=" << flag_ << "\n" << (kDeviceScript + 10);
      if (!out) return Error{"cannot write " + script};
    }
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    std::filesystem::create_directories(fuse_dir_);
    {
      std::ofstream out(disk, std::ios::binary);
      out.close();
      std::filesystem::resize_file(disk, kVolumeBytes);
    }
    SpawnOptions options;
    options.output_path = dir + "/device.log";
    auto nbdkit = spawn({"nbdkit", "-f", "-U", socket, "sh", script}, options);
    if (!nbdkit.ok()) return nbdkit.error();
    nbdkit_ = nbdkit.value();
    if (!wait_for_path(socket)) return Error{"nbdkit did not listen on " + socket};
    auto fuse = spawn({"nbdfuse", fuse_dir_, "--unix", socket}, options);
    if (!fuse.ok()) return fuse.error();
    nbdfuse_ = fuse.value();
    if (!wait_for_path(fuse_dir_ + "/nbd")) return Error{"nbdfuse did not expose the device"};
    std::filesystem::create_symlink(fuse_dir_ + "/nbd", dir + "/data.img");
    return Ok{};
  }

  static bool wait_for_path(const std::string& path) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    struct stat info {};
    while (::stat(path.c_str(), &info) != 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    return true;
  }

  // qemu-io on `host`'s export, in writeback mode (writes without FUA, as a filesystem sends
  // them between its flushes). It prints nothing for a failed flush, but exits with 1.
  Result<CommandResult> qemu_io(int host, const std::vector<std::string>& commands) {
    std::vector<std::string> argv{"qemu-io", "-f", "raw", "-t", "writeback"};
    for (const std::string& command : commands) {
      argv.push_back("-c");
      argv.push_back(command);
    }
    argv.push_back(nbd_uri(host));
    return run_capture(argv, std::chrono::milliseconds{30000});
  }

  std::string flag_;
  std::string fuse_dir_;
  ProcessId nbdkit_;
  ProcessId nbdfuse_;
};

// The primary's disk fails a flush while its peer is in sync. The flush fails for the client,
// the primary gives way (Inconsistent, demoted, status says why), the peer is promoted with
// every acknowledged write (the one written just before the failed flush too), and the old
// primary is resynced from it once its disk works again.
TEST_F(VolumeFailingFlushE2e, APrimaryWhoseFlushFailsGivesWayToItsPeer) {
  // SetUp made h1 primary and synced h2's copy (it existed: the device) from it. The copy on the
  // failing device serves next.
  ASSERT_OK(volume_command(1, {"demote", kVolume}));
  ASSERT_OK(volume_command(2, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(2, 1));
  ASSERT_NO_FATAL_FAILURE(write_pattern(2, 0, 1 << 20, 0x5a));

  std::ofstream(flag_).close();
  auto failed = qemu_io(2, {"write -P 0x6b 4194304 1048576", "flush"});
  ASSERT_TRUE(failed.ok()) << failed.error().message;
  EXPECT_NE(failed.value().exit_code, 0) << "the flush failed: " << failed.value().out;
  EXPECT_NE(failed.value().out.find("wrote 1048576/1048576"), std::string::npos)
      << "the write before it was acknowledged: " << failed.value().out << failed.value().err;
  wait_status(
      2,
      [](const nlohmann::json& s) {
        return s.value("role", "") == "Secondary" && s.value("disk", "") == "Inconsistent" &&
               s.value("disk_error", "").find("gave way to the peer") != std::string::npos;
      },
      "h2 gave way to its peer");
  std::filesystem::remove(flag_);

  ASSERT_OK(volume_command(1, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  for (const auto& [offset, pattern] : {std::pair{"0", "0x5a"}, std::pair{"4194304", "0x6b"}}) {
    auto read = qemu_io(1, {std::string("read -P ") + pattern + " " + offset + " 1048576"});
    ASSERT_TRUE(read.ok()) << read.error().message;
    EXPECT_EQ(read.value().exit_code, 0) << read.value().err;
    EXPECT_EQ(read.value().out.find("Pattern verification failed"), std::string::npos)
        << "at " << offset << ": " << read.value().out;
  }
  EXPECT_EQ(status(2).value("disk_error", "x"), "") << "the resync rewrote h2's copy";
  EXPECT_TRUE(copies_identical());
}

}  // namespace
}  // namespace keel::lab::testing
