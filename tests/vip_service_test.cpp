// VipService (src/agent/vip_service.hpp) against a real kernel, as root: one host alone in its
// ring, in a private network namespace with a veth pair (v0, v1) and 198.18.78.1/24 on v0. Its
// keel.vip messages come back to it as the ring would deliver them. The service runs on an
// io_context thread inside the namespace; the test looks at the kernel with ip(8).
#include "agent/vip_service.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include "file_test_support.hpp"
#include "netns_test_support.hpp"

namespace keel::agent {
namespace {

using namespace std::chrono_literals;

constexpr const char* kFloating = "198.18.78.10/24";

// Node fe1 (this host), with fe2 too when `two_nodes` (it never runs: the tests play its part).
std::string service_config(const std::string& pool_extra, int startup_ms, bool two_nodes,
                           int handover_ms) {
  std::string nodes = "[[node]]\nid = 1\nname = \"fe1\"\naddress = \"198.18.78.1\"\n";
  if (two_nodes) nodes += "\n[[node]]\nid = 2\nname = \"fe2\"\naddress = \"198.18.78.2\"\n";
  return "[cluster]\nname = \"t\"\n\n" + nodes +
         "\n[vip]\nstartup_ms = " + std::to_string(startup_ms) +
         "\nhandover_ms = " + std::to_string(handover_ms) + "\n\n[[vip.pool]]\nname = \"web\"\n" +
         "addresses = [\"" + std::string(kFloating) +
         "\"]\ninterface = \"v0\"\nannounce_count = 1\n" + pool_extra;
}

std::string kernel_release() {
  utsname name{};
  return ::uname(&name) == 0 ? name.release : "";
}

using keel::testing::read_file;

// Raises or lowers CAP_NET_ADMIN in the calling thread's effective set (it stays permitted).
// Capabilities belong to threads: on the service's thread this makes its netlink changes fail
// with EPERM, and nothing else.
bool set_net_admin(bool effective) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  const std::uint32_t bit = 1u << CAP_NET_ADMIN;
  data[0].effective = effective ? data[0].effective | bit : data[0].effective & ~bit;
  return ::syscall(SYS_capset, &header, data) == 0;
}

class VipServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = testing::netns_unavailable_reason()) GTEST_SKIP() << *reason;
    netns_ = std::make_unique<testing::TestNamespace>(testing::unique_prefix() + "-v");
    ASSERT_TRUE(netns_->created());
    ASSERT_TRUE(netns_->add_veth_pair("198.18.78.1/24"));
    scratch_ = "/tmp/" + netns_->name() + "-files";
    std::filesystem::create_directories(scratch_);
    work_.emplace(asio::make_work_guard(io_));
    io_thread_ = std::thread([this] {
      netns_->run([this] {
        io_.run();
        return 0;
      });
    });
  }

  void TearDown() override {
    if (io_thread_.joinable()) {
      call([this] {
        if (service_) service_->stop();
        return 0;
      });
      // Timers the service left (announcement rounds, hook reaping) must not outlive it.
      io_.stop();
      io_thread_.join();
    }
    service_.reset();
    if (catcher_ >= 0) ::close(catcher_);
    netns_.reset();
    if (!scratch_.empty()) std::filesystem::remove_all(scratch_);
  }

  // Runs `work` on the service's thread and returns what it returns.
  template <typename Work>
  auto call(Work work) -> decltype(work()) {
    std::promise<decltype(work())> done;
    auto result = done.get_future();
    asio::post(io_, [&] { done.set_value(work()); });
    return result.get();
  }

  // Opens the service with `pool_extra` appended to the pool's section; nothing runs yet.
  void open(const std::string& pool_extra = "") {
    auto parsed = config::parse_config(
        service_config(pool_extra, startup_ms_, two_nodes_, handover_ms_), "keel.toml");
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    config_ = std::move(parsed).value();
    const std::string error = call([this] {
      auto opened = VipService::open(io_, config_, 1, [this](const Bytes& payload) {
        asio::post(io_, [this, payload] {
          if (service_) service_->on_message(1, payload);
        });
        return Result<Ok>(Ok{});
      });
      if (!opened) return opened.error().message;
      service_ = std::move(opened).value();
      return std::string();
    });
    ASSERT_EQ(error, "");
  }

  // Starts the health checks and installs a view of this host alone.
  void run_alone() {
    call([this] {
      service_->start();
      service_->on_view(ring::View{ring::View::Kind::regular, RingId{1, 1}, {}, {1}});
      return 0;
    });
  }

  bool floating_on_v0() const {
    return netns_->ip_output({"-o", "addr", "show", "dev", "v0"}).find(kFloating) !=
           std::string::npos;
  }

  bool held_here() {
    return call([this] {
      const auto status = service_->status();
      return status["pools"][0]["addresses"][0]["held_here"].get<bool>();
    });
  }

  std::string why() {
    return call([this] {
      const auto status = service_->status();
      return status["pools"][0]["addresses"][0]["why"].get<std::string>();
    });
  }

  // A health check that passes while `failing` does not exist (checked every 20 ms, one result
  // decides), as pool_extra.
  static std::string health_unless(const std::string& failing) {
    return "[vip.pool.health]\nkind = \"exec\"\ncommand = \"test ! -e " + failing +
           "\"\ninterval_ms = 20\nrise = 1\nfall = 1\n";
  }

  bool quiescent() {
    return call([this] { return service_->status()["quiescent"].get<bool>(); });
  }

  // Puts kFloating on v0 with keel's mark, as an agent killed while it held it leaves it.
  void leave_marked_floating() {
    auto added = netns_->run([] {
      auto netlink = io::NetlinkAddresses::open();
      return netlink.ok() && netlink.value()->add("v0", io::parse_prefix(kFloating).value()).ok();
    });
    ASSERT_TRUE(added && *added);
  }

  // Installs a view of this host with fe2, and fe2's State in it: its pool healthy, holding
  // kFloating or not.
  void join_node_2(bool holds_floating) {
    call([this, holds_floating] {
      service_->on_view(ring::View{ring::View::Kind::regular, kWithNode2, {}, {1, 2}});
      return 0;
    });
    send_node_2_state(holds_floating);
  }
  // fe2's State in the view join_node_2() installed.
  void send_node_2_state(bool holds_floating) {
    call([this, holds_floating] {
      vip::VipState state{
          kWithNode2, vip::config_digest(config::core_vip_config(config_.vip)), 0, false, {0}, {}};
      if (holds_floating) state.held.push_back(0);
      service_->on_message(2, vip::encode_vip_state(state));
      return 0;
    });
  }
  static constexpr RingId kWithNode2{2, 1};

  // Starts catching the frames v0 sends. A veth has no queue: a packet socket is handed each
  // frame before the send returns, so announcements_sent() counts every one made so far.
  void catch_sent() {
    auto opened = netns_->run([] {
      const int fd =
          ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
      sockaddr_ll local{};
      local.sll_family = AF_PACKET;
      local.sll_protocol = htons(ETH_P_ALL);
      local.sll_ifindex = static_cast<int>(::if_nametoindex("v0"));
      if (fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
        ::close(fd);
        return -1;
      }
      return fd;
    });
    ASSERT_TRUE(opened && *opened >= 0) << "cannot open a packet socket in " << netns_->name();
    catcher_ = *opened;
  }

  // The gratuitous ARPs for kFloating sent on v0 since the last call.
  int announcements_sent() {
    const auto floating = asio::ip::make_address_v4("198.18.78.10").to_bytes();
    int count = 0;
    std::array<std::uint8_t, 2048> frame{};
    for (;;) {
      sockaddr_ll from{};
      socklen_t from_size = sizeof from;
      const ssize_t got = ::recvfrom(catcher_, frame.data(), frame.size(), 0,
                                     reinterpret_cast<sockaddr*>(&from), &from_size);
      if (got < 0) return count;
      // ARP for IPv4 over Ethernet: the sender's IP at bytes 14-17, the target's at 24-27.
      if (from.sll_pkttype != PACKET_OUTGOING || from.sll_protocol != htons(ETH_P_ARP) ||
          got < 28) {
        continue;
      }
      const bool gratuitous = std::equal(floating.begin(), floating.end(), frame.begin() + 14) &&
                              std::equal(floating.begin(), floating.end(), frame.begin() + 24);
      if (gratuitous) ++count;
    }
  }

  // Whether v0 answers an ARP request for kFloating sent on v1 within 300 ms (a reply comes in
  // well under a millisecond on a veth).
  bool answers_arp() const {
    auto answered = netns_->run([] {
      const int fd = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
      if (fd < 0) return false;
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_protocol = htons(ETH_P_ARP);
      to.sll_ifindex = static_cast<int>(::if_nametoindex("v1"));
      to.sll_halen = ETH_ALEN;
      std::fill_n(to.sll_addr, ETH_ALEN, 0xff);
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        ::close(fd);
        return false;
      }
      // An ARP request: Ethernet/IPv4, from v1's (made up) 02:00:00:00:00:02 at 198.18.78.2.
      std::array<std::uint8_t, 28> request{0,   1,  8,  0, 6, 4, 0, 1, 2, 0, 0,   0,  0,  2,
                                           198, 18, 78, 2, 0, 0, 0, 0, 0, 0, 198, 18, 78, 10};
      bool replied = false;
      if (::sendto(fd, request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                   sizeof to) == static_cast<ssize_t>(request.size())) {
        const auto deadline = std::chrono::steady_clock::now() + 300ms;
        while (!replied && std::chrono::steady_clock::now() < deadline) {
          pollfd ready{fd, POLLIN, 0};
          if (::poll(&ready, 1, 20) <= 0) continue;
          std::array<std::uint8_t, 64> frame{};
          const ssize_t got = ::recv(fd, frame.data(), frame.size(), 0);
          // A reply (operation 2) from 198.18.78.10.
          const std::array<std::uint8_t, 4> floating{198, 18, 78, 10};
          replied = got >= 28 && frame[7] == 2 &&
                    std::equal(floating.begin(), floating.end(), frame.begin() + 14);
        }
      }
      ::close(fd);
      return replied;
    });
    return answered && *answered;
  }

  // The nftables tables in the namespace, as `nft list tables` prints them.
  // The namespace's nftables tables, one "table FAMILY NAME" line each; a test failure (not an
  // empty list) when nft cannot be run.
  std::string nft_tables() const {
    return testing::tool_output({"ip", "netns", "exec", netns_->name(), "nft", "list", "tables"});
  }

  std::unique_ptr<testing::TestNamespace> netns_;
  int startup_ms_ = 0;
  int handover_ms_ = 0;
  bool two_nodes_ = false;
  int catcher_ = -1;
  std::string scratch_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread io_thread_;
  config::ClusterConfig config_;
  std::unique_ptr<VipService> service_;
};

