// Floating-IP addresses through rtnetlink (src/io/netlink_addresses.hpp): parsing without root;
// adding, listing, adopting and deleting in a private network namespace as root.
#include "io/netlink_addresses.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <algorithm>
#include <memory>

#include "netns_test_support.hpp"

namespace keel::io {
namespace {

IpPrefix prefix(const std::string& text) {
  auto parsed = parse_prefix(text);
  KEEL_ASSERT(parsed.ok());
  return parsed.value();
}

std::optional<InterfaceAddress> find(const std::vector<InterfaceAddress>& list,
                                     const std::string& address) {
  for (const auto& entry : list) {
    if (entry.prefix.address.to_string() == address) return entry;
  }
  return std::nullopt;
}

TEST(IpPrefix, ParsesAndPrints) {
  auto v4 = parse_prefix("198.18.0.10/24");
  ASSERT_TRUE(v4.ok());
  EXPECT_TRUE(v4.value().address.is_v4());
  EXPECT_EQ(v4.value().prefix_length, 24);
  EXPECT_EQ(to_string(v4.value()), "198.18.0.10/24");
  auto v6 = parse_prefix("2001:2:0:6b::10/64");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(to_string(v6.value()), "2001:2:0:6b::10/64");
  EXPECT_TRUE(parse_prefix("2001:2::1/128").ok());
}

TEST(IpPrefix, RefusesBadText) {
  for (const char* bad : {"198.18.0.10", "198.18.0.10/33", "198.18.0.10/", "198.18.0.10/2x",
                          "host/24", "2001:2::1/129", "/24", "198.18.0.10/-1"}) {
    EXPECT_FALSE(parse_prefix(bad).ok()) << bad;
  }
}

bool kernel_at_least(int major, int minor) {
  utsname name{};
  if (::uname(&name) != 0) return false;
  return kernel_release_at_least(name.release, major, minor);
}

TEST(KernelRelease, ComparesMajorThenMinor) {
  EXPECT_TRUE(kernel_release_at_least("6.1.0-18-amd64", 6, 1));
  EXPECT_TRUE(kernel_release_at_least("6.18.44-fc-v782", 6, 1));  // 18 > 1, not "1" < "18"
  EXPECT_TRUE(kernel_release_at_least("7.0", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("6.0.12", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("5.19.0", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("5.10.0-28-amd64", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("garbage", 6, 1));
  EXPECT_FALSE(kernel_release_at_least("6", 6, 1));
}

// One namespace with a veth pair (v0, v1), both up, and a NetlinkAddresses opened inside it.
class NetlinkAddressesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = testing::netns_unavailable_reason()) GTEST_SKIP() << *reason;
    netns_ = std::make_unique<testing::TestNamespace>(testing::unique_prefix() + "-a");
    ASSERT_TRUE(netns_->created());
    ASSERT_TRUE(netns_->ip({"link", "add", "v0", "type", "veth", "peer", "name", "v1"}));
    ASSERT_TRUE(netns_->ip({"link", "set", "v0", "up"}));
    ASSERT_TRUE(netns_->ip({"link", "set", "v1", "up"}));
    auto opened = netns_->run([] { return NetlinkAddresses::open(); });
    ASSERT_TRUE(opened);
    ASSERT_TRUE(opened->ok()) << opened->error().message;
    netlink_ = std::move(opened->value());
  }

  void TearDown() override {
    netlink_.reset();  // the socket holds the namespace open
    netns_.reset();
  }

  static bool ipv6_available() {
    struct stat info {};
    return ::stat("/proc/sys/net/ipv6", &info) == 0;
  }

  std::vector<InterfaceAddress> list_v0() {
    auto listed = netlink_->list("v0");
    EXPECT_TRUE(listed.ok()) << (listed.ok() ? "" : listed.error().message);
    return listed.ok() ? listed.value() : std::vector<InterfaceAddress>{};
  }

  std::unique_ptr<testing::TestNamespace> netns_;
  std::unique_ptr<NetlinkAddresses> netlink_;
};

TEST_F(NetlinkAddressesTest, AddsListsAndDeletesAMarkedIpv4Address) {
  auto added = netlink_->add("v0", prefix("198.18.77.10/24"));
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ(added.value(), AddOutcome::kAdded);

  const auto entry = find(list_v0(), "198.18.77.10");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->prefix.prefix_length, 24);
  EXPECT_TRUE(entry->keel_owned());
  EXPECT_EQ(entry->protocol, kKeelAddressProtocol);
  // ip(8) sees it too: the change is real, not an artefact of our own parsing.
  EXPECT_NE(netns_->ip_output({"-4", "addr", "show", "dev", "v0"}).find("198.18.77.10/24"),
            std::string::npos);

  auto removed = netlink_->remove("v0", prefix("198.18.77.10/24"));
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), DeleteOutcome::kDeleted);
  EXPECT_FALSE(find(list_v0(), "198.18.77.10"));
}

