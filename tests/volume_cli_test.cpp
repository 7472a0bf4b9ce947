// `keel volume ...` as a person runs it: create on this host's files, and the commands that ask
// the agent, here a stand-in that answers the control socket with replies chosen by the test
// (a volume whose thread does not answer, a name this host does not hold).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/control_protocol.hpp"
#include "agent/volume_identity.hpp"
#include "agent/volume_unsaved_metadata.hpp"
#include "agent_test_support.hpp"
#include "cli/commands.hpp"
#include "io/durable_file.hpp"
#include "io/volume_metadata.hpp"

namespace keel::cli {
namespace {

using agent::testing::TestCluster;
using nlohmann::json;

struct CommandRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

CommandRun run_volume_command(std::vector<std::string> args) {
  CLI::App app{"keel"};
  int exit_code = 0;
  register_volume_commands(app, exit_code);
  args.insert(args.begin(), "keel");
  std::vector<const char*> argv;
  for (const auto& arg : args) argv.push_back(arg.c_str());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& error) {
    exit_code = app.exit(error);
  }
  CommandRun run;
  run.exit_code = exit_code;
  run.out = ::testing::internal::GetCapturedStdout();
  run.err = ::testing::internal::GetCapturedStderr();
  return run;
}

// Answers each connection's one request line with `answer(request)`, on its own thread.
class StandInAgent {
 public:
  using Answer = std::function<json(const json& request)>;
  StandInAgent(std::string path, Answer answer)
      : path_(std::move(path)), answer_(std::move(answer)) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    KEEL_ASSERT(path_.size() < sizeof(address.sun_path));
    path_.copy(address.sun_path, path_.size());
    KEEL_ASSERT(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    KEEL_ASSERT(::listen(listener_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~StandInAgent() {
    stopping_ = true;
    thread_.join();
    ::close(listener_);
    ::unlink(path_.c_str());
  }
  int requests(const std::string& op) const {
    return op == "volume_status" ? status_requests_.load() : other_requests_.load();
  }

 private:
  void serve() {
    while (!stopping_) {
      pollfd ready{listener_, POLLIN, 0};
      if (::poll(&ready, 1, 20) <= 0) continue;
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::string line;
      char byte = 0;
      while (::read(client, &byte, 1) == 1 && byte != '\n') line.push_back(byte);
      const json request = json::parse(line, nullptr, false);
      (request.value("op", "") == "volume_status" ? status_requests_ : other_requests_)++;
      const std::string reply = agent::to_line(answer_(request)) + "\n";
      KEEL_ASSERT(::write(client, reply.data(), reply.size()) ==
                  static_cast<ssize_t>(reply.size()));
      ::close(client);
    }
  }

  std::string path_;
  Answer answer_;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<int> status_requests_{0};
  std::atomic<int> other_requests_{0};
  std::thread thread_;
};

json status_reply(json volumes) { return json{{"ok", true}, {"volumes", std::move(volumes)}}; }

TEST(VolumeCli, DemoteIsNotDoneWhileTheVolumesThreadDoesNotAnswer) {
  TestCluster cluster(1);
  std::atomic<int> answered{0};
  StandInAgent agent(cluster.socket_path(1), [&](const json& request) {
    if (request.value("op", "") != "volume_status") return json{{"ok", true}};
    // The first answers come from a volume whose disk stalled: no role, an error.
    if (++answered <= 3) {
      return status_reply(json::array({{{"name", "data"}, {"error", "its disk stalled"}}}));
    }
    return status_reply(json::array({{{"name", "data"}, {"role", "Secondary"}}}));
  });
  const CommandRun run =
      run_volume_command({"volume", "demote", "data", "--socket", cluster.socket_path(1)});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(agent.requests("volume_status"), 4) << "done before the volume said Secondary";
  EXPECT_NE(run.out.find("demote done"), std::string::npos) << run.out;
}

TEST(VolumeCli, DemoteOfAVolumeTheAgentDoesNotReportFails) {
  TestCluster cluster(1);
  StandInAgent agent(cluster.socket_path(1), [](const json& request) {
    if (request.value("op", "") != "volume_status") return json{{"ok", true}};
    return status_reply(json::array());
  });
  const CommandRun run =
      run_volume_command({"volume", "demote", "data", "--socket", cluster.socket_path(1)});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("no longer reports volume data"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("done"), std::string::npos) << run.out;
}

TEST(VolumeCli, StatusOfAVolumeThisHostDoesNotHoldFails) {
  TestCluster cluster(1);
  StandInAgent agent(cluster.socket_path(1),
                     [](const json&) { return status_reply(json::array()); });
  const CommandRun named =
      run_volume_command({"volume", "status", "nosuch", "--socket", cluster.socket_path(1)});
  EXPECT_EQ(named.exit_code, 1);
  EXPECT_NE(named.err.find("no volume named \"nosuch\""), std::string::npos) << named.err;
  // Without a name, no volumes is an answer, not an error.
  const CommandRun all =
      run_volume_command({"volume", "status", "--socket", cluster.socket_path(1)});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.out.find("no volumes on this host"), std::string::npos) << all.out;
}

json resyncing_volume(std::uint64_t total, std::uint64_t done, std::uint64_t rate) {
  return json{{"name", "data"},
              {"role", "Primary"},
              {"serving", true},
              {"disk", "UpToDate"},
              {"link", "SyncSource"},
              {"resync", {{"total_bytes", total}, {"done_bytes", done}, {"rate_bytes_s", rate}}}};
}

TEST(VolumeCli, StatusSaysHowLongARunningResyncHasLeft) {
  TestCluster cluster(1);
  const std::uint64_t mib = 1u << 20;
  std::atomic<std::uint64_t> rate{64 * mib};  // read on the stand-in's thread
  StandInAgent agent(cluster.socket_path(1), [&](const json&) {
    return status_reply(json::array({resyncing_volume(1024 * mib, 256 * mib, rate.load())}));
  });
  const auto status = [&] {
    return run_volume_command({"volume", "status", "--socket", cluster.socket_path(1)}).out;
  };
  EXPECT_NE(status().find("64.0 MiB/s, about 12 s left"), std::string::npos) << status();
  rate = mib / 2;  // 768 MiB at 0.5 MiB/s
  EXPECT_NE(status().find("about 26 min left"), std::string::npos) << status();
  rate = 1024;
  EXPECT_NE(status().find("about 218 h 27 min left"), std::string::npos) << status();
  rate = 0;  // not measured yet: no guess
  EXPECT_EQ(status().find("left"), std::string::npos) << status();
}

// A config whose volume "data" keeps its backing file and metadata where the test says.
std::string write_volume_config(const TestCluster& cluster, const std::string& backing,
                                const std::string& metadata) {
  const std::string path = cluster.config_path(1);
  agent::testing::write_file(
      path, cluster.config_text(1) + "\n[[volume]]\nname = \"data\"\nnodes = [\"n1\", \"n2\"]\n" +
                "size = \"1MiB\"\nbacking = \"" + backing + "\"\nmetadata = \"" + metadata +
                "\"\nnbd_socket = \"" + cluster.dir.file("nbd.sock") +
                "\"\nreplication_port = 7790\n");
  return path;
}

bool exists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

// A copy's state as its metadata file holds it (the header is the one create wrote).
std::optional<volume::PersistentState> copy_metadata(const std::string& config_path) {
  auto config = config::load_config(config_path);
  if (!config.ok()) return std::nullopt;
  const config::VolumeConfig& volume = config.value().volumes.at(0);
  auto file = io::VolumeMetadataFile::open(volume.metadata_for(1),
                                           agent::volume_metadata_header(volume, 1));
  if (!file.ok()) return std::nullopt;
  return file.value().state();
}

std::optional<volume::DiskState> copy_state(const std::string& config_path) {
  const auto state = copy_metadata(config_path);
  return state ? std::optional(state->disk) : std::nullopt;
}

TEST(VolumeCli, CreateThatCannotMakeTheBackingFileLeavesNoMetadata) {
  TestCluster cluster(2);
  const std::string backing_dir = cluster.dir.file("disks");
  const std::string metadata = cluster.dir.file("data.meta");
  const std::string config = write_volume_config(cluster, backing_dir + "/data.img", metadata);
  const CommandRun failed =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_FALSE(exists(metadata)) << "a failed create left metadata that refuses the retry";

  ASSERT_EQ(::mkdir(backing_dir.c_str(), 0700), 0);
  const CommandRun retried =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  EXPECT_EQ(retried.exit_code, 0) << retried.err;
  EXPECT_EQ(copy_state(config), volume::DiskState::UpToDate);
  EXPECT_TRUE(copy_metadata(config)
                  .value_or(volume::PersistentState{})
                  .blank);  // new and empty: never taken for the pair's data
}

TEST(VolumeCli, CreateThatCannotWriteTheMetadataLeavesNoBackingFile) {
  TestCluster cluster(2);
  const std::string backing = cluster.dir.file("data.img");
  const std::string metadata_dir = cluster.dir.file("meta");
  const std::string config = write_volume_config(cluster, backing, metadata_dir + "/data.meta");
  const CommandRun failed =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  EXPECT_EQ(failed.exit_code, 1);
  // A backing file left behind would make the retry take this new copy for existing data.
  EXPECT_FALSE(exists(backing));

  ASSERT_EQ(::mkdir(metadata_dir.c_str(), 0700), 0);
  const CommandRun retried =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  EXPECT_EQ(retried.exit_code, 0) << retried.err;
  EXPECT_EQ(copy_state(config), volume::DiskState::UpToDate);
}

// `create --force` removes the old metadata's journal of unsaved updates before the new metadata
// exists; when the new one cannot be made, the old metadata stays, and so must its journal.
TEST(VolumeCli, AForcedCreateThatFailsKeepsTheOldMetadatasJournal) {
  TestCluster cluster(2);
  const std::string metadata = cluster.dir.file("data.meta");
  const std::string config = write_volume_config(cluster, cluster.dir.file("data.img"), metadata);
  const CommandRun created =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto loaded = config::load_config(config);
  ASSERT_TRUE(loaded.ok());
  const std::string journal = agent::unsaved_metadata_path(loaded.value().agent.state_dir, "data");
  std::filesystem::create_directories(std::filesystem::path(journal).parent_path());
  agent::testing::write_file(journal, "updates the metadata lacks");
  ASSERT_EQ(::mkdir((metadata + ".new").c_str(), 0700), 0);  // the new metadata cannot be made
  const CommandRun failed = run_volume_command(
      {"volume", "create", "data", "--config", config, "--node", "n1", "--force"});
  EXPECT_EQ(failed.exit_code, 1);
  auto kept = io::read_state_file(journal);
  ASSERT_TRUE(kept.ok());
  ASSERT_TRUE(kept.value().has_value()) << "the old metadata's journal is gone";
  EXPECT_EQ(*kept.value(), "updates the metadata lacks");

  ASSERT_EQ(::rmdir((metadata + ".new").c_str()), 0);
  const CommandRun retried = run_volume_command(
      {"volume", "create", "data", "--config", config, "--node", "n1", "--force"});
  EXPECT_EQ(retried.exit_code, 0) << retried.err;
  EXPECT_FALSE(exists(journal));
}

TEST(VolumeCli, CreateRefusesExistingMetadataBeforeTouchingTheBackingFile) {
  TestCluster cluster(2);
  const std::string backing = cluster.dir.file("data.img");
  const std::string metadata = cluster.dir.file("data.meta");
  const std::string config = write_volume_config(cluster, backing, metadata);
  agent::testing::write_file(metadata, "not keel's");
  const CommandRun refused =
      run_volume_command({"volume", "create", "data", "--config", config, "--node", "n1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("refusing to overwrite"), std::string::npos) << refused.err;
  EXPECT_FALSE(exists(backing));
}

}  // namespace
}  // namespace keel::cli