TEST_F(VipServiceTest, TakesItsAddressAloneAndDeletesItAtStop) {
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  EXPECT_TRUE(held_here());
  call([this] {
    service_->stop();
    return 0;
  });
  EXPECT_FALSE(floating_on_v0());
}

// The interface is gone when placement gives the address here, and back a moment later: the add
// is tried again until it works, and the address that was never added is never "released".
TEST_F(VipServiceTest, AFailedAddIsRetriedUntilItWorks) {
  const std::string released = scratch_ + "/released";
  ASSERT_NO_FATAL_FAILURE(open("on_release = \"sh -c 'echo released >> " + released + "'\"\n"));
  ASSERT_TRUE(netns_->ip({"link", "del", "v0"}));
  run_alone();
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(held_here());
  ASSERT_TRUE(netns_->add_veth_pair("198.18.78.1/24"));
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }, 10s));
  EXPECT_TRUE(testing::wait_until([this] { return held_here(); }));
  std::this_thread::sleep_for(300ms);  // a hook would have run by now
  EXPECT_EQ(read_file(released), "");
}

// The kernel refuses the delete when placement takes the address away (here: the service's thread
// lacks CAP_NET_ADMIN for a while). The address would stay on this host while another takes it;
// the delete is tried again until it works.
TEST_F(VipServiceTest, AFailedDeleteIsRetriedUntilItWorks) {
  const std::string failing = scratch_ + "/unhealthy";
  ASSERT_NO_FATAL_FAILURE(open(health_unless(failing)));
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  ASSERT_TRUE(call([] { return set_net_admin(false); }));
  std::ofstream(failing).put('\n');  // the health check fails: the address is released
  EXPECT_TRUE(testing::wait_until([this] { return !held_here(); }));
  EXPECT_TRUE(testing::wait_until([this] {
    return why().find("delete failed") != std::string::npos;
  })) << why();
  EXPECT_TRUE(floating_on_v0());
  ASSERT_TRUE(call([] { return set_net_admin(true); }));
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 5s));
  EXPECT_FALSE(held_here());
}

