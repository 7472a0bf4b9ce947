// The lab itself, without agents (a stand-in runs in each namespace): addresses, the faults'
// effect on real UDP between namespaces, and the cleanup guarantees (docs/lab.md).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "lab/guarded_lab.hpp"
#include "lab_fixture.hpp"

namespace keel::lab::testing {
namespace {

constexpr std::uint16_t kProbePort = 9999;
const std::vector<std::string> kStandIn = {"sleep", "infinity"};

// In a forked child: enter the namespace, or die.
void enter_netns(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(3);
  ::close(fd);
}

sockaddr_in probe_address(const std::string& address) {
  sockaddr_in socket_address{};
  socket_address.sin_family = AF_INET;
  socket_address.sin_port = htons(kProbePort);
  ::inet_pton(AF_INET, address.c_str(), &socket_address.sin_addr);
  return socket_address;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// Whether UDP datagrams from host `from` reach host `to` (forked children enter the namespaces;
// everything they use is prepared before the fork).
bool udp_reaches(const Lab& lab, int from, int to) {
  const std::string from_ns = "/run/netns/" + lab.host(from).netns;
  const std::string to_ns = "/run/netns/" + lab.host(to).netns;
  const sockaddr_in target = probe_address(lab.host(to).address);
  int ready[2];
  if (::pipe(ready) != 0) return false;
  const pid_t receiver = ::fork();
  if (receiver == 0) {
    enter_netns(to_ns.c_str());
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) ::_exit(4);
    (void)!::write(ready[1], "r", 1);
    pollfd wait{fd, POLLIN, 0};
    ::_exit(::poll(&wait, 1, 600) == 1 ? 0 : 1);
  }
  char byte = 0;
  (void)!::read(ready[0], &byte, 1);
  ::close(ready[0]);
  ::close(ready[1]);
  const pid_t sender = ::fork();
  if (sender == 0) {
    enter_netns(from_ns.c_str());
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    for (int i = 0; i < 12; ++i) {
      ::sendto(fd, "probe", 5, 0, reinterpret_cast<const sockaddr*>(&target), sizeof target);
      ::usleep(40000);
    }
    ::_exit(0);
  }
  const int received = wait_exit(receiver);
  wait_exit(sender);
  return received == 0;
}

class LabPlumbing : public LabFixture {};

TEST_F(LabPlumbing, HostsHaveTheirAddressesAndReachEachOther) {
  ASSERT_NO_FATAL_FAILURE(build(3, kStandIn));
  for (int host = 1; host <= 3; ++host) {
    const HostState& state = lab_->host(host);
    EXPECT_EQ(state.address, "198.18.0." + std::to_string(10 + host));
    auto addresses = run_checked({"ip", "-n", state.netns, "-br", "addr", "show", "eth0"});
    ASSERT_TRUE(addresses.ok()) << addresses.error().message;
    EXPECT_NE(addresses.value().find(state.address + "/24"), std::string::npos);
    EXPECT_EQ(addresses.value().find("inet6"), std::string::npos) << "IPv6 must be off";
    EXPECT_TRUE(is_running(state.agent));
  }
  EXPECT_TRUE(udp_reaches(*lab_, 1, 2));
  EXPECT_TRUE(udp_reaches(*lab_, 3, 1));
}

TEST_F(LabPlumbing, FaultsDropWhatTheySayAndHealRestores) {
  ASSERT_NO_FATAL_FAILURE(build(3, kStandIn));
  ASSERT_OK(lab_->partition({{1}, {2, 3}}));
  EXPECT_FALSE(udp_reaches(*lab_, 1, 2));
  EXPECT_FALSE(udp_reaches(*lab_, 3, 1));
  EXPECT_TRUE(udp_reaches(*lab_, 2, 3));
  ASSERT_OK(lab_->heal());
  EXPECT_TRUE(udp_reaches(*lab_, 1, 2));

  ASSERT_OK(lab_->cut(1, 2));
  EXPECT_FALSE(udp_reaches(*lab_, 1, 2));
  EXPECT_TRUE(udp_reaches(*lab_, 2, 1));
  ASSERT_OK(lab_->loss(100));
  EXPECT_FALSE(udp_reaches(*lab_, 2, 3));
  ASSERT_OK(lab_->heal());
  EXPECT_TRUE(udp_reaches(*lab_, 2, 3));

  ASSERT_OK(lab_->set_link(3, false));
  EXPECT_FALSE(udp_reaches(*lab_, 1, 3));
  ASSERT_OK(lab_->set_link(3, true));
  EXPECT_TRUE(udp_reaches(*lab_, 1, 3));
}

TEST_F(LabPlumbing, StateFileLetsAnotherProcessActOnTheLab) {
  ASSERT_NO_FATAL_FAILURE(build(2, kStandIn));
  auto opened = Lab::open(lab_->dir());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Lab& other = opened.value();
  EXPECT_EQ(other.state().prefix, lab_->state().prefix);
  ASSERT_OK(other.kill_agent(2));
  EXPECT_FALSE(is_running(lab_->host(2).agent));
  ASSERT_OK(other.partition({{1}, {2}}));
  auto reloaded = Lab::open(lab_->dir());
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded.value().state().faults.partition.size(), 2u);
  EXPECT_FALSE(reloaded.value().host(2).agent.valid());
}

TEST_F(LabPlumbing, FailedUpRemovesWhatItBuiltAndKeepsLogs) {
  LabOptions options;
  options.hosts = 2;
  options.keel_binary = "/bin/false";  // an "agent" that exits at once
  auto made = Lab::up(options);
  ASSERT_FALSE(made.ok());
  const std::string& message = made.error().message;
  EXPECT_NE(message.find("exited"), std::string::npos) << message;
  const auto kept = message.find("logs kept in ");
  ASSERT_NE(kept, std::string::npos) << message;
  const std::string dir = message.substr(kept + 13, message.find(')', kept) - kept - 13);
  auto state = load_state(dir);
  ASSERT_TRUE(state.ok()) << state.error().message;
  auto left = find_lab_objects(LabNames(state.value().prefix));
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left.value().empty());
  std::error_code error;
  std::filesystem::remove_all(dir, error);
}

