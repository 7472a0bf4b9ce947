// End-to-end tests of floating IPs: 4 frontends with real agents, 8 floating addresses on their
// real interfaces, an HTTP responder on each host that names it, and a client namespace on the
// same bridge probing every address 50 times a second. Each scenario checks the invariants from
// the kernel's side (`ip addr` in every namespace: each address on exactly one live host, counts
// within one of each other) and from the client's (every address answers again, from the host
// the kernel says holds it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "lab/frontends.hpp"
#include "lab/probe.hpp"
#include "lab_fixture.hpp"

namespace keel::lab::testing {
namespace {

constexpr int kHosts = 4;
constexpr int kAddresses = 8;
constexpr std::uint16_t kHttpPort = kWebPort;
constexpr int kHandoverMs = 3000;

class VipE2e : public LabFixture {
 protected:
  void SetUp() override {
    LabFixture::SetUp();
    if (IsSkipped()) return;
    host_config_.extra = "[vip]\nhandover_ms = " + std::to_string(kHandoverMs) + "\n" +
                         web_pool_toml(floating_addresses(kAddresses), kHttpPort, prefix_length_);
    client_ = true;
    ASSERT_NO_FATAL_FAILURE(build(kHosts));
    for (int host = 1; host <= kHosts; ++host) ASSERT_NO_FATAL_FAILURE(start_web(host));
    auto prober = start_prober(*lab_, floating_addresses(kAddresses), kHttpPort, 20);
    ASSERT_TRUE(prober.ok()) << prober.error().message;
    probe_log_ = prober.value();
    ASSERT_NO_FATAL_FAILURE(wait_placement(all()));
  }

  const std::string& probe_log_path() const { return probe_log_; }

  void start_web(int host) {
    auto started = start_responder(*lab_, host, kHttpPort);
    ASSERT_TRUE(started.ok()) << started.error().message;
    responders_[host] = started.value();
  }

  Holders holders() const {
    auto found = floating_holders(*lab_, floating_addresses(kAddresses));
    EXPECT_TRUE(found.ok()) << found.error().message;
    return found ? found.value() : Holders{};
  }

  static std::string describe(const Holders& holders) {
    std::string text;
    for (const auto& [address, hosts] : holders) {
      text += address + ":";
      for (int host : hosts) text += " h" + std::to_string(host);
      text += hosts.empty() ? " nobody; " : "; ";
    }
    return text;
  }

  // Waits until the kernel state is settled over `live` and the client has reached every address
  // at its holder since then; returns the holders.
  Holders wait_placement(const std::vector<int>& live, milliseconds timeout = milliseconds{20000}) {
    const auto deadline = Clock::now() + timeout;
    Holders now;
    while (Clock::now() < deadline) {
      now = holders();
      if (placement_settled(now, live) && client_agrees(now, live)) return now;
      std::this_thread::sleep_for(milliseconds{50});
    }
    ADD_FAILURE() << "floating IPs did not settle on hosts " << ::testing::PrintToString(live)
                  << ": " << describe(now);
    return now;
  }

  // The latest probe of every address succeeded and was answered by a host of `live` that holds
  // it according to `holders`.
  bool client_agrees(const Holders& holders, const std::vector<int>& live) {
    if (!probes_.read_more(probe_log_path())) return false;
    const auto latest = probes_.latest(realtime_ms() - 1000);
    for (const auto& [address, hosts] : holders) {
      auto found = latest.find(address);
      if (found == latest.end() || !found->second.ok) return false;
      const std::string& answered = found->second.host;
      const bool right = std::any_of(hosts.begin(), hosts.end(), [&](int host) {
        return answered == "h" + std::to_string(host) &&
               std::find(live.begin(), live.end(), host) != live.end();
      });
      if (!right) return false;
    }
    return true;
  }

  // The client's longest outage of any address since `since_ms`.
  double longest_outage(double since_ms) {
    EXPECT_TRUE(probes_.read_more(probe_log_path()).ok());
    double longest = 0;
    for (const auto& [target, summary] : probes_.summarize(since_ms, realtime_ms())) {
      longest = std::max(longest, summary.longest_outage_ms);
    }
    return longest;
  }