// A drained host hands its address over and keeps it, silent, for the handover period; then the
// delete fails (its interface is renamed for a while). The address stays here, and silent, while
// the new holder has it: never answering ARP on two hosts. Once a retry deletes it, the silence
// goes too.
TEST_F(VipServiceTest, AHandedOverAddressWhoseDeleteFailsStaysSilent) {
  handover_ms_ = 1500;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  join_node_2(/*holds_floating=*/false);
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  ASSERT_TRUE(held_here()) << "placement gave the address to fe2; the test needs it here";
  ASSERT_TRUE(answers_arp()) << "the kernel does not answer ARP on this veth pair";
  ASSERT_TRUE(call([this] { return service_->drain().ok(); }));
  send_node_2_state(/*holds_floating=*/true);  // fe2 took it over
  ASSERT_TRUE(testing::wait_until([this] { return !held_here(); }));
  EXPECT_FALSE(answers_arp()) << "kept for the handover, but announced";
  const auto rename = [this](const std::string& from, const std::string& to) {
    return netns_->ip({"link", "set", from, "down"}) &&
           netns_->ip({"link", "set", from, "name", to}) && netns_->ip({"link", "set", to, "up"});
  };
  ASSERT_TRUE(rename("v0", "v0x"));
  EXPECT_TRUE(
      testing::wait_until([this] { return why().find("delete failed") != std::string::npos; }, 5s))
      << why();
  EXPECT_NE(netns_->ip_output({"-o", "addr", "show", "dev", "v0x"}).find(kFloating),
            std::string::npos);
  EXPECT_FALSE(answers_arp()) << "still here after the failed delete, and answering ARP";
  ASSERT_TRUE(rename("v0x", "v0"));
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 15s));
  EXPECT_TRUE(testing::wait_until([this] { return nft_tables().empty(); }, 5s)) << nft_tables();
}

