// End-to-end tests of what a killed agent leaves behind for floating IPs, and of its removal by
// the next agent (agent/vip_leftovers.hpp): real agents in the lab, killed (SIGKILL) while they
// hold addresses or keep one quietly after a drain, then started again with a config that no
// longer uses what they left. The kernel of the host's namespace says what is left: netlink for
// addresses and keel's mark on them, `ip addr` for the others, `nft list tables` for rules.
// What a test adds inside a namespace (an interface, addresses, tables) goes with the namespace
// when the lab is torn down, whether the test passed or not.
#include <sys/utsname.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/handover_rules.hpp"
#include "io/netlink_addresses.hpp"
#include "lab/state.hpp"
#include "lab_fixture.hpp"

namespace keel::lab::testing {
namespace {

constexpr const char* kFirstLeftover = "198.18.0.100/24";
constexpr const char* kSecondLeftover = "198.18.0.101/24";
constexpr const char* kSomeoneElses = "198.18.0.200/24";  // on eth0 without keel's mark
constexpr const char* kSideInterface = "side0";           // a veth pair inside the host's namespace
constexpr const char* kSidePeer = "side1";
constexpr const char* kSideOwn = "198.19.7.1/24";
constexpr const char* kSideFloating = "198.19.7.100/24";
constexpr auto kLeftoverWait = milliseconds{15000};

// A [vip] section with one pool "web" of `addresses` on `interface`, without a health check, and
// no startup wait (a lab of one host would otherwise wait 2 s for the others).
std::string vip_toml(const std::string& interface, const std::vector<std::string>& addresses,
                     int handover_ms = 1000) {
  std::string list;
  for (const auto& address : addresses) list += (list.empty() ? "\"" : ", \"") + address + "\"";
  return "[vip]\nstartup_ms = 0\nhandover_ms = " + std::to_string(handover_ms) +
         "\n\n[[vip.pool]]\nname = \"web\"\naddresses = [" + list + "]\ninterface = \"" +
         interface + "\"\nannounce_count = 1\n";
}

class VipLeftoversE2e : public LabFixture {
 protected:
  void SetUp() override {
    LabFixture::SetUp();
    if (IsSkipped()) return;
    utsname name{};
    const std::string release = ::uname(&name) == 0 ? name.release : "";
    if (!io::kernel_release_at_least(release, io::kMarkKernelMajor, io::kMarkKernelMinor)) {
      GTEST_SKIP() << "this kernel does not keep keel's mark: nothing reads as a leftover";
    }
  }

  // Writes `vip` in place of host's [vip] section; its agent reads it at its next start.
  void rewrite_config(int host, const std::string& vip) {
    HostConfigSettings settings = host_config_;
    settings.extra = vip;
    ASSERT_OK(write_file_atomically(lab_->host(host).config,
                                    host_config_toml(lab_->state(), host, settings), 0644));
  }

  // Runs `args` in host's namespace (`ip netns exec`).
  void run_in(int host, std::vector<std::string> args) {
    args.insert(args.begin(), {"ip", "netns", "exec", lab_->netns_of(host)});
    ASSERT_OK(run_checked(args));
  }

  // The addresses on `interface` in host's namespace that carry keel's mark, as netlink has them.
  std::set<std::string> marked(int host, const std::string& interface) {
    Result<std::vector<io::InterfaceAddress>> listed = Error{"not run"};
    auto entered = in_netns(lab_->netns_of(host), [&] {
      auto netlink = io::NetlinkAddresses::open();
      if (!netlink) {
        listed = netlink.error();
        return;
      }
      listed = netlink.value()->list(interface);
    });
    EXPECT_TRUE(entered.ok()) << (entered ? "" : entered.error().message);
    EXPECT_TRUE(listed.ok()) << (listed ? "" : listed.error().message);
    std::set<std::string> found;
    if (!listed) return found;
    for (const auto& address : listed.value()) {
      if (address.keel_owned()) found.insert(io::to_string(address.prefix));
    }
    return found;
  }