  // Failed probes since `since_ms` that were not a connection reset: a refusal or a timeout.
  std::uint64_t refused_or_lost(double since_ms) {
    EXPECT_TRUE(probes_.read_more(probe_log_path()).ok());
    std::uint64_t failed = 0;
    for (const auto& result : probes_.results()) {
      if (result.t_ms < since_ms || result.ok) continue;
      if (result.error.find("reset") == std::string::npos) ++failed;
    }
    return failed;
  }

  std::uint64_t failed_probes(double since_ms) {
    EXPECT_TRUE(probes_.read_more(probe_log_path()).ok());
    std::uint64_t failed = 0;
    for (const auto& [target, summary] : probes_.summarize(since_ms, realtime_ms())) {
      failed += summary.failures;
    }
    return failed;
  }

  static std::vector<std::string> held_by(const Holders& holders, int host) {
    std::vector<std::string> held;
    for (const auto& [address, hosts] : holders) {
      if (std::find(hosts.begin(), hosts.end(), host) != hosts.end()) held.push_back(address);
    }
    return held;
  }

  // Addresses not held by `host` before stayed where they were (as far as the hosts other than
  // `host` show: an isolated host may hold every address in its own component).
  static void expect_only_moved_from(const Holders& before, const Holders& after, int host) {
    auto others = [host](std::vector<int> hosts) {
      std::erase(hosts, host);
      return hosts;
    };
    for (const auto& [address, hosts] : before) {
      if (std::find(hosts.begin(), hosts.end(), host) != hosts.end()) continue;
      EXPECT_EQ(others(after.at(address)), hosts) << address << " moved though its holder was fine";
    }
  }

  int keel_command(int host, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {KEEL_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--socket");
    argv.push_back(lab_->host(host).socket);
    auto ran = run_capture(argv, milliseconds{10000});
    EXPECT_TRUE(ran.ok()) << ran.error().message;
    return ran ? ran.value().exit_code : -1;
  }

  // Whether the client's probes of `address` are answered by a host other than `old` before
  // `timeout` runs out.
  bool wait_until_answered_elsewhere(const std::string& address, const std::string& old,
                                     milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const double since = realtime_ms();
    while (Clock::now() < deadline) {
      if (!probes_.read_more(probe_log_path())) return false;
      auto latest = probes_.latest(since);
      auto found = latest.find(address);
      if (found != latest.end() && found->second.ok && found->second.host != old) return true;
      std::this_thread::sleep_for(milliseconds{10});
    }
    ADD_FAILURE() << address << " still answered by " << old;
    return false;
  }

  // A TCP connection from the client's namespace to `address`, opened now, request not yet sent.
  Result<int> connect_from_client(const std::string& address) {
    Result<int> result = Error{"not run"};
    auto entered = in_netns(lab_->netns_of(Lab::kClient), [&] {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in target{};
      target.sin_family = AF_INET;
      target.sin_port = htons(kHttpPort);
      ::inet_pton(AF_INET, address.c_str(), &target.sin_addr);
      timeval timeout{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
        result = Error{"connect to " + address + ": " + std::strerror(errno)};
        ::close(fd);
        return;
      }
      result = fd;
    });
    if (!entered) return entered.error();
    return result;
  }

  static std::string http_get(int fd) {
    const std::string request = "GET / HTTP/1.0\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
      return std::string("send: ") + std::strerror(errno);
    }
    std::string answer;
    char buffer[512];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, n);
    if (answer.empty()) answer = std::string("recv: ") + std::strerror(errno);
    return answer;
  }

  // A connection the client opened to h1 just before h1 drains: its request goes to the new
  // holder (the client's ARP entry has moved), which passes it to h1, which still answers it
  // during the handover period.
  void expect_drain_keeps_a_connection_open() {
    const Holders before = holders();
    const auto mine = held_by(before, 1);
    ASSERT_FALSE(mine.empty()) << describe(before);
    const std::string address = mine.front();
    auto opened = connect_from_client(address);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    const int connection = opened.value();
    const auto drained_at = Clock::now();
    EXPECT_EQ(keel_command(1, {"node", "drain"}), 0);
    // The client's new connections to the address reach another host: its ARP entry has moved.
    // (The kernel still shows the address on h1 too: it keeps it for the handover period.)
    ASSERT_TRUE(wait_until_answered_elsewhere(address, "h1", milliseconds{kHandoverMs}));
    ASSERT_LT(Clock::now() - drained_at, milliseconds{kHandoverMs})
        << "the drain took longer than the handover period; nothing to test";
    const std::string answer = http_get(connection);
    ::close(connection);
    EXPECT_NE(answer.find("200 OK"), std::string::npos) << "answer: " << answer;
    EXPECT_NE(answer.find("h1"), std::string::npos) << "not answered by the old holder: " << answer;
  }

