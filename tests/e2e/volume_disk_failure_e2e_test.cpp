// Copies on disks that fail, for real: a device that nbdfuse exposes as a file, from nbdkit's sh
// plugin over a plain file, whose flushes (and, when asked, writes) answer EIO while a flag file
// exists. keel's fdatasync there fails as on a dying disk, and so does ext4 made on it.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "volume_fixture.hpp"

namespace keel::lab::testing {
namespace {

// The device's methods (nbdkit-sh-plugin): reads and writes go to DISK; a flush fails while
// FAIL_FLUSHES or FAIL_WRITES exists, a write while FAIL_WRITES does, and otherwise a flush
// syncs DISK.
constexpr const char* kDeviceScript = R"(#!/bin/sh
case "$1" in
  get_size) stat -L -c %s "$DISK" ;;
  can_write|can_flush) exit 0 ;;
  pread) exec dd if="$DISK" iflag=skip_bytes,count_bytes skip="$4" count="$3" bs=128K status=none ;;
  pwrite)
    if [ -e "$FAIL_WRITES" ]; then echo "EIO write failure injected by the test" >&2; exit 1; fi
    exec dd of="$DISK" oflag=seek_bytes seek="$4" iflag=fullblock,count_bytes count="$3" \
      bs=128K conv=notrunc status=none ;;
  flush)
    if [ -e "$FAIL_FLUSHES" ] || [ -e "$FAIL_WRITES" ]; then
      echo "EIO flush failure injected by the test" >&2; exit 1
    fi
    exec sync --data "$DISK" ;;
  *) exit 2 ;;
esac
)";

