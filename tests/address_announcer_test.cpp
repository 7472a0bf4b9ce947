// Takeover announcements (src/io/address_announcer.hpp): frame layout without root; as root, two
// namespaces joined by a veth, announcements sent from one and seen, both as raw frames and in the
// neighbour table, in the other.
#include "io/address_announcer.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "netns_test_support.hpp"

namespace keel::io {
namespace {

using namespace std::chrono_literals;

const MacAddress kOtherMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};

TEST(AnnouncerFrames, ArpAnnouncementLayout) {
  const auto ip = asio::ip::make_address_v4("198.18.77.10");
  const MacAddress mac{{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
  const auto packet = arp_packet(1, mac, ip, {}, ip);
  const std::vector<std::uint8_t> expected = {
      0x00, 0x01, 0x08, 0x00, 6,    4,    0x00, 0x01,           // Ethernet, IPv4, request
      0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 198,  18,   77, 10,   // sender
      0,    0,    0,    0,    0,    0,    198,  18,   77, 10};  // target
  EXPECT_EQ(packet, expected);
  EXPECT_EQ(to_string(mac), "02:11:22:33:44:55");
}

TEST(AnnouncerFrames, NeighbourAdvertisementLayout) {
  const auto target = asio::ip::make_address_v6("2001:2:0:6b::10");
  const auto all_nodes = asio::ip::make_address_v6("ff02::1");
  const MacAddress mac{{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
  const auto packet = neighbour_advertisement(mac, target, all_nodes);
  ASSERT_EQ(packet.size(), 40u + 32u);
  EXPECT_EQ(packet[0] >> 4, 6);
  EXPECT_EQ((packet[4] << 8) | packet[5], 32);  // payload length
  EXPECT_EQ(packet[6], 58);                     // ICMPv6
  EXPECT_EQ(packet[7], 255);                    // hop limit
  EXPECT_EQ(packet[40], 136);                   // neighbour advertisement
  EXPECT_EQ(packet[44], 0x20);                  // override only
  EXPECT_EQ(packet[64], 2);                     // target link-layer address option
  EXPECT_EQ(packet[65], 1);
  EXPECT_EQ(std::vector<std::uint8_t>(packet.begin() + 66, packet.end()),
            std::vector<std::uint8_t>(mac.bytes.begin(), mac.bytes.end()));
  // The checksum verifies: summing pseudo-header and message, checksum included, gives 0xffff.
  std::uint32_t sum = 0;
  for (std::size_t i = 8; i < 40; i += 2) sum += (packet[i] << 8) | packet[i + 1];
  sum += 32 + 58;
  for (std::size_t i = 40; i < packet.size(); i += 2) sum += (packet[i] << 8) | packet[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
}

// A frame caught by a packet socket: its payload and how it was addressed.
struct Caught {
  std::vector<std::uint8_t> payload;
  int packet_type = 0;  // PACKET_BROADCAST, PACKET_MULTICAST, PACKET_HOST...
  MacAddress source;
};

// Namespaces A and B joined by veth va (in A) and vb (in B), both up, with IPv4 addresses
// 198.18.77.1/24 and .2/24. The announcer sends on va; the catcher listens on vb.
class AddressAnnouncerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = testing::netns_unavailable_reason()) GTEST_SKIP() << *reason;
    const std::string prefix = testing::unique_prefix();
    a_ = std::make_unique<testing::TestNamespace>(prefix + "-a");
    b_ = std::make_unique<testing::TestNamespace>(prefix + "-b");
    ASSERT_TRUE(a_->created() && b_->created());
    ASSERT_TRUE(
        a_->ip({"link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b_->name()}));
    ASSERT_TRUE(a_->ip({"addr", "add", "198.18.77.1/24", "dev", "va"}));
    ASSERT_TRUE(b_->ip({"addr", "add", "198.18.77.2/24", "dev", "vb"}));
    ASSERT_TRUE(a_->ip({"link", "set", "va", "up"}));
    ASSERT_TRUE(b_->ip({"link", "set", "vb", "up"}));
    auto opened = a_->run([] { return AddressAnnouncer::open("va"); });
    ASSERT_TRUE(opened);
    ASSERT_TRUE(opened->ok()) << opened->error().message;
    announcer_ = std::move(opened->value());
    auto mac = announcer_->hardware_address();
    ASSERT_TRUE(mac.ok());
    mac_ = mac.value();
  }

  void TearDown() override {
    if (catcher_ >= 0) ::close(catcher_);
    announcer_.reset();
    a_.reset();
    b_.reset();
  }

  static bool ipv6_available() {
    struct stat info {};
    return ::stat("/proc/sys/net/ipv6", &info) == 0;
  }

  // Starts catching frames of `ethertype` on vb.
  void catch_on_b(std::uint16_t ethertype) {
    auto opened = b_->run([ethertype] {
      const int fd = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ethertype));
      sockaddr_ll local{};
      local.sll_family = AF_PACKET;
      local.sll_protocol = htons(ethertype);
      local.sll_ifindex = static_cast<int>(::if_nametoindex("vb"));
      if (fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
        ::close(fd);
        return -1;
      }
      return fd;
    });
    ASSERT_TRUE(opened && *opened >= 0) << "cannot open a packet socket in " << b_->name();
    catcher_ = *opened;
  }

  // The first caught frame that `matches`, within a deadline.
  std::optional<Caught> wait_for_frame(const std::function<bool(const Caught&)>& matches) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd ready{catcher_, POLLIN, 0};
      if (::poll(&ready, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 1))) <= 0) {
        continue;
      }
      Caught frame;
      frame.payload.resize(2048);
      sockaddr_ll from{};
      socklen_t from_size = sizeof from;
      const ssize_t got = ::recvfrom(catcher_, frame.payload.data(), frame.payload.size(), 0,
                                     reinterpret_cast<sockaddr*>(&from), &from_size);
      if (got < 0) continue;
      frame.payload.resize(static_cast<std::size_t>(got));
      frame.packet_type = from.sll_pkttype;
      std::memcpy(frame.source.bytes.data(), from.sll_addr, frame.source.bytes.size());
      if (matches(frame)) return frame;
    }
    return std::nullopt;
  }