  int prefix_length_ = kPrefixLength;  // of the floating addresses; set before SetUp()
  std::string probe_log_;
  ProbeLog probes_;
  std::map<int, ProcessId> responders_;
};

TEST_F(VipE2e, FormationSpreadsAddressesEvenly) {
  const Holders now = holders();
  for (int host = 1; host <= kHosts; ++host) {
    EXPECT_EQ(held_by(now, host).size(), 2u) << describe(now);
  }
  EXPECT_EQ(keel_command(1, {"vip", "status"}), 0);
}

TEST_F(VipE2e, LinkDownMovesOnlyThatHostsAddresses) {
  const Holders before = holders();
  const double fault = realtime_ms();
  ASSERT_OK(lab_->set_link(4, false));
  const Holders after = wait_placement({1, 2, 3});
  expect_only_moved_from(before, after, 4);
  report_timing("longest client outage after link down",
                milliseconds(static_cast<int>(longest_outage(fault))));
  ASSERT_OK(lab_->set_link(4, true));
  const Holders healed = wait_placement(all());
  EXPECT_EQ(held_by(healed, 4).size(), 2u) << describe(healed);
}

TEST_F(VipE2e, KilledAgentsAddressesAreTakenOverAndCleanedUpOnRestart) {
  const Holders before = holders();
  const auto victims = held_by(before, 4);
  ASSERT_OK(lab_->kill_agent(4));
  // The dead agent cannot release: its addresses stay on h4's interface, but the survivors
  // take them over and their announcements move the client's ARP entries to them.
  const Holders after = wait_placement({1, 2, 3});
  expect_only_moved_from(before, after, 4);
  ASSERT_OK(lab_->start_agent(4));
  const Holders restarted = wait_placement(all());
  for (const auto& [address, hosts] : restarted) EXPECT_EQ(hosts.size(), 1u) << address;
}

TEST_F(VipE2e, FrozenHostIsReplacedAndRejoinsWithoutDuplicates) {
  const Holders before = holders();
  ASSERT_OK(lab_->freeze(4));
  const Holders after = wait_placement({1, 2, 3});
  expect_only_moved_from(before, after, 4);
  ASSERT_OK(lab_->thaw(4));
  const Holders thawed = wait_placement(all());
  for (const auto& [address, hosts] : thawed) EXPECT_EQ(hosts.size(), 1u) << address;
}

TEST_F(VipE2e, FailedHealthCheckMovesTheAddressesAway) {
  const Holders before = holders();
  ASSERT_TRUE(send_signal(responders_.at(2), SIGKILL));
  ASSERT_TRUE(wait_gone(responders_.at(2), milliseconds{5000}));
  const Holders after = wait_placement({1, 3, 4});
  expect_only_moved_from(before, after, 2);
  EXPECT_TRUE(held_by(after, 2).empty()) << describe(after);
  ASSERT_NO_FATAL_FAILURE(start_web(2));
  const Holders recovered = wait_placement(all());
  EXPECT_EQ(held_by(recovered, 2).size(), 2u) << describe(recovered);
}

TEST_F(VipE2e, PartitionHoldsEverythingOnBothSidesAndMergesWithoutDuplicates) {
  ASSERT_OK(lab_->partition({{1, 2}, {3, 4}}));
  // Each side serves every address (the client, on the bridge, may reach either).
  const auto deadline = Clock::now() + milliseconds{15000};
  bool both_sides = false;
  while (!both_sides && Clock::now() < deadline) {
    const Holders now = holders();
    both_sides = std::all_of(now.begin(), now.end(), [](const auto& entry) {
      const auto& hosts = entry.second;
      const bool left = std::any_of(hosts.begin(), hosts.end(), [](int h) { return h <= 2; });
      const bool right = std::any_of(hosts.begin(), hosts.end(), [](int h) { return h >= 3; });
      return left && right;
    });
    std::this_thread::sleep_for(milliseconds{50});
  }
  EXPECT_TRUE(both_sides) << describe(holders());
  ASSERT_OK(lab_->heal());
  const Holders merged = wait_placement(all());
  for (const auto& [address, hosts] : merged) EXPECT_EQ(hosts.size(), 1u) << address;
}

TEST_F(VipE2e, DrainHandsOverWithoutARefusedConnection) {
  const Holders before = holders();
  const double start = realtime_ms();
  EXPECT_EQ(keel_command(1, {"node", "drain"}), 0);
  Holders drained = wait_placement({2, 3, 4});
  expect_only_moved_from(before, drained, 1);
  // h1 keeps its addresses, silent, for the handover period, then lets them go.
  const auto deadline = Clock::now() + milliseconds{kHandoverMs + 5000};
  while (!held_by(drained, 1).empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds{50});
    drained = holders();
  }
  EXPECT_TRUE(held_by(drained, 1).empty()) << describe(drained);
  EXPECT_EQ(refused_or_lost(start), 0u) << "a drain refused or dropped connections";
  // Not even a connection in flight when an address's ARP entry switched: the new holder passes
  // it to the drained host during the handover period.
  EXPECT_EQ(failed_probes(start), 0u) << "a drain reset connections";
  EXPECT_EQ(keel_command(1, {"node", "undrain"}), 0);
  const Holders back = wait_placement(all());
  EXPECT_EQ(held_by(back, 1).size(), 2u) << describe(back);
}