  // Every IPv4 address on `interface` in host's namespace, marked or not (`ip -j addr`).
  std::set<std::string> present(int host, const std::string& interface) {
    auto out = run_checked(
        {"ip", "-n", lab_->netns_of(host), "-j", "-4", "addr", "show", "dev", interface});
    EXPECT_TRUE(out.ok()) << (out ? "" : out.error().message);
    std::set<std::string> found;
    const auto parsed = nlohmann::json::parse(out ? out.value() : "", nullptr, false);
    if (!parsed.is_array()) return found;
    for (const auto& link : parsed) {
      for (const auto& address : link.value("addr_info", nlohmann::json::array())) {
        found.insert(address.value("local", "") + "/" +
                     std::to_string(address.value("prefixlen", 0)));
      }
    }
    return found;
  }

  // The nftables tables in host's namespace, one "table FAMILY NAME" each.
  std::set<std::string> tables(int host) {
    auto out = run_checked({"ip", "netns", "exec", lab_->netns_of(host), "nft", "list", "tables"});
    EXPECT_TRUE(out.ok()) << (out ? "" : out.error().message);
    std::set<std::string> found;
    std::istringstream lines(out ? out.value() : "");
    for (std::string line; std::getline(lines, line);) found.insert(line);
    return found;
  }

  static bool wait_for(const std::function<bool()>& condition, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!condition()) {
      if (Clock::now() >= deadline) return condition();
      std::this_thread::sleep_for(milliseconds{50});
    }
    return true;
  }

