// The fixture of the VipService tests (vip_service_test.cpp, vip_service_adopted_test.cpp):
// VipService (src/agent/vip_service.hpp) against a real kernel, as root: one host alone in its
// ring, in a private network namespace with a veth pair (v0, v1) and 198.18.78.1/24 on v0. Its
// keel.vip messages come back to it as the ring would deliver them. The service runs on an
// io_context thread inside the namespace; the test looks at the kernel with ip(8).
#pragma once

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

#include "agent/vip_service.hpp"
#include "file_test_support.hpp"
#include "netns_test_support.hpp"

namespace keel::agent::vip_service_testing {

using namespace std::chrono_literals;

inline constexpr const char* kFloating = "198.18.78.10/24";

// Node fe1 (this host), with fe2 too when `two_nodes` (it never runs: the tests play its part).
inline std::string service_config(const std::string& pool_extra, int startup_ms, bool two_nodes,
                                  int handover_ms) {
  std::string nodes = "[[node]]\nid = 1\nname = \"fe1\"\naddress = \"198.18.78.1\"\n";
  if (two_nodes) nodes += "\n[[node]]\nid = 2\nname = \"fe2\"\naddress = \"198.18.78.2\"\n";
  return "[cluster]\nname = \"t\"\n\n" + nodes +
         "\n[vip]\nstartup_ms = " + std::to_string(startup_ms) +
         "\nhandover_ms = " + std::to_string(handover_ms) + "\n\n[[vip.pool]]\nname = \"web\"\n" +
         "addresses = [\"" + std::string(kFloating) +
         "\"]\ninterface = \"v0\"\nannounce_count = 1\n" + pool_extra;
}

inline std::string kernel_release() {
  utsname name{};
  return ::uname(&name) == 0 ? name.release : "";
}

using keel::testing::read_file;

// Raises or lowers CAP_NET_ADMIN in the calling thread's effective set (it stays permitted).
// Capabilities belong to threads: on the service's thread this makes its netlink changes fail
// with EPERM, and nothing else.
inline bool set_net_admin(bool effective) {
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

}  // namespace keel::agent::vip_service_testing
