// Tests for the [vip] section of parse_config(): a full pool lands in the right fields, and each
// kind of mistake is reported with the line to fix.
#include "config/vip_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <string>

#include "config/config.hpp"

namespace keel::config {
namespace {

using ::testing::HasSubstr;

// Three nodes on lines 1-17; a test's [vip] text starts on line 18.
std::string with_vip(const std::string& vip) {
  return "[cluster]\n"                 // 1
         "name = \"site\"\n"           // 2
         "[[node]]\n"                  // 3
         "id = 1\n"                    // 4
         "name = \"fe1\"\n"            // 5
         "address = \"198.18.0.1\"\n"  // 6
         "[[node]]\n"                  // 7
         "id = 2\n"                    // 8
         "name = \"fe2\"\n"            // 9
         "address = \"198.18.0.2\"\n"  // 10
         "[[node]]\n"                  // 11
         "id = 3\n"                    // 12
         "name = \"fe3\"\n"            // 13
         "address = \"198.18.0.3\"\n"  // 14
         "\n"                          // 15
         "\n"                          // 16
         "\n" +                        // 17
         vip;
}

std::string vip_error_of(const std::string& vip) {
  auto parsed = parse_config(with_vip(vip), "keel.toml");
  return parsed.ok() ? "(parsed without error)" : parsed.error().message;
}

const char* const kWebPool =
    "[[vip.pool]]\n"                                         // 18
    "name = \"web\"\n"                                       // 19
    "addresses = [\"198.18.0.100/24\", \"2001:2::a/64\"]\n"  // 20
    "interface = \"eth0\"\n";                                // 21

TEST(VipConfig, FullPoolIsRead) {
  auto parsed =
      parse_config(with_vip(std::string("[vip]\nsettle_ms = 250\nhandover_ms = 0\n") + kWebPool +
                            "nodes = [\"fe2\", \"fe1\"]\n"
                            "announce_count = 5\n"
                            "announce_interval_ms = 50\n"
                            "notify = [\"198.18.0.254\"]\n"
                            "on_acquire = \"/bin/true acquire\"\n"
                            "[vip.pool.prefer]\n"
                            "\"198.18.0.100/24\" = \"fe2\"\n"
                            "[vip.pool.weights]\n"
                            "fe1 = 3\n"
                            "[vip.pool.interfaces]\n"
                            "fe2 = \"ens4\"\n"
                            "[vip.pool.health]\n"
                            "kind = \"http\"\n"
                            "port = 8080\n"
                            "path = \"/ok\"\n"
                            "rise = 1\n"),
                   "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const VipConfig& vip = parsed.value().vip;
  EXPECT_EQ(vip.settle_ms, 250u);
  EXPECT_EQ(vip.handover_ms, 0u);
  ASSERT_EQ(vip.pools.size(), 1u);
  const VipPoolConfig& pool = vip.pools[0];
  EXPECT_EQ(pool.name, "web");
  ASSERT_EQ(pool.addresses.size(), 2u);
  EXPECT_EQ(pool.addresses[0].text, "198.18.0.100/24");
  EXPECT_EQ(pool.addresses[1].text, "2001:2::a/64");
  EXPECT_EQ(pool.nodes, (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(pool.interface_for(1), "eth0");
  EXPECT_EQ(pool.interface_for(2), "ens4");
  EXPECT_EQ(pool.announce_count, 5u);
  EXPECT_EQ(pool.announce_interval_ms, 50u);
  EXPECT_EQ(pool.notify, (std::vector<std::string>{"198.18.0.254"}));
  EXPECT_EQ(pool.preferred.at("198.18.0.100/24"), 2u);
  EXPECT_EQ(pool.weights.at(1), 3u);
  ASSERT_TRUE(pool.health.has_value());
  EXPECT_EQ(pool.health->kind, io::HealthCheckKind::kHttp);
  EXPECT_EQ(pool.health->host, "127.0.0.1");
  EXPECT_EQ(pool.health->port, 8080);
  EXPECT_EQ(pool.health->path, "/ok");
  EXPECT_EQ(pool.health->rise, 1u);

  const vip::VipConfig core = core_vip_config(vip);
  EXPECT_EQ(core.settle_us, 250'000);
  ASSERT_EQ(core.pools.size(), 1u);
  EXPECT_EQ(core.pools[0].addresses, (std::vector<std::string>{"198.18.0.100/24", "2001:2::a/64"}));
}

TEST(VipConfig, PoolWithoutNodesMayUseEveryNode) {
  auto parsed = parse_config(with_vip(kWebPool), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().vip.pools[0].nodes, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_FALSE(parsed.value().vip.pools[0].health.has_value());
}

TEST(VipConfig, AddressesAreCanonical) {
  auto address = parse_vip_address("2001:0002:0::0A/64");
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->text, "2001:2::a/64");
  EXPECT_FALSE(parse_vip_address("198.18.0.100").has_value());
  EXPECT_FALSE(parse_vip_address("198.18.0.100/33").has_value());
  EXPECT_FALSE(parse_vip_address("198.18.0.100/0").has_value());
  EXPECT_FALSE(parse_vip_address("198.18.0.100/24x").has_value());
  EXPECT_FALSE(parse_vip_address("web/24").has_value());
}

TEST(VipConfig, OverlappingPoolsAreRefused) {
  EXPECT_EQ(vip_error_of(std::string(kWebPool) + "[[vip.pool]]\n"                       // 22
                                                 "name = \"api\"\n"                     // 23
                                                 "addresses = [\"198.18.0.100/25\"]\n"  // 24
                                                 "interface = \"eth0\"\n"),             // 25
            "keel.toml:24: [[vip.pool]] \"api\": address 198.18.0.100/25 is also in [[vip.pool]] "
            "\"web\" (line 18); pools must not overlap");
}

TEST(VipConfig, DuplicatePoolNamesAreRefused) {
  EXPECT_THAT(vip_error_of(std::string(kWebPool) +
                           "[[vip.pool]]\nname = \"web\"\naddresses = [\"198.18.0.101/24\"]\n"
                           "interface = \"eth0\"\n"),
              HasSubstr("keel.toml:22: [[vip.pool]] \"web\": another pool has this name"));
}

TEST(VipConfig, UnknownNodeGetsASuggestion) {
  EXPECT_THAT(vip_error_of(std::string(kWebPool) + "nodes = [\"fe1\", \"fe22\"]\n"),
              HasSubstr("keel.toml:22: [[vip.pool]] \"web\": no node is named \"fe22\" (did you "
                        "mean fe2?)"));
}

TEST(VipConfig, BadAddressIsNamed) {
  EXPECT_THAT(vip_error_of("[[vip.pool]]\nname = \"web\"\naddresses = [\"198.18.0.100\"]\n"
                           "interface = \"eth0\"\n"),
              HasSubstr("keel.toml:20: [[vip.pool]] \"web\": \"198.18.0.100\" is not an IPv4 or "
                        "IPv6 address with a prefix length"));
}

TEST(VipConfig, NodeAddressCannotFloat) {
  EXPECT_THAT(vip_error_of("[[vip.pool]]\nname = \"web\"\naddresses = [\"198.18.0.2/24\"]\n"
                           "interface = \"eth0\"\n"),
              HasSubstr("keel.toml:20: [[vip.pool]] \"web\": address 198.18.0.2/24 is node "
                        "\"fe2\"'s own address"));
}

TEST(VipConfig, PreferenceMustNameAPoolNodeAndAddress) {
  EXPECT_THAT(vip_error_of(std::string(kWebPool) + "nodes = [\"fe1\"]\n[vip.pool.prefer]\n"
                                                   "\"198.18.0.100/24\" = \"fe2\"\n"),
              HasSubstr("keel.toml:24: [[vip.pool]] \"web\" prefer: node \"fe2\" is not one of "
                        "the pool's nodes"));
  EXPECT_THAT(
      vip_error_of(std::string(kWebPool) + "[vip.pool.prefer]\n\"198.18.0.7/24\" = \"fe2\"\n"),
      HasSubstr("keel.toml:23: [[vip.pool]] \"web\" prefer: \"198.18.0.7/24\" is not one "
                "of the pool's addresses"));
}

TEST(VipConfig, HealthCheckProblemsAreNamed) {
  EXPECT_THAT(vip_error_of(std::string(kWebPool) + "[vip.pool.health]\nkind = \"ping\"\n"),
              HasSubstr("keel.toml:23: [[vip.pool]] \"web\" health: kind \"ping\" is not one of "
                        "http, tcp, exec"));
  EXPECT_THAT(vip_error_of(std::string(kWebPool) + "[vip.pool.health]\nkind = \"exec\"\n"
                                                   "command = \"test -e '/run/ready\"\n"),
              HasSubstr("keel.toml:24: [[vip.pool]] \"web\" health: command:"));
  EXPECT_THAT(
      vip_error_of(std::string(kWebPool) + "[vip.pool.health]\nkind = \"tcp\"\nprot = 80\n"),
      HasSubstr("keel.toml:24: unknown key 'prot' in [vip.pool.health] (did you mean "
                "port?)"));
}

TEST(VipConfig, ControlCharactersInSubTablesAreRefused) {
  EXPECT_EQ(
      vip_error_of(std::string(kWebPool) + "[vip.pool.interfaces]\nfe2 = \"eth\\u00011\"\n"),
      "keel.toml:23: [[vip.pool]] \"web\" interfaces fe2 must not contain control characters");
  EXPECT_EQ(vip_error_of(std::string(kWebPool) +
                         "[vip.pool.prefer]\n\"198.18.0.100/24\" = \"fe2\\u001b\"\n"),
            "keel.toml:23: [[vip.pool]] \"web\" prefer 198.18.0.100/24 must not contain control "
            "characters");
}

TEST(VipConfig, MissingInterfaceIsReported) {
  EXPECT_EQ(vip_error_of("[[vip.pool]]\nname = \"web\"\naddresses = [\"198.18.0.100/24\"]\n"),
            "keel.toml:18: [[vip.pool]] \"web\" has no interface; add interface = \"eth0\"");
}

TEST(VipConfig, HandoverPeriodHasADefaultAndARange) {
  auto parsed = parse_config(with_vip(kWebPool), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().vip.handover_ms, 1000u);
  const std::string error = vip_error_of(std::string("[vip]\nhandover_ms = 700000\n") + kWebPool);
  EXPECT_NE(error.find("handover_ms"), std::string::npos) << error;
  EXPECT_NE(error.find("keel.toml:"), std::string::npos) << error;
}

TEST(VipConfig, MisspeltPoolKeyGetsASuggestion) {
  EXPECT_EQ(vip_error_of(std::string(kWebPool) + "adresses = []\n"),
            "keel.toml:22: unknown key 'adresses' in [[vip.pool]] (did you mean addresses?)");
}

// A pool of `count` addresses 10.a.b.c/8 numbered from `first`, one per line: entry k (from 0)
// is on line h + 4 + k, where h is the pool's [[vip.pool]] line.
std::string big_pool(const std::string& name, int count, int first = 1) {
  std::string text = "[[vip.pool]]\nname = \"" + name + "\"\ninterface = \"eth0\"\naddresses = [\n";
  for (int i = first; i < first + count; ++i) {
    text += "\"10." + std::to_string(i >> 16 & 0xff) + "." + std::to_string(i >> 8 & 0xff) + "." +
            std::to_string(i & 0xff) + "/8\",\n";
  }
  return text + "]\n";
}

TEST(VipConfig, AtMostTheCoreLimitOfAddressesInAllPools) {
  auto parsed =
      parse_config(with_vip(big_pool("web", static_cast<int>(vip::kMaxAddresses))), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_FALSE(vip::validate_vip_config(core_vip_config(parsed.value().vip)).has_value());
  // The pool starts on line 18, its first address on line 22: entry 4096 (from 0) on 4118.
  EXPECT_EQ(vip_error_of(big_pool("web", static_cast<int>(vip::kMaxAddresses) + 1)),
            "keel.toml:4118: [[vip.pool]] \"web\": address 10.0.16.1/8 is floating address "
            "4097; all pools together may hold at most 4096");
  // Over two pools: the second starts on line 4023, its first address on 4027.
  EXPECT_EQ(vip_error_of(big_pool("web", 4000) + big_pool("api", 97, 5000)),
            "keel.toml:4123: [[vip.pool]] \"api\": address 10.0.19.232/8 is floating address "
            "4097; all pools together may hold at most 4096");
}

TEST(VipConfig, ManyAddressesAreCheckedForDuplicatesQuickly) {
  // The duplicate check once compared every pair: 64,001 addresses took seconds.
  const auto start = std::chrono::steady_clock::now();
  const std::string error = vip_error_of(big_pool("web", 64'001));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(error, HasSubstr("all pools together may hold at most 4096"));
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(VipConfig, DuplicateAddressInOnePoolIsRefused) {
  EXPECT_EQ(vip_error_of("[[vip.pool]]\nname = \"web\"\n"
                         "addresses = [\"198.18.0.100/24\", \"198.18.0.101/24\", "
                         "\"198.18.0.100/25\"]\ninterface = \"eth0\"\n"),
            "keel.toml:20: [[vip.pool]] \"web\": address 198.18.0.100/25 is listed twice");
}

// A pool "web" whose addresses are written one per line: 198.18.0.100/24 on line 22, then
// `address` on line 23.
std::string pool_with_address_on_line_23(const std::string& address) {
  const std::string line_23 = "  \"" + address + "\",\n";
  return "[[vip.pool]]\n"              // 18
         "name = \"web\"\n"            // 19
         "interface = \"eth0\"\n"      // 20
         "addresses = [\n"             // 21
         "  \"198.18.0.100/24\",\n" +  // 22
         line_23 +
         "]\n";
}

// A problem with one address of an array written over several lines names that address's line,
// not the line the array starts on.
TEST(VipConfig, AnAddressIsNamedAtItsOwnLine) {
  EXPECT_THAT(vip_error_of(pool_with_address_on_line_23("198.18.0.101")),
              HasSubstr("keel.toml:23: [[vip.pool]] \"web\": \"198.18.0.101\" is not an IPv4 or "
                        "IPv6 address with a prefix length"));
  EXPECT_EQ(vip_error_of(pool_with_address_on_line_23("198.18.0.100/25")),
            "keel.toml:23: [[vip.pool]] \"web\": address 198.18.0.100/25 is listed twice");
  EXPECT_THAT(vip_error_of(pool_with_address_on_line_23("198.18.0.3/24")),
              HasSubstr("keel.toml:23: [[vip.pool]] \"web\": address 198.18.0.3/24 is node "
                        "\"fe3\"'s own address"));
}

struct UnusableAddress {
  const char* written;
  const char* message;  // after "keel.toml:23: [[vip.pool]] \"web\": address "
};

// Addresses no host may hold as its own, each refused with why.
const UnusableAddress kUnusableAddresses[] = {
    {"0.0.0.0/24", "0.0.0.0/24 is the unspecified address, which names no host"},
    {"0.1.2.3/8", "0.1.2.3/8 is in 0.0.0.0/8, which names no host"},
    {"224.0.0.5/24", "224.0.0.5/24 is a multicast address, which names a group, not a host"},
    {"255.255.255.255/32",
     "255.255.255.255/32 is the limited broadcast address, which names every host"},
    {"127.0.0.5/8", "127.0.0.5/8 is a loopback address, which no other host can reach"},
    {"10.0.0.0/24",
     "10.0.0.0/24 is the network address of its prefix, which names the subnet, not a host"},
    {"10.0.0.255/24",
     "10.0.0.255/24 is the broadcast address of its prefix, which names every host of the subnet"},
    {"10.0.0.127/25",
     "10.0.0.127/25 is the broadcast address of its prefix, which names every host of the subnet"},
    {"::/64", "::/64 is the unspecified address, which names no host"},
    {"ff02::1/64", "ff02::1/64 is a multicast address, which names a group, not a host"},
    {"::1/128", "::1/128 is the loopback address, which no other host can reach"},
    {"::ffff:10.0.0.1/120",
     "::ffff:10.0.0.1/120 is an IPv4-mapped IPv6 address; write the IPv4 address itself"},
    {"2001:db8::/64",
     "2001:db8::/64 is the subnet-router anycast address of its prefix (all host bits zero), "
     "which the prefix's routers answer"},
};

class UnusableAddressTest : public ::testing::TestWithParam<UnusableAddress> {};

TEST_P(UnusableAddressTest, IsRefusedAtItsLine) {
  EXPECT_EQ(vip_error_of(pool_with_address_on_line_23(GetParam().written)),
            std::string("keel.toml:23: [[vip.pool]] \"web\": address ") + GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(VipConfig, UnusableAddressTest, ::testing::ValuesIn(kUnusableAddresses),
                         [](const auto& test) {
                           std::string name;
                           for (const char c : std::string(test.param.written)) {
                             name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           }
                           return name;
                         });

// Every address of a /31 or /32 (IPv6: /127 or /128) is a host's: such a prefix has no network,
// broadcast or subnet-router anycast address. So are the first and last hosts of a wider prefix.
TEST(VipConfig, EdgeAddressesOfAPrefixMayFloat) {
  for (const char* address : {"10.0.0.0/31", "10.0.0.1/31", "10.0.0.0/32", "10.0.0.255/32",
                              "10.0.0.1/24", "10.0.0.254/24", "2001:db8::/127", "2001:db8::1/127",
                              "2001:db8::/128", "2001:db8::1/64", "fe80::10/64"}) {
    EXPECT_EQ(vip_error_of(pool_with_address_on_line_23(address)), "(parsed without error)")
        << address;
  }
}

TEST(VipConfig, TheRingsGroupCannotFloat) {
  EXPECT_EQ(vip_error_of("[transport]\n"                                             // 18
                         "mode = \"broadcast\"\n"                                    // 19
                         "group = \"198.18.0.255\"\n"                                // 20
                         "[[vip.pool]]\n"                                            // 21
                         "name = \"web\"\n"                                          // 22
                         "interface = \"eth0\"\n"                                    // 23
                         "addresses = [\"198.18.1.1/16\", \"198.18.0.255/16\"]\n"),  // 24
            "keel.toml:24: [[vip.pool]] \"web\": address 198.18.0.255/16 is the [transport] group "
            "the ring sends to; a floating address must be a separate one");
}

}  // namespace
}  // namespace keel::config