// A drained host keeps its address while nobody else has it; when its health check then fails,
// it releases the address at once, as any failing host does, not after the handover period (that
// is for an address handed over to a new holder).
TEST_F(VipServiceTest, ADrainedHostWhoseCheckFailsReleasesAtOnce) {
  handover_ms_ = 10'000;
  two_nodes_ = true;
  const std::string failing = scratch_ + "/unhealthy";
  ASSERT_NO_FATAL_FAILURE(open(health_unless(failing)));
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  join_node_2(/*holds_floating=*/false);
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  ASSERT_TRUE(held_here()) << "placement gave the address to fe2; the test needs it here";
  ASSERT_TRUE(call([this] { return service_->drain().ok(); }));
  // The drain is in the table once placement names fe2 the holder; fe2 never takes it.
  ASSERT_TRUE(testing::wait_until([this] {
    return call([this] {
      return service_->status()["pools"][0]["addresses"][0]["holder"] == nlohmann::json(2);
    });
  }));
  ASSERT_TRUE(held_here()) << "fe2 has not taken it: the drained host keeps it";
  std::ofstream(failing).put('\n');
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 3s))
      << "kept as if handed over: " << why();
}

// A hook gets the standard streams and no other descriptor of the agent's, not even a socket Asio
// opened without close-on-exec.
TEST_F(VipServiceTest, HooksInheritOnlyTheStandardStreams) {
  asio::ip::udp::socket leaky(io_, asio::ip::udp::v4());  // as the agent's ring socket is
  ASSERT_EQ(::fcntl(leaky.native_handle(), F_GETFD) & FD_CLOEXEC, 0);
  const std::string listing = scratch_ + "/fds";
  ASSERT_NO_FATAL_FAILURE(
      open("on_acquire = \"sh -c 'exec ls -l /proc/self/fd > " + listing + "'\"\n"));
  run_alone();
  ASSERT_TRUE(testing::wait_until([&] { return !read_file(listing).empty(); }));
  // "lrwx------ 1 root root 64 Jan 1 00:00 3 -> socket:[123]", one line per descriptor.
  std::istringstream lines(read_file(listing));
  std::vector<std::string> descriptors;
  for (std::string line; std::getline(lines, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    const std::string target = line.substr(arrow + 4);
    if (target.starts_with("/proc/")) continue;  // the directory ls itself is reading
    const auto space = line.rfind(' ', arrow - 1);
    descriptors.push_back(line.substr(space + 1, arrow - space - 1) + " -> " + target);
  }
  ASSERT_EQ(descriptors.size(), 3u) << ::testing::PrintToString(descriptors);
  EXPECT_TRUE(descriptors[0].starts_with("0 -> ")) << descriptors[0];
  EXPECT_TRUE(descriptors[1].starts_with("1 -> ")) << descriptors[1];
  EXPECT_TRUE(descriptors[2].starts_with("2 -> ")) << descriptors[2];
}

// An address deleted behind keel's back (`ip addr del`, a flush, an IPv6 link flap, the IPv4
// primary going) while keel holds it is found missing and added again.
TEST_F(VipServiceTest, AHeldAddressDeletedByHandComesBack) {
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  ASSERT_TRUE(netns_->ip({"addr", "del", kFloating, "dev", "v0"}));
  ASSERT_FALSE(floating_on_v0());
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }, 5s));
  EXPECT_TRUE(held_here());
}