  // The link-layer address B's neighbour table holds for `address` on vb, if any.
  std::string neighbour_mac_on_b(const std::string& address) {
    const auto text = b_->ip_output({"-j", "neigh", "show", "dev", "vb"});
    try {
      for (const auto& entry : nlohmann::json::parse(text)) {
        if (entry.value("dst", "") == address) return entry.value("lladdr", "");
      }
    } catch (const std::exception& error) {
      ADD_FAILURE() << "cannot read `ip -j neigh`: " << error.what();
    }
    return {};
  }

  // IPv6 on vb comes up only once the kernel's link watcher has seen the carrier (asynchronous,
  // up to a second after `ip link set up`); until then B drops IPv6 for want of a route. The
  // link-local address appears at that moment.
  bool wait_for_ipv6_on_b() {
    return testing::wait_until([this] {
      return b_->ip_output({"-6", "addr", "show", "dev", "vb"}).find("fe80::") != std::string::npos;
    });
  }

  std::string vb_mac() {
    const auto text = b_->ip_output({"-j", "link", "show", "dev", "vb"});
    return nlohmann::json::parse(text).at(0).at("address").get<std::string>();
  }

  std::unique_ptr<testing::TestNamespace> a_;
  std::unique_ptr<testing::TestNamespace> b_;
  std::unique_ptr<AddressAnnouncer> announcer_;
  MacAddress mac_;
  int catcher_ = -1;
};

bool is_arp(const Caught& frame, std::uint16_t operation, const std::string& sender,
            const std::string& target) {
  if (frame.payload.size() < 28) return false;
  const auto& p = frame.payload;
  const auto ip = [&p](std::size_t at) {
    return std::to_string(p[at]) + "." + std::to_string(p[at + 1]) + "." +
           std::to_string(p[at + 2]) + "." + std::to_string(p[at + 3]);
  };
  return ((p[6] << 8) | p[7]) == operation && ip(14) == sender && ip(24) == target;
}