TEST_F(LabPlumbing, GuardRemovesTheLabWhenItsOwnerIsKilled) {
  int channel[2];
  ASSERT_EQ(::pipe2(channel, O_CLOEXEC), 0);
  const pid_t owner = ::fork();
  if (owner == 0) {
    // The owner: builds a lab under a guard, reports its prefix, and dies without cleaning up.
    LabOptions options;
    options.hosts = 2;
    options.keel_binary = KEEL_BINARY;
    options.stand_in = kStandIn;
    std::optional<CleanupGuard> guard;
    options.on_claimed = [&](const std::string& dir, const std::string& keel) {
      if (auto armed = CleanupGuard::arm(keel, dir)) guard.emplace(std::move(armed.value()));
    };
    auto made = Lab::up(options);
    if (!made || !guard) ::_exit(1);
    const std::string prefix = made.value().state().prefix + "\n";
    (void)!::write(channel[1], prefix.data(), prefix.size());
    ::raise(SIGKILL);
  }
  ::close(channel[1]);
  char buffer[32] = {};
  const ssize_t got = ::read(channel[0], buffer, sizeof buffer - 1);
  ::close(channel[0]);
  wait_exit(owner);
  ASSERT_GT(got, 1) << "the owner could not build its lab";
  const LabNames names(std::string(buffer, static_cast<std::size_t>(got) - 1));
  auto state = load_state(names.default_dir());
  ASSERT_TRUE(state.ok()) << state.error().message;
  const auto deadline = Clock::now() + milliseconds{15000};
  bool gone = false;
  while (!gone && Clock::now() < deadline) {
    auto left = find_lab_objects(names);
    gone = left.ok() && left.value().empty() && !is_running(state.value().host(1).agent);
    if (!gone) std::this_thread::sleep_for(milliseconds{20});
  }
  EXPECT_TRUE(gone) << "the guard did not remove lab " << names.prefix();
  // Its last act is a line in guard.log; only then is the directory ours to remove.
  while (Clock::now() < deadline) {
    auto log = read_file(names.default_dir() + "/guard.log");
    if (log && log.value().find("torn down") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds{20});
  }
  std::error_code error;
  std::filesystem::remove_all(names.default_dir(), error);
}

// A benchmark's lab: gone with its directory after a clean run, directory kept after a failure.
TEST_F(LabPlumbing, GuardedLabRemovesItsDirectoryUnlessAskedToKeepIt) {
  for (const bool keep : {false, true}) {
    std::string dir;
    std::string prefix;
    {
      GuardedLab built("lab_e2e_test");
      LabOptions options;
      options.hosts = 2;
      options.keel_binary = KEEL_BINARY;
      options.stand_in = kStandIn;
      auto made = built.up(options);
      ASSERT_TRUE(made.ok()) << made.error().message;
      ASSERT_TRUE(built.guard.has_value());
      dir = built.lab->dir();
      prefix = built.lab->state().prefix;
      built.keep_logs = keep;
    }
    auto left = find_lab_objects(LabNames(prefix));
    ASSERT_TRUE(left.ok());
    EXPECT_TRUE(left.value().empty()) << "keep_logs " << keep;
    EXPECT_EQ(std::filesystem::exists(dir + "/lab.json"), keep) << dir;
    std::error_code error;
    std::filesystem::remove_all(dir, error);
  }
}

