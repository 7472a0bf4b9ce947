// Tests for [transport] mode, group and multicast_ttl in parse_config(): the modes land in the
// config, and each mistake (a bad mode, a group of the wrong kind or family, a node on another
// port) is reported with the file name and the line to fix. The multicast path of the transport
// is exercised only here and by review: the test machines may not send to multicast groups.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"

namespace keel::config {
namespace {

using test_support::base_with;
using test_support::error_of;
using test_support::lines;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(TransportModeConfig, UnicastIsTheDefault) {
  auto parsed = parse_config(base_with({}), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().transport.mode, TransportMode::unicast);
  EXPECT_EQ(parsed.value().transport.group, "");
  EXPECT_EQ(parsed.value().transport.multicast_ttl, 1);
  EXPECT_STREQ(to_string(TransportMode::unicast), "unicast");
  EXPECT_STREQ(to_string(TransportMode::broadcast), "broadcast");
}

TEST(TransportModeConfig, BroadcastTakesTheSubnetBroadcastAddress) {
  auto parsed = parse_config(
      base_with({"[transport]", "mode = \"broadcast\"", "group = \"198.18.0.255\""}), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().transport.mode, TransportMode::broadcast);
  EXPECT_EQ(parsed.value().transport.group, "198.18.0.255");
}

TEST(TransportModeConfig, MulticastTakesAGroupOfEitherFamily) {
  auto v4 = parse_config(base_with({"[transport]", "mode = \"multicast\"",
                                    "group = \"239.192.0.1\"", "multicast_ttl = 4"}),
                         "keel.toml");
  ASSERT_TRUE(v4.ok()) << v4.error().message;
  EXPECT_EQ(v4.value().transport.mode, TransportMode::multicast);
  EXPECT_EQ(v4.value().transport.group, "239.192.0.1");
  EXPECT_EQ(v4.value().transport.multicast_ttl, 4);

  const std::string v6_text = lines({"[cluster]", "name = \"web\"", "[[node]]", "id = 1",
                                     "name = \"a\"", "address = \"fd00::1\"", "[transport]",
                                     "mode = \"multicast\"", "group = \"ff02::4b\""});
  auto v6 = parse_config(v6_text, "keel.toml");
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6.value().transport.group, "ff02::4b");
}

TEST(TransportModeConfig, UnknownModeSuggestsTheRightOne) {
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = \"brodcast\""})),
            "keel.toml:14: [transport] mode \"brodcast\" is not one of unicast, multicast, "
            "broadcast (did you mean broadcast?)");
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = 3"})),
            "keel.toml:14: [transport] mode must be a string, not an integer");
}

TEST(TransportModeConfig, GroupModesNeedAGroup) {
  EXPECT_THAT(error_of(base_with({"[transport]", "mode = \"broadcast\""})),
              StartsWith("keel.toml:14: [transport] mode = \"broadcast\" needs group = "
                         "\"ADDRESS\" (the subnet's IPv4 broadcast address, usually x.x.x.255)"));
  EXPECT_THAT(error_of(base_with({"[transport]", "mode = \"multicast\""})),
              StartsWith("keel.toml:14: [transport] mode = \"multicast\" needs group"));
  // A misspelt group is reported as such, not as a missing one.
  EXPECT_THAT(error_of(base_with({"[transport]", "mode = \"multicast\"", "gruop = \"239.1.1.1\""})),
              StartsWith("keel.toml:15: unknown key 'gruop' in [transport] (did you mean group?)"));
}

TEST(TransportModeConfig, GroupWithoutAGroupModeIsRefused) {
  EXPECT_EQ(error_of(base_with({"[transport]", "group = \"239.1.1.1\""})),
            "keel.toml:14: [transport] group is used only with mode = \"multicast\" or "
            "\"broadcast\"");
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = \"broadcast\"", "group = \"198.18.0.255\"",
                                "multicast_ttl = 2"})),
            "keel.toml:16: [transport] multicast_ttl is used only with mode = \"multicast\"");
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = \"multicast\"", "group = \"239.1.1.1\"",
                                "multicast_ttl = 0"})),
            "keel.toml:16: [transport] multicast_ttl must be between 1 and 255 (got 0)");
}