TEST_F(AddressAnnouncerTest, GratuitousArpReachesTheLinkAndUpdatesNeighbours) {
  catch_on_b(ETH_P_ARP);
  // B has a stale idea of where 198.18.77.10 lives; the announcement must correct it.
  ASSERT_TRUE(b_->ip({"neigh", "replace", "198.18.77.10", "lladdr", to_string(kOtherMac), "dev",
                      "vb", "nud", "stale"}));
  auto sent = announcer_->announce(asio::ip::make_address("198.18.77.10"));
  ASSERT_TRUE(sent.ok()) << sent.error().message;

  const auto frame =
      wait_for_frame([](const Caught& f) { return is_arp(f, 1, "198.18.77.10", "198.18.77.10"); });
  ASSERT_TRUE(frame) << "no gratuitous ARP arrived on vb";
  EXPECT_EQ(frame->packet_type, PACKET_BROADCAST);
  EXPECT_EQ(frame->source, mac_);
  EXPECT_EQ(std::vector<std::uint8_t>(frame->payload.begin() + 8, frame->payload.begin() + 14),
            std::vector<std::uint8_t>(mac_.bytes.begin(), mac_.bytes.end()));
  EXPECT_TRUE(testing::wait_until([&] {
    return neighbour_mac_on_b("198.18.77.10") == to_string(mac_);
  })) << neighbour_mac_on_b("198.18.77.10");
}

TEST_F(AddressAnnouncerTest, DirectedArpIsAUnicastReplyOrARequestToThePeer) {
  catch_on_b(ETH_P_ARP);
  const auto vip = asio::ip::make_address("198.18.77.11");
  const auto peer = asio::ip::make_address("198.18.77.2");
  MacAddress peer_mac;
  const std::string peer_text = vb_mac();
  ASSERT_EQ(std::sscanf(peer_text.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &peer_mac.bytes[0],
                        &peer_mac.bytes[1], &peer_mac.bytes[2], &peer_mac.bytes[3],
                        &peer_mac.bytes[4], &peer_mac.bytes[5]),
            6);

  ASSERT_TRUE(announcer_->announce_to(vip, peer, peer_mac).ok());
  const auto reply =
      wait_for_frame([](const Caught& f) { return is_arp(f, 2, "198.18.77.11", "198.18.77.2"); });
  ASSERT_TRUE(reply) << "no unicast ARP reply arrived on vb";
  EXPECT_EQ(reply->packet_type, PACKET_HOST);

  // Without the peer's MAC: a broadcast request for the peer's own address, which it learns from.
  ASSERT_TRUE(announcer_->announce_to(asio::ip::make_address("198.18.77.12"), peer).ok());
  const auto request =
      wait_for_frame([](const Caught& f) { return is_arp(f, 1, "198.18.77.12", "198.18.77.2"); });
  ASSERT_TRUE(request) << "no directed ARP request arrived on vb";
  EXPECT_EQ(request->packet_type, PACKET_BROADCAST);
  EXPECT_TRUE(testing::wait_until([&] {
    return neighbour_mac_on_b("198.18.77.12") == to_string(mac_);
  })) << neighbour_mac_on_b("198.18.77.12");

  EXPECT_FALSE(announcer_->announce_to(vip, asio::ip::make_address("fd4b::1")).ok());
}

bool is_advertisement(const Caught& frame, const asio::ip::address_v6& target) {
  const auto& p = frame.payload;
  if (p.size() < 72 || p[6] != 58 || p[40] != 136) return false;
  asio::ip::address_v6::bytes_type bytes;
  std::copy(p.begin() + 48, p.begin() + 64, bytes.begin());
  return asio::ip::address_v6(bytes) == target;
}

TEST_F(AddressAnnouncerTest, UnsolicitedNeighbourAdvertisementUpdatesNeighbours) {
  if (!ipv6_available()) GTEST_SKIP() << "this kernel has no IPv6";
  ASSERT_TRUE(wait_for_ipv6_on_b());
  catch_on_b(ETH_P_IPV6);
  const auto vip = asio::ip::make_address_v6("2001:2:0:6b::10");
  ASSERT_TRUE(b_->ip({"neigh", "replace", vip.to_string(), "lladdr", to_string(kOtherMac), "dev",
                      "vb", "nud", "stale"}));
  auto sent = announcer_->announce(vip);
  ASSERT_TRUE(sent.ok()) << sent.error().message;

  const auto frame = wait_for_frame([&](const Caught& f) { return is_advertisement(f, vip); });
  ASSERT_TRUE(frame) << "no neighbour advertisement arrived on vb";
  EXPECT_EQ(frame->packet_type, PACKET_MULTICAST);
  EXPECT_EQ(frame->payload[7], 255);  // hop limit
  asio::ip::address_v6::bytes_type destination;
  std::copy(frame->payload.begin() + 24, frame->payload.begin() + 40, destination.begin());
  EXPECT_EQ(asio::ip::address_v6(destination).to_string(), "ff02::1");
  // B's kernel validated it (hop limit, checksum, options) and took the override.
  EXPECT_TRUE(testing::wait_until([&] {
    return neighbour_mac_on_b(vip.to_string()) == to_string(mac_);
  })) << neighbour_mac_on_b(vip.to_string());
}