TEST_F(NetlinkAddressesTest, AddsAMarkedIpv6AddressUsableAtOnce) {
  if (!ipv6_available()) GTEST_SKIP() << "this kernel has no IPv6";
  auto added = netlink_->add("v0", prefix("2001:2:0:6b::10/64"));
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ(added.value(), AddOutcome::kAdded);

  const auto entry = find(list_v0(), "2001:2:0:6b::10");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->prefix.prefix_length, 64);
  EXPECT_TRUE(entry->keel_owned());
  EXPECT_TRUE(entry->flags & IFA_F_NODAD);
  EXPECT_FALSE(entry->flags & IFA_F_TENTATIVE);  // no DAD: usable now, not in a second

  auto removed = netlink_->remove("v0", prefix("2001:2:0:6b::10/64"));
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(removed.value(), DeleteOutcome::kDeleted);
  EXPECT_FALSE(find(list_v0(), "2001:2:0:6b::10"));
}

// A floating IPv6 address must not become the source of this host's own traffic: it may move to
// another host at any moment. Added deprecated (preferred lifetime 0), it loses source selection
// to the host's own address even where it matches the destination better (RFC 6724 rule 3 before
// rule 8), and still takes connections.
TEST_F(NetlinkAddressesTest, AFloatingIpv6AddressIsNeverTheSourceOfThisHostsTraffic) {
  if (!ipv6_available()) GTEST_SKIP() << "this kernel has no IPv6";
  ASSERT_TRUE(netns_->ip({"addr", "add", "2001:2:0:6b::1/64", "dev", "v0", "nodad"}));
  auto added = netlink_->add("v0", prefix("2001:2:0:6b::10/64"));
  ASSERT_TRUE(added.ok()) << added.error().message;
  const auto entry = find(list_v0(), "2001:2:0:6b::10");
  ASSERT_TRUE(entry);
  EXPECT_TRUE(entry->flags & IFA_F_DEPRECATED);
  EXPECT_TRUE(entry->flags & IFA_F_PERMANENT);  // valid for ever: it stays until keel deletes it

  // ::11 shares 127 bits with the floating ::10 and only 123 with the host's ::1.
  auto source = netns_->run([]() -> std::string {
    const int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(9);
    ::inet_pton(AF_INET6, "2001:2:0:6b::11", &to.sin6_addr);
    sockaddr_in6 local{};
    socklen_t size = sizeof local;
    std::string text = "(no source)";
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) == 0) {
      char buffer[INET6_ADDRSTRLEN] = {};
      text = ::inet_ntop(AF_INET6, &local.sin6_addr, buffer, sizeof buffer);
    }
    if (fd >= 0) ::close(fd);
    return text;
  });
  ASSERT_TRUE(source);
  EXPECT_EQ(*source, "2001:2:0:6b::1");

  // Deprecated is not unusable: a listener on the floating address is reached (through lo).
  ASSERT_TRUE(netns_->ip({"link", "set", "lo", "up"}));
  auto reached = netns_->run([]() -> bool {
    const int server = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int client = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 at{};
    at.sin6_family = AF_INET6;
    at.sin6_port = htons(4242);
    ::inet_pton(AF_INET6, "2001:2:0:6b::10", &at.sin6_addr);
    const char byte = 'k';
    char got = 0;
    timeval timeout{1, 0};
    ::setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    const bool ok =
        ::bind(server, reinterpret_cast<const sockaddr*>(&at), sizeof at) == 0 &&
        ::sendto(client, &byte, 1, 0, reinterpret_cast<const sockaddr*>(&at), sizeof at) == 1 &&
        ::recv(server, &got, 1, 0) == 1 && got == byte;
    ::close(server);
    ::close(client);
    return ok;
  });
  ASSERT_TRUE(reached);
  EXPECT_TRUE(*reached);
}

TEST_F(NetlinkAddressesTest, OnlyMarkedAddressesReadAsKeels) {
  ASSERT_TRUE(netns_->ip({"addr", "add", "198.18.77.20/24", "dev", "v0"}));
  ASSERT_TRUE(netlink_->add("v0", prefix("198.18.77.21/24")).ok());
  if (ipv6_available()) {
    ASSERT_TRUE(netns_->ip({"addr", "add", "2001:2:0:6b::20/64", "dev", "v0", "nodad"}));
    ASSERT_TRUE(netlink_->add("v0", prefix("2001:2:0:6b::21/64")).ok());
  }

  // What an agent restarting here would find: its own addresses, and someone else's.
  const auto listed = list_v0();
  ASSERT_TRUE(find(listed, "198.18.77.20"));
  ASSERT_TRUE(find(listed, "198.18.77.21"));
  EXPECT_FALSE(find(listed, "198.18.77.20")->keel_owned());
  EXPECT_TRUE(find(listed, "198.18.77.21")->keel_owned());
  if (ipv6_available()) {
    ASSERT_TRUE(find(listed, "2001:2:0:6b::20"));
    ASSERT_TRUE(find(listed, "2001:2:0:6b::21"));
    EXPECT_FALSE(find(listed, "2001:2:0:6b::20")->keel_owned());
    EXPECT_TRUE(find(listed, "2001:2:0:6b::21")->keel_owned());
  }
  const auto ours = std::count_if(listed.begin(), listed.end(),
                                  [](const InterfaceAddress& entry) { return entry.keel_owned(); });
  EXPECT_EQ(ours, ipv6_available() ? 2 : 1);  // link-local addresses are the kernel's
}