TEST_F(VipE2e, DrainKeepsConnectionsOpenAtTheSwitch) {
  ASSERT_NO_FATAL_FAILURE(expect_drain_keeps_a_connection_open());
  EXPECT_EQ(keel_command(1, {"node", "undrain"}), 0);
  wait_placement(all());
}

// Floating addresses as host routes (/32), as pools announced by routing often are: the
// floating address's own prefix holds no other host, but the drained host is on the link all
// the same, and the drain's connection handover works as for /24s.
class VipE2eHostRoutes : public VipE2e {
 protected:
  void SetUp() override {
    prefix_length_ = 32;
    VipE2e::SetUp();
  }
};

TEST_F(VipE2eHostRoutes, DrainKeepsConnectionsOpenAtTheSwitch) {
  ASSERT_NO_FATAL_FAILURE(expect_drain_keeps_a_connection_open());
}

TEST_F(VipE2e, GracefulStopHandsOverFirst) {
  const Holders before = holders();
  const double start = realtime_ms();
  ASSERT_OK(lab_->stop_agent(4));  // SIGTERM: a drain, then the leave
  const Holders after = wait_placement({1, 2, 3});
  expect_only_moved_from(before, after, 4);
  EXPECT_TRUE(held_by(after, 4).empty()) << "a stopped agent left addresses behind";
  EXPECT_EQ(refused_or_lost(start), 0u) << "a graceful stop refused or dropped connections";
  EXPECT_EQ(failed_probes(start), 0u) << "a graceful stop reset connections";
  ASSERT_OK(lab_->start_agent(4));
  const Holders back = wait_placement(all());
  EXPECT_EQ(held_by(back, 4).size(), 2u) << describe(back);
}

// A restart quicker than the token timeout. The default 300 ms is less than a loaded machine may
// take to reap one agent and start the next, so these hosts allow 3 s: the scenario is an agent
// back before the others could notice it gone, whatever else the machine is doing.
class VipE2eQuickRestart : public VipE2e {
 protected:
  void SetUp() override {
    host_config_.ring.emplace_back("token_timeout_ms", "3000");
    VipE2e::SetUp();
  }
};

TEST_F(VipE2eQuickRestart, RestartedAgentAdoptsItsAddresses) {
  const Holders before = holders();
  const auto mine = held_by(before, 3);
  ASSERT_EQ(mine.size(), 2u);
  const double start = realtime_ms();
  // SIGKILL and start again at once: within the token timeout, so the others never see h3 go;
  // the new agent finds its marked addresses and keeps them.
  ASSERT_OK(lab_->restart_agent(3));
  const Holders after = wait_placement(all());
  EXPECT_EQ(held_by(after, 3), mine) << describe(after);
  EXPECT_EQ(failed_probes(start), 0u) << "the restart flapped an address";
}

}  // namespace
}  // namespace keel::lab::testing