TEST_F(AddressAnnouncerTest, DirectedAdvertisementGoesToThePeersSolicitedNodeGroup) {
  if (!ipv6_available()) GTEST_SKIP() << "this kernel has no IPv6";
  ASSERT_TRUE(b_->ip({"addr", "add", "2001:2:0:6b::2/64", "dev", "vb", "nodad"}));
  ASSERT_TRUE(wait_for_ipv6_on_b());
  catch_on_b(ETH_P_IPV6);
  const auto vip = asio::ip::make_address_v6("2001:2:0:6b::11");
  ASSERT_TRUE(b_->ip({"neigh", "replace", vip.to_string(), "lladdr", to_string(kOtherMac), "dev",
                      "vb", "nud", "stale"}));
  ASSERT_TRUE(announcer_->announce_to(vip, asio::ip::make_address("2001:2:0:6b::2")).ok());
  const auto frame = wait_for_frame([&](const Caught& f) { return is_advertisement(f, vip); });
  ASSERT_TRUE(frame) << "no neighbour advertisement arrived on vb";
  asio::ip::address_v6::bytes_type destination;
  std::copy(frame->payload.begin() + 24, frame->payload.begin() + 40, destination.begin());
  EXPECT_EQ(asio::ip::address_v6(destination).to_string(), "ff02::1:ff00:2");
  EXPECT_TRUE(testing::wait_until([&] {
    return neighbour_mac_on_b(vip.to_string()) == to_string(mac_);
  })) << neighbour_mac_on_b(vip.to_string());
}

// An interface deleted and made again under the same name has a new index; the announcer, opened
// on the old one, follows the name.
TEST_F(AddressAnnouncerTest, FollowsTheInterfaceWhenItIsMadeAgain) {
  const int before = announcer_->interface_index();
  ASSERT_TRUE(a_->ip({"link", "del", "va"}));
  ASSERT_TRUE(
      a_->ip({"link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b_->name()}));
  ASSERT_TRUE(a_->ip({"addr", "add", "198.18.77.1/24", "dev", "va"}));
  ASSERT_TRUE(a_->ip({"link", "set", "va", "up"}));
  ASSERT_TRUE(b_->ip({"link", "set", "vb", "up"}));
  catch_on_b(ETH_P_ARP);
  auto sent = announcer_->announce(asio::ip::make_address("198.18.77.13"));
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  EXPECT_NE(announcer_->interface_index(), before);
  const auto frame =
      wait_for_frame([](const Caught& f) { return is_arp(f, 1, "198.18.77.13", "198.18.77.13"); });
  ASSERT_TRUE(frame) << "no gratuitous ARP arrived on the new vb";
  auto mac = announcer_->hardware_address();
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(frame->source, mac.value());  // the new interface's MAC, not the old one's
}

TEST_F(AddressAnnouncerTest, ErrorsNameTheInterface) {
  auto missing = a_->run([] { return AddressAnnouncer::open("nosuch0"); });
  ASSERT_TRUE(missing);
  ASSERT_FALSE(missing->ok());
  EXPECT_NE(missing->error().message.find("nosuch0"), std::string::npos);
  auto loopback = a_->run([] { return AddressAnnouncer::open("lo"); });
  ASSERT_TRUE(loopback);
  ASSERT_FALSE(loopback->ok());
  EXPECT_NE(loopback->error().message.find("not Ethernet"), std::string::npos)
      << loopback->error().message;
  ASSERT_TRUE(a_->ip({"link", "set", "va", "down"}));
  auto down = announcer_->announce(asio::ip::make_address("198.18.77.10"));
  ASSERT_FALSE(down.ok());
  EXPECT_NE(down.error().message.find("va"), std::string::npos) << down.error().message;
}

}  // namespace
}  // namespace keel::io