TEST_F(NetlinkAddressesTest, AddAndDeleteAreIdempotent) {
  std::vector<std::string> addresses = {"198.18.77.30/24"};
  if (ipv6_available()) addresses.push_back("2001:2:0:6b::30/64");
  for (const auto& text : addresses) {
    auto first = netlink_->add("v0", prefix(text));
    auto second = netlink_->add("v0", prefix(text));
    ASSERT_TRUE(first.ok() && second.ok()) << text;
    EXPECT_EQ(first.value(), AddOutcome::kAdded) << text;
    EXPECT_EQ(second.value(), AddOutcome::kAlreadyPresent) << text;

    auto gone = netlink_->remove("v0", prefix(text));
    auto again = netlink_->remove("v0", prefix(text));
    ASSERT_TRUE(gone.ok() && again.ok()) << text;
    EXPECT_EQ(gone.value(), DeleteOutcome::kDeleted) << text;
    EXPECT_EQ(again.value(), DeleteOutcome::kAlreadyGone) << text;
  }
}

TEST_F(NetlinkAddressesTest, AnUnknownInterfaceIsAClearError) {
  auto added = netlink_->add("nosuch0", prefix("198.18.77.40/24"));
  ASSERT_FALSE(added.ok());
  EXPECT_NE(added.error().message.find("nosuch0"), std::string::npos) << added.error().message;
  EXPECT_NE(added.error().message.find("no such interface"), std::string::npos)
      << added.error().message;
  EXPECT_FALSE(netlink_->list("nosuch0").ok());
  EXPECT_FALSE(netlink_->remove("nosuch0", prefix("198.18.77.40/24")).ok());
  EXPECT_FALSE(netlink_->interface_index("").ok());
  EXPECT_FALSE(netlink_->interface_index("a-name-longer-than-fifteen").ok());

  auto by_index = netlink_->add(987654, prefix("198.18.77.40/24"));
  ASSERT_FALSE(by_index.ok());
  EXPECT_NE(by_index.error().message.find("no such interface"), std::string::npos)
      << by_index.error().message;
}

TEST_F(NetlinkAddressesTest, ResolvesNamesInItsOwnNamespace) {
  // The test thread is in the root namespace, where v0 does not exist; the socket is not.
  auto index = netlink_->interface_index("v0");
  ASSERT_TRUE(index.ok()) << index.error().message;
  EXPECT_GT(index.value(), 0);
  auto loopback = netlink_->interface_index("lo");
  ASSERT_TRUE(loopback.ok());
  EXPECT_EQ(loopback.value(), 1);
  auto name = netlink_->interface_name(index.value());
  ASSERT_TRUE(name.ok()) << name.error().message;
  EXPECT_EQ(name.value(), "v0");
  EXPECT_FALSE(netlink_->interface_name(987654).ok());
}

// What a restarting agent looks through for its leftovers: every interface's addresses at once.
TEST_F(NetlinkAddressesTest, ListsTheAddressesOfEveryInterface) {
  ASSERT_TRUE(netlink_->add("v0", prefix("198.18.77.60/24")).ok());
  ASSERT_TRUE(netns_->ip({"addr", "add", "198.18.79.60/24", "dev", "v1"}));
  auto v0 = netlink_->interface_index("v0");
  auto v1 = netlink_->interface_index("v1");
  ASSERT_TRUE(v0.ok() && v1.ok());
  auto listed = netlink_->list_all();
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  const auto on = [&](const std::string& address, int index) {
    return std::any_of(listed.value().begin(), listed.value().end(), [&](const auto& entry) {
      return entry.prefix.address.to_string() == address && entry.interface_index == index;
    });
  };
  EXPECT_TRUE(on("198.18.77.60", v0.value()));
  EXPECT_TRUE(on("198.18.79.60", v1.value()));
}

TEST_F(NetlinkAddressesTest, TheMarkRoundTripsOnThisKernel) {
  auto index = netlink_->interface_index("v0");
  ASSERT_TRUE(index.ok());
  auto supported = netlink_->mark_supported(index.value(), prefix("198.18.77.50/32"));
  ASSERT_TRUE(supported.ok()) << supported.error().message;
  EXPECT_EQ(supported.value(), kernel_at_least(6, 1));
  EXPECT_FALSE(find(list_v0(), "198.18.77.50"));  // the probe is gone again
}

}  // namespace
}  // namespace keel::io