bool wait_for_path(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  struct stat info {};
  while (::stat(path.c_str(), &info) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return true;
}

// One failing device: nbdkit serving it on DIR/NAME.sock, and, once exposed, nbdfuse showing it
// as the file DIR/NAME/nbd. Stopped (nbdfuse first, which aborts the FUSE connection so that
// nothing waits on it) by stop() or the destructor.
class FailingDevice {
 public:
  FailingDevice(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {}
  ~FailingDevice() { stop(); }
  FailingDevice(const FailingDevice&) = delete;
  FailingDevice& operator=(const FailingDevice&) = delete;

  Result<Ok> start(std::uint64_t bytes) {
    const std::string script = path(".sh");
    {
      std::ofstream out(script);
      // The script's first line, then where its files are.
      out << "#!/bin/sh\nDISK=" << path(".img") << "\nFAIL_FLUSHES=" << path(".fail-flushes")
          << "\nFAIL_WRITES=" << path(".fail-writes") << "\n"
          << (kDeviceScript + 10);
      if (!out) return Error{"cannot write " + script};
    }
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    {
      std::ofstream out(path(".img"), std::ios::binary);
      out.close();
      std::filesystem::resize_file(path(".img"), bytes);
    }
    SpawnOptions options;
    options.output_path = path(".log");
    auto nbdkit = spawn({"nbdkit", "-f", "-U", socket(), "sh", script}, options);
    if (!nbdkit.ok()) return nbdkit.error();
    nbdkit_ = nbdkit.value();
    if (!wait_for_path(socket())) return Error{"nbdkit did not listen on " + socket()};
    return Ok{};
  }

  // nbdfuse shows the device as a file; returns its path.
  Result<std::string> expose() {
    const std::string fuse_dir = dir_ + "/" + name_;
    std::filesystem::create_directories(fuse_dir);
    SpawnOptions options;
    options.output_path = path(".fuse.log");
    auto fuse = spawn({"nbdfuse", fuse_dir, "--unix", socket()}, options);
    if (!fuse.ok()) return fuse.error();
    nbdfuse_ = fuse.value();
    fuse_dir_ = fuse_dir;
    if (!wait_for_path(fuse_dir + "/nbd")) return Error{"nbdfuse did not expose the device"};
    return fuse_dir + "/nbd";
  }

  std::string socket() const { return path(".sock"); }
  void fail_flushes(bool fail) { set_flag(path(".fail-flushes"), fail); }
  void fail_writes(bool fail) { set_flag(path(".fail-writes"), fail); }

  void stop() {
    for (ProcessId* process : {&nbdfuse_, &nbdkit_}) {
      if (!process->valid()) continue;
      send_signal(*process, SIGKILL);
      wait_gone(*process, std::chrono::milliseconds{10000});
      *process = {};
    }
    if (!fuse_dir_.empty()) {
      (void)run_capture({"fusermount3", "-u", "-z", fuse_dir_}, std::chrono::milliseconds{10000});
      fuse_dir_.clear();
    }
  }

 private:
  std::string path(const std::string& suffix) const { return dir_ + "/" + name_ + suffix; }
  static void set_flag(const std::string& flag, bool on) {
    if (on) {
      std::ofstream(flag).close();
    } else {
      std::filesystem::remove(flag);
    }
  }

  std::string dir_;
  std::string name_;
  std::string fuse_dir_;
  ProcessId nbdkit_;
  ProcessId nbdfuse_;
};

// qemu-io on `host`'s export, in writeback mode (writes without FUA, as a filesystem sends them
// between its flushes). It prints nothing for a failed flush, but exits with 1.
Result<CommandResult> qemu_io(const std::string& uri, const std::vector<std::string>& commands) {
  std::vector<std::string> argv{"qemu-io", "-f", "raw", "-t", "writeback"};
  for (const std::string& command : commands) {
    argv.push_back("-c");
    argv.push_back(command);
  }
  argv.push_back(uri);
  return run_capture(argv, std::chrono::milliseconds{30000});
}

// The steps both failing-disk tests share.
class FailingDiskLab : public VolumeLab {
 protected:
  // SetUp made h1 primary and synced h2's copy from it; the copy on the failing device serves
  // next, and gets a first pattern (0x5a at 0, flushed).
  void serve_from_h2() {
    ASSERT_OK(volume_command(1, {"demote", kVolume}));
    ASSERT_OK(volume_command(2, {"promote", kVolume}));
    ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(2, 1));
    ASSERT_NO_FATAL_FAILURE(write_pattern(2, 0, 1 << 20, 0x5a));
  }

  // 1 MiB of 0x6b at `offset` through h2's export, acknowledged, then a flush that fails.
  void write_then_fail_flush(std::uint64_t offset) {
    auto failed =
        qemu_io(nbd_uri(2), {"write -P 0x6b " + std::to_string(offset) + " 1048576", "flush"});
    ASSERT_TRUE(failed.ok()) << failed.error().message;
    EXPECT_NE(failed.value().exit_code, 0) << "the flush failed: " << failed.value().out;
    EXPECT_NE(failed.value().out.find("wrote 1048576/1048576"), std::string::npos)
        << "the write before it was acknowledged: " << failed.value().out << failed.value().err;
  }

  // `host` serves both writes: 0x5a at 0, 0x6b at `offset`.
  void expect_written(int host, std::uint64_t offset) {
    for (const auto& [at, pattern] :
         {std::pair{std::uint64_t{0}, "0x5a"}, std::pair{offset, "0x6b"}}) {
      auto read = qemu_io(nbd_uri(host), {std::string("read -P ") + pattern + " " +
                                          std::to_string(at) + " 1048576"});
      ASSERT_TRUE(read.ok()) << read.error().message;
      EXPECT_EQ(read.value().exit_code, 0) << read.value().err;
      EXPECT_EQ(read.value().out.find("Pattern verification failed"), std::string::npos)
          << "at " << at << ": " << read.value().out;
    }
  }
};

// h2's copy on a device whose flushes fail on command.
class VolumeFailingFlushE2e : public FailingDiskLab {
 protected:
  VolumeFailingFlushE2e() {
    prepare_backing_ = [this](const LabState& state, int host) -> Result<Ok> {
      if (host != 2) return Ok{};
      device_ = std::make_unique<FailingDevice>(state.host(2).dir, "device");
      if (auto started = device_->start(kVolumeBytes); !started.ok()) return started;
      auto file = device_->expose();
      if (!file.ok()) return file.error();
      std::filesystem::create_symlink(file.value(), state.host(2).dir + "/data.img");
      return Ok{};
    };
  }

  void TearDown() override {
    device_.reset();
    VolumeLab::TearDown();
  }

  std::unique_ptr<FailingDevice> device_;
};

// The primary's disk fails a flush while its peer is in sync. The flush fails for the client,
// the primary gives way (Inconsistent, demoted, status says why), the peer is promoted with
// every acknowledged write (the one written just before the failed flush too), and the old
// primary is resynced from it once its disk works again.
TEST_F(VolumeFailingFlushE2e, APrimaryWhoseFlushFailsGivesWayToItsPeer) {
  ASSERT_NO_FATAL_FAILURE(serve_from_h2());
  device_->fail_flushes(true);
  ASSERT_NO_FATAL_FAILURE(write_then_fail_flush(4 << 20));
  wait_status(
      2,
      [](const nlohmann::json& s) {
        return s.value("role", "") == "Secondary" && s.value("disk", "") == "Inconsistent" &&
               s.value("disk_error", "").find("gave way to the peer") != std::string::npos;
      },
      "h2 gave way to its peer");
  device_->fail_flushes(false);

  ASSERT_OK(volume_command(1, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  ASSERT_NO_FATAL_FAILURE(expect_written(1, 4 << 20));
  EXPECT_TRUE(copies_identical());
  EXPECT_EQ(status(2).value("disk_error", "x"), "") << "the resync rewrote h2's copy";
}

// h2's copy and its metadata on ext4, on a device that fails on command: when that disk dies, the
// metadata update saying that the copy dropped writes cannot be written either.
class VolumeFailingDiskE2e : public FailingDiskLab {
 protected:
  static constexpr std::uint64_t kDiskBytes = 96ull << 20;

  VolumeFailingDiskE2e() {
    metadata_path_ = "{host}/meta/data.keelmeta";
    prepare_backing_ = [this](const LabState& state, int host) -> Result<Ok> {
      const std::string dir = state.host(host).dir;
      if (host != 2) {
        std::filesystem::create_directories(dir + "/meta");
        return Ok{};
      }
      h2_dir_ = dir;
      device_ = std::make_unique<FailingDevice>(dir, "disk");
      if (auto started = device_->start(kDiskBytes); !started.ok()) return started;
      if (auto mounted = mount_disk(true); !mounted.ok()) return mounted;
      // The backing in the same filesystem, reached through meta/ as the metadata is.
      {
        std::ofstream out(dir + "/meta/data.img", std::ios::binary);
        if (!out) return Error{"cannot create the backing on the device"};
      }
      std::filesystem::resize_file(dir + "/meta/data.img", kVolumeBytes);
      std::filesystem::create_symlink(dir + "/meta/data.img", dir + "/data.img");
      return Ok{};
    };
  }

  void TearDown() override {
    // The agent holds files on the mount: it goes first, so that the unmount is not left lazy.
    if (lab_) (void)lab_->kill_agent(2);
    mount_.reset();
    device_.reset();
    VolumeLab::TearDown();
  }

  // ext4 on the device (made first if `make`), mounted afresh; h2's meta/ leads there.
  Result<Ok> mount_disk(bool make) {
    mount_.reset();
    mount_ = std::make_unique<StackMount>(h2_dir_ + "/disk-" + std::to_string(++mounts_),
                                          device_->socket());
    if (auto up = mount_->up(make); !up.ok()) return up;
    const std::string link = h2_dir_ + "/meta";
    std::filesystem::remove(link);
    std::filesystem::create_symlink(mount_->mount_point(), link);
    return Ok{};
  }

  std::string journal() const { return h2_dir_ + "/state/volume-data.metadata-unsaved"; }

  std::string h2_dir_;
  int mounts_ = 0;
  std::unique_ptr<FailingDevice> device_;
  std::unique_ptr<StackMount> mount_;
};

// The primary's disk dies under it, metadata included: its flush fails, so it gives way to its
// peer in sync, though the metadata saying that its copy is Inconsistent cannot be written. The
// journal in its state directory holds that mark, so it demotes all the same and the peer is
// promoted with every acknowledged write. Both agents are then killed; when the disk is back,
// the old primary comes up alone, from metadata that still say UpToDate: the journal is what
// keeps it from taking its copy, which lacks an acknowledged write, for a good one.
TEST_F(VolumeFailingDiskE2e, AStepDownItsDiskCouldNotRecordSurvivesKilledAgents) {
  ASSERT_NO_FATAL_FAILURE(serve_from_h2());
  // The next write goes to the extent of the activity log that the pattern opened, so it needs
  // no metadata update to be acknowledged; the flush after it fails.
  device_->fail_writes(true);
  ASSERT_NO_FATAL_FAILURE(write_then_fail_flush(1 << 20));
  wait_status(
      2,
      [](const nlohmann::json& s) {
        return s.value("role", "") == "Secondary" && s.value("disk", "") == "Inconsistent" &&
               !s.value("metadata_error", "").empty();
      },
      "h2 gave way, though it could not write that in its metadata");
  EXPECT_TRUE(std::filesystem::exists(journal()));
  auto shown = volume_command(2, {"status", kVolume});
  ASSERT_TRUE(shown.ok()) << shown.error().message;
  EXPECT_NE(shown.value().find("METADATA"), std::string::npos) << shown.value();
  ASSERT_OK(volume_command(1, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(expect_written(1, 1 << 20));

  ASSERT_OK(lab_->kill_agent(2));
  ASSERT_OK(lab_->kill_agent(1));
  ASSERT_TRUE(std::filesystem::exists(journal()));
  mount_.reset();  // nothing more reaches the device from the old mount
  device_->fail_writes(false);
  ASSERT_OK(mount_disk(false));  // ext4 back, without what its failed writes held
  ASSERT_OK(lab_->start_agent(2));
  wait_status(
      2, [](const nlohmann::json& s) { return s.value("quorum", false); },
      "h2's agent answers, in a majority with h3");
  EXPECT_EQ(status(2).value("disk", ""), "Inconsistent");
  EXPECT_FALSE(std::filesystem::exists(journal())) << "applied and removed at the start";
  auto promoted = volume_command(2, {"promote", kVolume});
  ASSERT_FALSE(promoted.ok()) << "h2's copy lacks an acknowledged write, yet it was promoted";
  EXPECT_NE(promoted.error().message.find("Inconsistent"), std::string::npos)
      << promoted.error().message;

  ASSERT_OK(lab_->start_agent(1));
  wait_status(
      1,
      [](const nlohmann::json& s) {
        return s.value("disk", "") == "UpToDate" && s.value("quorum", false);
      },
      "h1's agent answers, its copy UpToDate, in a majority");
  ASSERT_OK(volume_command(1, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  ASSERT_NO_FATAL_FAILURE(expect_written(1, 1 << 20));
  EXPECT_TRUE(copies_identical());
}

}  // namespace
}  // namespace keel::lab::testing