  // One host holds both floating addresses on eth0 next to someone else's; its agent is killed,
  // `before_restart` runs, and the agent starts again with `next_vip` as its [vip] section. Every
  // address keel left on eth0 is deleted; every address without its mark stays.
  void expect_leftover_addresses_deleted(const std::string& next_vip,
                                         const std::function<void()>& before_restart = {}) {
    host_config_.extra = vip_toml("eth0", {kFirstLeftover, kSecondLeftover});
    ASSERT_NO_FATAL_FAILURE(build(1));
    const std::set<std::string> both = {kFirstLeftover, kSecondLeftover};
    ASSERT_TRUE(wait_for([&] { return marked(1, "eth0") == both; }, kLeftoverWait))
        << "the agent did not take its addresses";
    ASSERT_NO_FATAL_FAILURE(run_in(1, {"ip", "addr", "add", kSomeoneElses, "dev", "eth0"}));
    ASSERT_OK(lab_->kill_agent(1));
    ASSERT_EQ(marked(1, "eth0"), both) << "a killed agent leaves its addresses";
    if (before_restart) {
      ASSERT_NO_FATAL_FAILURE(before_restart());
    }

    ASSERT_NO_FATAL_FAILURE(rewrite_config(1, next_vip));
    ASSERT_OK(lab_->start_agent(1));
    EXPECT_TRUE(wait_for([&] { return marked(1, "eth0").empty(); }, kLeftoverWait))
        << "left on eth0: " << ::testing::PrintToString(marked(1, "eth0"));
    const auto left = present(1, "eth0");
    EXPECT_TRUE(left.contains(kSomeoneElses)) << ::testing::PrintToString(left);
    EXPECT_TRUE(left.contains(lab_->host(1).address + "/" + std::to_string(kPrefixLength)))
        << ::testing::PrintToString(left);
  }
};

// The pool moved to another interface between the runs: the addresses on the old one are the
// killed agent's, and no pool uses that interface any more.
TEST_F(VipLeftoversE2e, AddressesLeftOnAnInterfaceNoPoolUsesAreDeletedAtStart) {
  ASSERT_NO_FATAL_FAILURE(
      expect_leftover_addresses_deleted(vip_toml(kSideInterface, {kSideFloating}), [this] {
        ASSERT_NO_FATAL_FAILURE(run_in(
            1, {"ip", "link", "add", kSideInterface, "type", "veth", "peer", "name", kSidePeer}));
        ASSERT_NO_FATAL_FAILURE(run_in(1, {"ip", "addr", "add", kSideOwn, "dev", kSideInterface}));
        ASSERT_NO_FATAL_FAILURE(run_in(1, {"ip", "link", "set", kSideInterface, "up"}));
      }));
  // The new pool is served where the config now puts it.
  const std::set<std::string> moved = {kSideFloating};
  EXPECT_TRUE(wait_for([&] { return marked(1, kSideInterface) == moved; }, kLeftoverWait));
  EXPECT_TRUE(present(1, kSideInterface).contains(kSideOwn));
}

// The floating IPs were taken out of the config between the runs: the agent starts without any
// pool, and still deletes what the killed one left.
TEST_F(VipLeftoversE2e, AddressesLeftByARemovedPoolAreDeletedAtStart) {
  ASSERT_NO_FATAL_FAILURE(expect_leftover_addresses_deleted(""));
}

// h1 is draining, its address half handed over (h2 passes unknown connections back, h1 keeps
// the address without ARP), when both agents are killed; they start again with the handover
// turned off. Their tables go all the same, and only theirs.
TEST_F(VipLeftoversE2e, HandoverTablesLeftByKilledAgentsAreRemovedWithTheHandoverOff) {
  // Longer than the two kills take: neither agent sees the other go and ends the handover.
  host_config_.ring.emplace_back("token_timeout_ms", "3000");
  const std::vector<std::string> addresses = {kFirstLeftover, kSecondLeftover};
  host_config_.extra = vip_toml("eth0", addresses, 60000);
  ASSERT_NO_FATAL_FAILURE(build(2));
  ASSERT_TRUE(
      wait_for([&] { return marked(1, "eth0").size() == 1 && marked(2, "eth0").size() == 1; },
               kLeftoverWait))
      << "the addresses were not placed one on each host";
  const std::string mine = *marked(1, "eth0").begin();
  const auto address = asio::ip::make_address_v4(mine.substr(0, mine.find('/')));
  const std::string quiet = "table arp " + io::HandoverRules::quiet_table(address);
  const std::string forward = "table ip " + io::HandoverRules::forward_table(address);
  // Tables of someone else, one of them named almost as keel names its own.
  const std::set<std::string> others = {"table arp site", "table arp keel_quiet_web"};
  ASSERT_NO_FATAL_FAILURE(run_in(1, {"nft", "add", "table", "arp", "site"}));
  ASSERT_NO_FATAL_FAILURE(run_in(1, {"nft", "add", "table", "arp", "keel_quiet_web"}));

  ASSERT_OK(run_checked({KEEL_BINARY, "node", "drain", "--socket", lab_->host(1).socket}));
  const auto handing_over = [&] {
    return tables(1).contains(quiet) && tables(2).contains(forward);
  };
  ASSERT_TRUE(wait_for(handing_over, kLeftoverWait))
      << "h1: " << ::testing::PrintToString(tables(1))
      << ", h2: " << ::testing::PrintToString(tables(2));
  ASSERT_OK(lab_->kill_agent(2));
  ASSERT_OK(lab_->kill_agent(1));
  ASSERT_TRUE(handing_over()) << "the handover ended before the agents were killed";

  for (int host : {1, 2}) {
    ASSERT_NO_FATAL_FAILURE(rewrite_config(host, vip_toml("eth0", addresses, 0)));
    ASSERT_OK(lab_->start_agent(host));
  }
  EXPECT_TRUE(wait_for([&] { return !tables(1).contains(quiet) && !tables(2).contains(forward); },
                       kLeftoverWait))
      << "h1: " << ::testing::PrintToString(tables(1))
      << ", h2: " << ::testing::PrintToString(tables(2));
  const auto left = tables(1);
  for (const auto& table : others) EXPECT_TRUE(left.contains(table)) << table;
}

}  // namespace
}  // namespace keel::lab::testing