// An address someone else configured (without keel's mark) is used when placement gives it here,
// but never deleted: not when placement takes it away, not at shutdown.
TEST_F(VipServiceTest, AnAddressThatIsNotKeelsIsNeverDeleted) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing can be told apart";
  }
  ASSERT_TRUE(netns_->ip({"addr", "add", kFloating, "dev", "v0"}));
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return held_here(); }));
  call([this] {
    service_->stop();
    return 0;
  });
  EXPECT_TRUE(floating_on_v0());
}

// A restarted agent finds kFloating on v0 with keel's mark (the agent before it was killed) and
// keeps it, but says nothing while alone in its ring: another host may have taken it over while
// it was gone. It announces it once placement in a view with the others gives it here.
TEST_F(VipServiceTest, AnAdoptedAddressIsAnnouncedOnlyOncePlacementGivesItHere) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  // Settled alone: every held address would have been announced by now.
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_EQ(announcements_sent(), 0);
  EXPECT_TRUE(held_here());
  EXPECT_TRUE(floating_on_v0());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
  EXPECT_TRUE(floating_on_v0());
}

// Nor does it answer ARP for it until then: a neighbour asking would otherwise switch to this
// host from the one that took the address over. Once placement gives it here it answers again.
TEST_F(VipServiceTest, AnAdoptedAddressAnswersNoArpUntilPlacementGivesItHere) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_TRUE(answers_arp()) << "the kernel does not answer ARP on this veth pair";
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_TRUE(floating_on_v0());
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return answers_arp(); }));
  EXPECT_EQ(nft_tables(), "");
}

// An agent killed mid-drain left its address silenced. The restarted one adopts the address and
// keeps that silence throughout (the same table, never deleted and made again, which would let
// ARP through in between); it removes the silence of an address it does not adopt.
TEST_F(VipServiceTest, AKilledDrainsSilenceOfAnAdoptedAddressIsKeptWithoutAGap) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  const std::string adopted = "keel_quiet_198_18_78_10";
  const std::string stale = "keel_quiet_198_18_78_99";
  for (const auto& [table, address] :
       {std::pair{adopted, "198.18.78.10"}, std::pair{stale, "198.18.78.99"}}) {
    ASSERT_TRUE(
        testing::run_tool({"ip", "netns", "exec", netns_->name(), "nft",
                           "add table arp " + table + "\nadd chain arp " + table +
                               " output { type filter hook output priority 0; }\nadd rule arp " +
                               table + " output arp saddr ip " + address + " drop"}));
  }
  const auto handle = [this](const std::string& table) {
    const std::string listed = testing::tool_output(
        {"ip", "netns", "exec", netns_->name(), "nft", "-a", "list", "table", "arp", table});
    const auto at = listed.find("# handle ");
    return at == std::string::npos ? std::string() : listed.substr(at, listed.find('\n', at) - at);
  };
  const std::string before = handle(adopted);
  ASSERT_NE(before, "");
  EXPECT_FALSE(answers_arp());
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_EQ(handle(adopted), before) << "the silence was removed and made again";
  EXPECT_EQ(nft_tables(), "table arp " + adopted + "\n");
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return answers_arp(); }));
  EXPECT_EQ(nft_tables(), "");
}

// ... and if placement in that view gives it elsewhere (fe2 took it over and is preferred), it is
// deleted without ever having been announced.
TEST_F(VipServiceTest, AnAdoptedAddressPlacedElsewhereIsDeletedUnannounced) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(
      open("[vip.pool.prefer]\n\"" + std::string(kFloating) + "\" = \"fe2\"\n"));
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/true);
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }));
  EXPECT_FALSE(held_here());
  EXPECT_EQ(announcements_sent(), 0);
  EXPECT_EQ(nft_tables(), "") << "the silence outlived the address";
}

// Alone for good. Only this host may hold the address: nobody can have taken it, so it is
// announced at once. Other hosts may: it cannot tell them dead from not found yet, and announces
// it after the startup time, when it would take an address that has no holder as well.
TEST_F(VipServiceTest, AnAdoptedAddressAloneIsAnnouncedAtOnceOnlyInAPoolOfOne) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open("nodes = [\"fe1\"]\n"));
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  EXPECT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
}

TEST_F(VipServiceTest, AnAdoptedAddressOfTheOnlySurvivorIsAnnouncedAfterTheStartupTime) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 1000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  const auto started = std::chrono::steady_clock::now();
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
  // Seen no earlier than it was sent: a late look can only pass a wrong early announcement.
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1000ms);
}

}  // namespace
}  // namespace keel::agent