TEST_F(LabPlumbing, DownFinishesALabKnownOnlyByItsPrefix) {
  const LabNames names(generate_prefix(static_cast<std::uint64_t>(::getpid()), 0x5eed));
  ASSERT_OK(create_bridge(names));
  ASSERT_OK(create_host_network(names, 1));
  auto removed = remove_lab_network(names, milliseconds{1000});
  EXPECT_TRUE(removed.ok()) << removed.error().message;
  auto left = find_lab_objects(names);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left.value().empty());
}

// Puts a directory first on PATH for its lifetime, so that its programs stand in for the real
// tools of the same name.
class PathPrefix {
 public:
  explicit PathPrefix(const std::string& dir)
      : saved_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    ::setenv("PATH", (dir + ":" + saved_).c_str(), 1);
  }
  PathPrefix(const PathPrefix&) = delete;
  PathPrefix& operator=(const PathPrefix&) = delete;
  ~PathPrefix() { ::setenv("PATH", saved_.c_str(), 1); }

 private:
  std::string saved_;
};

// One broken tool must not leave the whole lab behind: with every `nft` call failing, the
// namespaces, veths and bridge still go, and the error names what failed.
TEST_F(LabPlumbing, DownRemovesWhatItCanWhenNftFails) {
  const LabNames names(generate_prefix(static_cast<std::uint64_t>(::getpid()), 0xbad7));
  const std::string shims = names.default_dir() + "-tools";
  std::filesystem::create_directories(shims);
  {
    std::ofstream nft(shims + "/nft");
    nft << "#!/bin/sh\necho 'nft: refused by the test' >&2\nexit 1\n";
  }
  std::filesystem::permissions(shims + "/nft", std::filesystem::perms::owner_all);
  // Whatever happens below, with the real tools once the shim is off PATH.
  struct Cleanup {
    const LabNames& names;
    const std::string& shims;
    ~Cleanup() {
      (void)remove_lab_network(names, milliseconds{1000});
      std::error_code error;
      std::filesystem::remove_all(shims, error);
    }
  } cleanup{names, shims};
  ASSERT_OK(create_bridge(names));
  ASSERT_OK(create_host_network(names, 1));
  Result<Ok> removed = Ok{};
  {
    PathPrefix failing_nft(shims);
    removed = remove_lab_network(names, milliseconds{1000});
  }
  auto left = find_lab_objects(names);

  ASSERT_FALSE(removed.ok());
  EXPECT_NE(removed.error().message.find("refused by the test"), std::string::npos)
      << removed.error().message;
  ASSERT_TRUE(left.ok()) << left.error().message;
  EXPECT_TRUE(left.value().empty())
      << "links " << left.value().links.size() << ", namespaces " << left.value().namespaces.size();
}

TEST_F(LabPlumbing, CommandLineDrivesALab) {
  const std::string prefix = generate_prefix(static_cast<std::uint64_t>(::getpid()), 0xc11);
  const std::string keel = KEEL_BINARY;
  auto up =
      run_checked({keel, "lab", "up", "2", "--prefix", prefix, "--stand-in", "sleep", "infinity"});
  ASSERT_TRUE(up.ok()) << up.error().message;
  EXPECT_NE(up.value().find("lab " + prefix + " is up"), std::string::npos) << up.value();
  auto opened = Lab::open(LabNames(prefix).default_dir());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  lab_.emplace(std::move(opened.value()));  // TearDown removes it if a step below fails

  auto fault = run_checked({keel, "lab", "fault", "--prefix", prefix, "partition", "1", "2"});
  ASSERT_TRUE(fault.ok()) << fault.error().message;
  EXPECT_EQ(fault.value(), "network faults now: partition h1 | h2\n");
  auto bad =
      run_capture({keel, "lab", "fault", "--prefix", prefix, "kill", "h7"}, milliseconds{5000});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad.value().exit_code, 1);
  EXPECT_NE(bad.value().err.find("no host 'h7'"), std::string::npos) << bad.value().err;

  auto status = run_checked({keel, "lab", "status", "--prefix", prefix, "--json"});
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_NE(status.value().find("\"partition\": ["), std::string::npos) << status.value();
  auto exec = run_checked(
      {keel, "lab", "exec", "--prefix", prefix, "h2", "--", "ip", "-br", "addr", "show", "eth0"});
  ASSERT_TRUE(exec.ok()) << exec.error().message;
  EXPECT_NE(exec.value().find("198.18.0.12/24"), std::string::npos) << exec.value();

  ASSERT_OK(run_checked({keel, "lab", "down", "--prefix", prefix}));
  auto left = find_lab_objects(LabNames(prefix));
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left.value().empty());
  auto again = run_capture({keel, "lab", "down", "--prefix", prefix}, milliseconds{5000});
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again.value().err.find("no lab found"), std::string::npos) << again.value().err;
  lab_.reset();
}

}  // namespace
}  // namespace keel::lab::testing