TEST(TransportModeConfig, MulticastGroupMustBeMulticast) {
  EXPECT_THAT(error_of(base_with({"[transport]", "mode = \"multicast\"", "group = \"10.0.0.1\""})),
              StartsWith("keel.toml:15: [transport] group 10.0.0.1 is not a multicast address"));
  EXPECT_THAT(error_of(base_with({"[transport]", "mode = \"multicast\"", "group = \"fd00::9\""})),
              StartsWith("keel.toml:15: [transport] group fd00::9 is not a multicast address"));
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = \"multicast\"", "group = \"239.1.1\""})),
            "keel.toml:15: [transport] group \"239.1.1\" is not an IPv4 or IPv6 address");
}

TEST(TransportModeConfig, BroadcastGroupMustBeAnIpv4BroadcastAddress) {
  const auto group_error = [](const char* group_line) {
    return error_of(base_with({"[transport]", "mode = \"broadcast\"", group_line}));
  };
  EXPECT_THAT(group_error("group = \"239.1.1.1\""),
              StartsWith("keel.toml:15: [transport] group 239.1.1.1 is not an IPv4 broadcast "
                         "address; mode = \"broadcast\" needs the subnet's broadcast address, "
                         "usually x.x.x.255"));
  EXPECT_THAT(group_error("group = \"fd00::ff\""),
              StartsWith("keel.toml:15: [transport] group fd00::ff is not an IPv4 broadcast"));
  EXPECT_THAT(group_error("group = \"255.255.255.255\""),
              StartsWith("keel.toml:15: [transport] group 255.255.255.255 cannot be used"));
  EXPECT_THAT(group_error("group = \"127.0.0.255\""),
              StartsWith("keel.toml:15: [transport] group 127.0.0.255 cannot be used"));
  EXPECT_EQ(group_error("group = \"198.18.0.2\""),
            "keel.toml:15: [transport] group 198.18.0.2 is the address of node \"fe2\" (line 12)");
}

TEST(TransportModeConfig, GroupMustBeOfTheNodesFamily) {
  EXPECT_EQ(error_of(base_with({"[transport]", "mode = \"multicast\"", "group = \"ff02::4b\""})),
            "keel.toml:15: [transport] group ff02::4b is IPv6 but node \"fe1\" (line 7) uses "
            "IPv4; the group must be of the nodes' address family");
}

TEST(TransportModeConfig, GroupModesNeedEveryNodeOnTheClusterPort) {
  const std::string text =
      lines({"[cluster]", "name = \"web\"", "", "[[node]]", "id = 1", "name = \"fe1\"",
             "address = \"198.18.0.1\"", "", "[[node]]", "id = 2", "name = \"fe2\"",
             "address = \"198.18.0.2\"", "port = 5421", "", "[transport]", "port = 5420",
             "mode = \"broadcast\"", "group = \"198.18.0.255\""});
  EXPECT_EQ(error_of(text),
            "keel.toml:13: node \"fe2\": port 5421 differs from [transport] port 5420; in "
            "broadcast mode every node must use the cluster port, where one datagram to the "
            "group 198.18.0.255 reaches them all");
  // The same port written out is fine, and so is any port in unicast mode.
  std::string same = text;
  same.replace(same.find("port = 5421"), std::string("port = 5421").size(), "port = 5420");
  EXPECT_TRUE(parse_config(same, "keel.toml").ok());
  const std::string group_lines = "mode = \"broadcast\"\ngroup = \"198.18.0.255\"\n";
  std::string unicast = text;
  unicast.replace(unicast.find(group_lines), group_lines.size(), "");
  EXPECT_TRUE(parse_config(unicast, "keel.toml").ok()) << error_of(unicast);
}

TEST(TransportModeConfig, AModeProblemComesAfterOneNearerTheTop) {
  EXPECT_THAT(error_of(lines({"[cluster]", "name = \"web\"", "[[node]]", "id = 1", "name = \"fe1\"",
                              "address = \"198.18.0.300\"", "[transport]", "mode = \"broadcast\"",
                              "group = \"239.1.1.1\""})),
              HasSubstr("keel.toml:6: node \"fe1\": address \"198.18.0.300\""));
}

}  // namespace
}  // namespace keel::config
