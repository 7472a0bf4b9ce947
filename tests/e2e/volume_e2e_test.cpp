// End-to-end tests of mirrored volumes on the lab's backends (volume_fixture.hpp): real agents,
// the real replication link between network namespaces, and real NBD clients on the export.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "volume_fixture.hpp"

namespace keel::lab::testing {

// ---------------------------------------------------------------------------------------------
// VolumeLab

void VolumeLab::SetUp() {
  LabFixture::SetUp();
  if (IsSkipped()) return;
  for (const char* tool : {"nbdcopy", "nbdfuse", "qemu-io", "mkfs.ext4", "losetup"}) {
    auto found = run_capture({"sh", "-c", std::string("command -v ") + tool}, milliseconds{5000});
    if (!found.ok() || found.value().exit_code != 0) GTEST_SKIP() << tool << " is not installed";
  }
  host_config_.extra =
      "[[volume]]\n"
      "name = \"data\"\n"
      "nodes = [\"h1\", \"h2\"]\n"
      "size = \"64MiB\"\n"
      "backing = \"{host}/data.img\"\n"
      "metadata = \"" +
      metadata_path_ +
      "\"\n"
      "nbd_socket = \"{host}/nbd-data.sock\"\n"
      "replication_port = 7789\n"
      "resync_rate = \"200MiB\"\n" +
      volume_settings_;
  options_hook_ = [this](const LabState& state) -> Result<Ok> {
    for (int host : {1, 2}) {
      if (existing_data_) {
        std::vector<char> block(1 << 20);
        std::vector<std::string> files{state.host(host).dir + "/data.img"};
        if (host == 1) files.push_back(state.host(1).dir + "/kept.img");
        for (const std::string& path : files) {
          std::ofstream out(path, std::ios::binary | std::ios::trunc);
          for (std::uint64_t at = 0; at < kVolumeBytes; at += block.size()) {
            for (std::size_t i = 0; i < block.size(); ++i) {
              block[i] = static_cast<char>((at + i) * (host == 1 ? 7 : 13) / 4096 + host);
            }
            out.write(block.data(), static_cast<std::streamsize>(block.size()));
          }
          if (!out) return Error{"cannot write " + path};
        }
      }
      if (prepare_backing_) {
        if (auto prepared = prepare_backing_(state, host); !prepared.ok()) return prepared;
      }
      auto created =
          run_checked({keel(), "volume", "create", kVolume, "--config", state.host(host).config});
      if (!created.ok()) return created.error();
    }
    return Ok{};
  };
  ASSERT_NO_FATAL_FAILURE(build(3));
  if (existing_data_) return;
  // Two new copies: promoted once they have met, each knowing the other is new too. A backing
  // prepared before `keel volume create` on h2 is Inconsistent there, and a new copy facing it
  // is refused until one is forced (docs/volume.md): h1's is kept.
  wait_status(
      1,
      [](const nlohmann::json& s) {
        return s.value("link", "") == "Connected" || s.value("link", "") == "Unrelated";
      },
      "the new copies connected");
  const bool refused = status(1).value("link", "") == "Unrelated";
  ASSERT_TRUE(!refused || prepare_backing_) << "two new copies were refused";
  ASSERT_OK(volume_command(1, refused ? std::vector<std::string>{"promote", kVolume, "--force"}
                                      : std::vector<std::string>{"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
}

std::string VolumeLab::kept_data() const { return lab_->host(1).dir + "/kept.img"; }

std::string VolumeLab::nbd_socket(int host) const {
  return lab_->host(host).dir + "/nbd-data.sock";
}
std::string VolumeLab::backing(int host) const { return lab_->host(host).dir + "/data.img"; }
std::string VolumeLab::nbd_uri(int host) const {
  return "nbd+unix:///data?socket=" + nbd_socket(host);
}

Result<std::string> VolumeLab::volume_command(int host, std::vector<std::string> args) {
  std::vector<std::string> argv{keel(), "volume"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--socket", lab_->host(host).socket});
  auto ran = run_capture(argv, milliseconds{15000});
  if (!ran.ok()) return ran.error();
  if (ran.value().exit_code != 0) {
    return Error{describe_command(argv) + ": exit " + std::to_string(ran.value().exit_code) + ": " +
                 ran.value().err};
  }
  return ran.value().out;
}

nlohmann::json VolumeLab::status(int host) {
  auto out = volume_command(host, {"status", kVolume, "--json"});
  if (!out.ok()) return nlohmann::json::object();
  auto reply = nlohmann::json::parse(out.value(), nullptr, false);
  if (reply.is_discarded() || reply.value("volumes", nlohmann::json::array()).empty()) {
    return nlohmann::json::object();
  }
  return reply["volumes"][0];
}

void VolumeLab::wait_status(int host, const std::function<bool(const nlohmann::json&)>& predicate,
                            const std::string& what, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  nlohmann::json last;
  while (Clock::now() < deadline) {
    last = status(host);
    if (!last.empty() && predicate(last)) return;
    std::this_thread::sleep_for(milliseconds{50});
  }
  FAIL() << "h" << host << ": " << what << " did not happen; last status: " << last.dump();
}

void VolumeLab::wait_connected_in_sync(int primary, int secondary) {
  wait_status(
      primary,
      [](const nlohmann::json& s) {
        return s.value("link", "") == "Connected" && s.value("role", "") == "Primary" &&
               s.value("disk", "") == "UpToDate" && s.value("out_of_sync_bytes", 1) == 0;
      },
      "primary, connected and in sync");
  wait_status(
      secondary,
      [](const nlohmann::json& s) {
        return s.value("link", "") == "Connected" && s.value("disk", "") == "UpToDate";
      },
      "secondary connected and UpToDate");
}

void VolumeLab::write_pattern(int host, std::uint64_t offset, std::uint64_t bytes, int pattern) {
  const std::string command = "write -P " + std::to_string(pattern) + " " + std::to_string(offset) +
                              " " + std::to_string(bytes);
  auto ran = run_checked({"qemu-io", "-f", "raw", "-c", command, "-c", "flush", nbd_uri(host)},
                         milliseconds{30000});
  ASSERT_TRUE(ran.ok()) << ran.error().message;
}

void VolumeLab::verify_clean(int primary) {
  ASSERT_OK(volume_command(primary, {"verify", kVolume}));
  wait_status(
      primary,
      [](const nlohmann::json& s) {
        return !s["verify"].value("running", true) &&
               s["verify"].value("done_bytes", 0ull) == kVolumeBytes;
      },
      "verify finished");
  EXPECT_EQ(status(primary)["verify"].value("mismatched_blocks", 1ull), 0u);
}

bool VolumeLab::copies_identical() {
  auto compared = run_capture({"cmp", "-s", backing(1), backing(2)}, milliseconds{30000});
  return compared.ok() && compared.value().exit_code == 0;
}

// ---------------------------------------------------------------------------------------------
// StackMount

StackMount::StackMount(const std::string& work_dir, const std::string& nbd_socket)
    : fuse_dir_(work_dir + "/fuse"), mount_point_(work_dir + "/mnt"), socket_(nbd_socket) {
  std::filesystem::create_directories(fuse_dir_);
  std::filesystem::create_directories(mount_point_);
}

StackMount::~StackMount() { tear_down(); }

Result<Ok> StackMount::up(bool make_filesystem) {
  SpawnOptions options;
  options.output_path = fuse_dir_ + ".log";
  auto fuse = spawn({"nbdfuse", fuse_dir_, "--unix", socket_}, options);
  if (!fuse.ok()) return fuse.error();
  nbdfuse_ = fuse.value();
  const std::string file = fuse_dir_ + "/nbd";
  const auto deadline = Clock::now() + milliseconds{10000};
  struct stat info {};
  while (::stat(file.c_str(), &info) != 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds{20});
  }
  if (::stat(file.c_str(), &info) != 0) return Error{"nbdfuse did not expose " + file};
  auto loop = run_checked({"losetup", "--find", "--show", "--direct-io=off", file});
  if (!loop.ok()) return loop.error();
  loop_ = loop.value();
  while (!loop_.empty() && (loop_.back() == '\n' || loop_.back() == ' ')) loop_.pop_back();
  if (make_filesystem) {
    auto made =
        run_checked({"mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop_}, milliseconds{60000});
    if (!made.ok()) return made.error();
  }
  auto mounted = run_checked({"mount", "-t", "ext4", loop_, mount_point_}, milliseconds{60000});
  if (!mounted.ok()) return mounted.error();
  mounted_ = true;
  return Ok{};
}

void StackMount::tear_down() {
  // The export may be gone or suspended (its primary was killed or cut off): ext4 would then wait
  // forever in the kernel for its last writes. Killing nbdfuse first aborts the FUSE connection,
  // so those writes fail at once and the unmount and the loop device's detach can finish.
  if (nbdfuse_.valid()) {
    send_signal(nbdfuse_, SIGKILL);
    wait_gone(nbdfuse_, milliseconds{10000});
    nbdfuse_ = {};
  }
  if (mounted_) {
    (void)run_capture({"umount", "-l", mount_point_}, milliseconds{30000});
    mounted_ = false;
  }
  if (!loop_.empty()) {
    (void)run_capture({"losetup", "-d", loop_}, milliseconds{30000});
    loop_.clear();
  }
  (void)run_capture({"fusermount3", "-u", "-z", fuse_dir_}, milliseconds{10000});
}

namespace {

// Files written through the filesystem with fsync: name -> content.
std::map<std::string, std::string> write_files(const std::string& dir, int count,
                                               std::uint32_t seed) {
  std::mt19937 random(seed);
  std::map<std::string, std::string> files;
  for (int i = 0; i < count; ++i) {
    std::string content(4096 * (1 + random() % 64), '\0');
    for (char& c : content) c = static_cast<char>('a' + random() % 26);
    const std::string name = "file" + std::to_string(i);
    const int fd =
        ::open((dir + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0) << name;
    if (fd < 0) continue;
    EXPECT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    EXPECT_EQ(::fsync(fd), 0);
    ::close(fd);
    files[name] = content;
  }
  // The directory entries are durable too.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  EXPECT_EQ(::fsync(dir_fd), 0);
  ::close(dir_fd);
  return files;
}

void expect_files(const std::string& dir, const std::map<std::string, std::string>& files) {
  for (const auto& [name, content] : files) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    ASSERT_TRUE(in.good()) << name << " is missing after failover";
    const std::string read((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(read.size(), content.size()) << name;
    EXPECT_TRUE(read == content) << name << " differs after failover";
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scenarios

using VolumeE2e = VolumeLab;

TEST_F(VolumeE2e, RealClientsAndRoleChange) {
  // nbdinfo sees the export on the primary; the secondary refuses with a clear reason.
  auto info = run_checked({"nbdinfo", nbd_uri(1)});
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_NE(info.value().find(std::to_string(kVolumeBytes)), std::string::npos) << info.value();
  auto refused = run_capture({"nbdinfo", nbd_uri(2)}, milliseconds{10000});
  ASSERT_TRUE(refused.ok());
  EXPECT_NE(refused.value().exit_code, 0) << "the secondary served NBD";

  // 16 MiB of random data in with nbdcopy --flush, out again from the other node.
  const std::string in = lab_->dir() + "/random.in";
  const std::string out = lab_->dir() + "/random.out";
  ASSERT_OK(run_checked({"dd", "if=/dev/urandom", "of=" + in, "bs=1M", "count=16", "status=none"}));
  ASSERT_OK(run_checked({"nbdcopy", "--flush", in, nbd_uri(1)}, milliseconds{60000}));
  ASSERT_OK(volume_command(1, {"demote", kVolume}));
  ASSERT_OK(volume_command(2, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(2, 1));
  ASSERT_OK(run_checked({"qemu-img", "compare", "-f", "raw", "-F", "raw", in, nbd_uri(2)},
                        milliseconds{60000}));
  ASSERT_OK(run_checked({"nbdcopy", nbd_uri(2), out}, milliseconds{60000}));
  ASSERT_OK(run_checked({"cmp", "-n", std::to_string(16 << 20), in, out}));

  // Online verify finds nothing to fix; the backing files are identical.
  ASSERT_NO_FATAL_FAILURE(verify_clean(2));
  EXPECT_TRUE(copies_identical());
}

TEST_F(VolumeE2e, Ext4SurvivesPrimaryKill) {
  std::map<std::string, std::string> files;
  {
    StackMount stack(lab_->dir() + "/stack1", nbd_socket(1));
    ASSERT_OK(stack.up(true));
    files = write_files(stack.mount_point(), 40, 1);
    ASSERT_OK(lab_->kill_agent(1));  // SIGKILL: no demote, no flush, no goodbye
    stack.tear_down();
  }
  wait_status(
      2, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h2 noticing the primary's death");
  ASSERT_OK(volume_command(2, {"promote", kVolume}));
  StackMount stack(lab_->dir() + "/stack2", nbd_socket(2));
  ASSERT_OK(stack.up(false));
  expect_files(stack.mount_point(), files);
}

TEST_F(VolumeE2e, Ext4SurvivesPrimaryLinkDown) {
  std::map<std::string, std::string> files;
  StackMount first(lab_->dir() + "/stack1", nbd_socket(1));
  ASSERT_OK(first.up(true));
  files = write_files(first.mount_point(), 40, 2);
  ASSERT_OK(lab_->set_link(1, false));  // h1 keeps running, cut off from everyone
  wait_status(
      2, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h2 noticing the link loss");
  ASSERT_OK(volume_command(2, {"promote", kVolume}));
  first.tear_down();
  StackMount second(lab_->dir() + "/stack2", nbd_socket(2));
  ASSERT_OK(second.up(false));
  expect_files(second.mount_point(), files);
  second.tear_down();
  ASSERT_OK(lab_->set_link(1, true));
}

TEST_F(VolumeE2e, ResyncCopiesOnlyChangedBlocks) {
  ASSERT_OK(lab_->stop_agent(2));
  wait_status(
      1, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h1 noticing h2 left");
  // 3 separate runs: 40 + 1 + 100 blocks of 4 KiB.
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 1 << 20, 40 * 4096, 0xab));
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 9 << 20, 4096, 0xcd));
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 30 << 20, 100 * 4096, 0xef));
  EXPECT_EQ(status(1).value("out_of_sync_bytes", 0ull), 141u * 4096);
  ASSERT_OK(lab_->start_agent(2));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  const auto source = status(1);
  EXPECT_EQ(source["resync"].value("blocks", 0ull), 141u) << source.dump();
  EXPECT_TRUE(copies_identical());
  ASSERT_NO_FATAL_FAILURE(verify_clean(1));
}

// A disk lost and replaced: `keel volume create` on the new one makes a copy that is new and
// empty, with the generation every new copy starts with, which this pair (that only ever wrote
// while connected) still carries. It must get the whole volume, not be taken as in sync.
TEST_F(VolumeE2e, AReplacedDiskIsResyncedInFull) {
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 5 << 20, 64 * 4096, 0x5a));
  EXPECT_FALSE(status(2).value("blank", true));
  ASSERT_OK(lab_->stop_agent(2));
  wait_status(
      1, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h1 noticing h2 left");
  ASSERT_OK(run_checked({"rm", backing(2), lab_->host(2).dir + "/data.keelmeta"}));
  ASSERT_OK(run_checked({keel(), "volume", "create", kVolume, "--config", lab_->host(2).config}));
  ASSERT_OK(lab_->start_agent(2));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  const auto source = status(1);
  EXPECT_EQ(source["resync"].value("blocks", 0ull), kVolumeBytes / 4096) << source.dump();
  EXPECT_FALSE(status(2).value("blank", true));
  EXPECT_TRUE(copies_identical());
  ASSERT_NO_FATAL_FAILURE(verify_clean(1));
}

TEST_F(VolumeE2e, SplitBrainIsDetectedAndResolved) {
  ASSERT_OK(volume_command(1, {"demote", kVolume}));
  ASSERT_OK(lab_->partition({{1}, {2, 3}}));
  wait_status(
      2, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h2 noticing the partition");
  ASSERT_OK(volume_command(2, {"promote", kVolume}));
  ASSERT_NO_FATAL_FAILURE(write_pattern(2, 0, 64 * 4096, 0x22));
  // h1 has no quorum: refused, unless forced (the operator's mistake this test provokes).
  EXPECT_FALSE(volume_command(1, {"promote", kVolume}).ok());
  ASSERT_OK(volume_command(1, {"promote", kVolume, "--force"}));
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 8 << 20, 16 * 4096, 0x11));
  ASSERT_OK(lab_->heal());
  // Both refuse the connection (two primaries, and histories that diverged).
  for (int host : {1, 2}) {
    wait_status(
        host, [](const nlohmann::json& s) { return !s.value("refused_reason", "").empty(); },
        "the connection refused");
  }
  EXPECT_FALSE(copies_identical());
  // h2's data wins: h1 steps down; the split brain itself is then what refuses the connection.
  ASSERT_OK(volume_command(1, {"demote", kVolume}));
  wait_status(
      1, [](const nlohmann::json& s) { return s.value("link", "") == "SplitBrain"; },
      "split brain detected");
  EXPECT_FALSE(copies_identical());
  ASSERT_OK(volume_command(1, {"resolve", kVolume, "--discard-local"}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(2, 1));
  EXPECT_TRUE(copies_identical());
}

// The witness keeps the record that the secondary's copy is outdated across a restart of its
// agent (io/outdate_record_file.hpp): with the primary dead, the secondary that comes back with
// the witness, a majority, learns from it that its copy is outdated, and is not promoted without
// the writes the primary acknowledged while it was away.
TEST_F(VolumeE2e, TheWitnessKeepsTheOutdateRecordAcrossItsRestart) {
  ASSERT_OK(lab_->stop_agent(2));
  wait_status(
      1, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h1 noticing h2 left");
  // Acknowledged only once h1 and h3 have recorded h2's copy as outdated.
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 0, 16 * 4096, 0x5c));
  ASSERT_OK(lab_->kill_agent(1));
  ASSERT_OK(lab_->stop_agent(3));
  ASSERT_OK(lab_->start_agent(3));
  ASSERT_OK(lab_->start_agent(2));
  wait_status(
      2, [](const nlohmann::json& s) { return s.value("disk", "") == "Outdated"; },
      "h2 learning from h3 that its copy is outdated");
  auto promoted = volume_command(2, {"promote", kVolume});
  EXPECT_FALSE(promoted.ok()) << "promoted a copy without the writes h1 acknowledged";
}

// A withdrawal reaches only the partition it is sent in: the witness, cut off while the resync
// brought h2's copy up to date, keeps the old record and repeats it after the merge. h1, its
// recorder, withdraws it again, and every agent's state file ends without it.
TEST_F(VolumeE2e, AWithdrawalTheWitnessMissedIsSentAgainAfterTheMerge) {
  const auto records_of = [this](int host) {
    std::ifstream in(lab_->host(host).dir + "/state/outdate-records");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  // Polls (a file, not a status query) until every host named has no record left, for 20 s.
  const auto wait_records_gone = [&records_of](std::initializer_list<int> hosts) {
    const auto deadline = Clock::now() + milliseconds{20000};
    const auto gone = [&] {
      return std::all_of(hosts.begin(), hosts.end(), [&](int h) { return records_of(h).empty(); });
    };
    while (Clock::now() < deadline && !gone()) std::this_thread::sleep_for(milliseconds{50});
  };
  ASSERT_OK(lab_->stop_agent(2));
  wait_status(
      1, [](const nlohmann::json& s) { return s.value("link", "") != "Connected"; },
      "h1 noticing h2 left");
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, 0, 16 * 4096, 0x3a));  // once h3 stored the record
  ASSERT_NE(records_of(3).find("data 2 "), std::string::npos) << records_of(3);
  ASSERT_OK(lab_->partition({{1, 2}, {3}}));
  ASSERT_OK(lab_->start_agent(2));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  // The withdrawal is delivered in h1's partition (h1 leaves its own file without the record).
  wait_records_gone({1});
  ASSERT_EQ(records_of(1), "") << "h1 did not withdraw its record";
  ASSERT_NE(records_of(3).find("data 2 "), std::string::npos) << "h3 saw the withdrawal";
  ASSERT_OK(lab_->heal());
  wait_records_gone({1, 2, 3});
  for (int host : {1, 2, 3}) {
    EXPECT_EQ(records_of(host), "") << "h" << host << " keeps an obsolete record";
  }
  const auto secondary = status(2);
  EXPECT_EQ(secondary.value("disk", ""), "UpToDate") << secondary.dump();
  EXPECT_TRUE(copies_identical());
}

// Both nodes bring data of their own (docs/volume.md, "Starting from existing data"): both copies
// are Inconsistent, nothing is promoted without --force, and the forced node's data is resynced
// over the other's.
class VolumeExistingDataE2e : public VolumeLab {
 protected:
  VolumeExistingDataE2e() { existing_data_ = true; }
};

TEST_F(VolumeExistingDataE2e, TheForcedNodesDataIsKeptAndCopied) {
  for (int host : {1, 2}) {
    wait_status(
        host, [](const nlohmann::json& s) { return s.value("disk", "") == "Inconsistent"; },
        "an Inconsistent copy");
  }
  EXPECT_FALSE(copies_identical());
  EXPECT_FALSE(volume_command(1, {"promote", kVolume}).ok());  // refused without --force
  ASSERT_OK(volume_command(1, {"promote", kVolume, "--force"}));
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  EXPECT_TRUE(copies_identical());
  auto kept = run_capture({"cmp", "-s", backing(1), kept_data()}, milliseconds{30000});
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept.value().exit_code, 0) << "the forced node's own data changed";
  ASSERT_NO_FATAL_FAILURE(verify_clean(1));
}

namespace {

// How much of [offset, offset + bytes) of `path` sits in the page cache, as a fraction.
double cached_fraction(const std::string& path, std::uint64_t offset, std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  void* mapped = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  ::close(fd);
  if (mapped == MAP_FAILED) return -1;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  double fraction = -1;
  if (::mincore(mapped, bytes, resident.data()) == 0) {
    const auto in_cache = std::count_if(resident.begin(), resident.end(),
                                        [](unsigned char flags) { return (flags & 1) != 0; });
    fraction = static_cast<double>(in_cache) / static_cast<double>(resident.size());
  }
  ::munmap(mapped, bytes);
  return fraction;
}

}  // namespace

// write_cache = false: the primary's large writes go past its page cache (docs/volume.md), and
// read back right through the export.
class VolumeWithoutWriteCacheE2e : public VolumeLab {
 protected:
  VolumeWithoutWriteCacheE2e() { volume_settings_ = "write_cache = false\n"; }
};

TEST_F(VolumeWithoutWriteCacheE2e, LargeWritesLeaveThePrimarysPageCache) {
  constexpr std::uint64_t kAt = 8u << 20, kBytes = 8u << 20;
  // Pull the range into h1's page cache first (the initial sync read it too, but may be gone).
  ASSERT_OK(run_checked({"dd", "if=" + backing(1), "of=/dev/null", "bs=1M",
                         "skip=" + std::to_string(kAt >> 20),
                         "count=" + std::to_string(kBytes >> 20), "status=none"}));
  ASSERT_GT(cached_fraction(backing(1), kAt, kBytes), 0.9) << "the range never got cached";
  ASSERT_NO_FATAL_FAILURE(write_pattern(1, kAt, kBytes, 0x5c));
  EXPECT_LT(cached_fraction(backing(1), kAt, kBytes), 0.1)
      << "h1 wrote 8 MiB through its page cache with write_cache = false";
  auto read =
      run_checked({"qemu-io", "-r", "-f", "raw", "-c",
                   "read -P 92 " + std::to_string(kAt) + " " + std::to_string(kBytes), nbd_uri(1)},
                  milliseconds{30000});
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read.value().find("Pattern verification failed"), std::string::npos) << read.value();
  ASSERT_NO_FATAL_FAILURE(wait_connected_in_sync(1, 2));
  EXPECT_TRUE(copies_identical());
}

}  // namespace keel::lab::testing
