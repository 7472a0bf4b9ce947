// Tests for parse_config(), load_config() and resolve_this_node(): a full file lands in the right
// fields, and every kind of mistake is reported with the file name and the line to fix.
#include "config/config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <initializer_list>
#include <string>
#include <thread>

#include "config_test_support.hpp"
#include "core/ring/limits.hpp"

namespace keel::config {
namespace {

using test_support::base_with;
using test_support::error_of;
using test_support::lines;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Two valid nodes on lines 1-12; tests append sections from line 13 on.
const char* const kCluster = "[cluster]";               // 1
const char* const kName = "name = \"web\"";             // 2
const char* const kNode = "[[node]]";                   // 4, 9
const char* const kId1 = "id = 1";                      // 5
const char* const kName1 = "name = \"fe1\"";            // 6
const char* const kAddr1 = "address = \"198.18.0.1\"";  // 7
const char* const kId2 = "id = 2";                      // 10
const char* const kName2 = "name = \"fe2\"";            // 11
const char* const kAddr2 = "address = \"198.18.0.2\"";  // 12

const char* const kFullExample = R"(# The example from docs/configuration.md.
[cluster]
name = "web"
key_file = "/etc/keel/cluster.key"

[[node]]
id = 3
name = "be1"
address = "198.18.0.3"
port = 5500

[[node]]
id = 1
name = "fe1"
address = "198.18.0.1"

[[node]]
id = 2
name = "fe2"
address = "198.18.0.2"

[transport]
port = 5421
mtu = 9000

[ring]
token_timeout_ms = 600
consensus_timeout_ms = 480
join_timeout_ms = 60

[agent]
control_socket = "/run/keel/other.sock"
log_level = "debug"
)";

TEST(ConfigTest, FullExampleLandsInTheRightFields) {
  auto parsed = parse_config(kFullExample, "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const ClusterConfig& c = parsed.value();
  EXPECT_EQ(c.source, "keel.toml");
  EXPECT_EQ(c.cluster_name, "web");
  EXPECT_EQ(c.key_file, "/etc/keel/cluster.key");
  EXPECT_FALSE(c.this_node.has_value());
  ASSERT_EQ(c.nodes.size(), 3u);
  EXPECT_EQ(c.nodes[0].id, 1u);  // sorted by id
  EXPECT_EQ(c.nodes[0].name, "fe1");
  EXPECT_EQ(c.nodes[0].address, "198.18.0.1");
  EXPECT_EQ(c.nodes[0].port, 5421);  // transport.port, declared after the nodes
  EXPECT_EQ(c.nodes[1].name, "fe2");
  EXPECT_EQ(c.nodes[2].id, 3u);
  EXPECT_EQ(c.nodes[2].name, "be1");
  EXPECT_EQ(c.nodes[2].port, 5500);
  EXPECT_EQ(c.transport.port, 5421);
  EXPECT_EQ(c.transport.mtu, 9000u);
  EXPECT_EQ(c.ring.token_timeout_ms, 600u);
  EXPECT_EQ(c.ring.consensus_timeout_ms, 480u);
  EXPECT_EQ(c.ring.join_timeout_ms, 60u);
  EXPECT_EQ(c.ring.window_size, ring::RingTunables{}.window_size);
  EXPECT_EQ(c.ring.max_packet_bytes, 9000u - 20 - 8 - 63);
  EXPECT_EQ(c.agent.control_socket, "/run/keel/other.sock");
  EXPECT_EQ(c.agent.log_level, "debug");
  EXPECT_EQ(c.node_ids(), (std::vector<NodeId>{1, 2, 3}));
  ASSERT_NE(c.node_by_id(3), nullptr);
  EXPECT_EQ(c.node_by_id(3)->name, "be1");
  EXPECT_EQ(c.node_by_id(4), nullptr);
  ASSERT_NE(c.node_by_name("fe2"), nullptr);
  EXPECT_EQ(c.node_by_name("fe2")->id, 2u);
  EXPECT_EQ(c.node_by_name("fe9"), nullptr);
}

TEST(ConfigTest, DefaultsApplyWhenSectionsAreLeftOut) {
  auto parsed = parse_config(base_with({}), "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const ClusterConfig& c = parsed.value();
  EXPECT_EQ(c.key_file, kDefaultKeyFile);
  EXPECT_EQ(c.transport.port, kDefaultPort);
  EXPECT_EQ(c.transport.mtu, 1500u);
  EXPECT_EQ(c.nodes[1].port, kDefaultPort);
  EXPECT_EQ(c.agent.control_socket, kDefaultControlSocket);
  EXPECT_EQ(c.agent.log_level, "info");
  EXPECT_EQ(c.ring.max_packet_bytes, 1500u - 20 - 8 - 63);
  EXPECT_EQ(c.ring.token_timeout_ms, ring::RingTunables{}.token_timeout_ms);
}

TEST(ConfigTest, SyntaxErrorNamesLineAndColumn) {
  const std::string message = error_of(lines({"[cluster]", "name = \"web\"", "key_file = "}));
  EXPECT_THAT(message, StartsWith("keel.toml:3:12: ")) << message;
}

TEST(ConfigTest, DuplicateKeyIsASyntaxError) {
  const std::string message = error_of(base_with({"[transport]", "port = 1", "port = 2"}));
  EXPECT_THAT(message, StartsWith("keel.toml:15:")) << message;
}

TEST(ConfigTest, NonAsciiIsAllowedInCommentsOnly) {
  // A byte order mark, and comments in any language, are fine.
  auto parsed = parse_config(
      "\xef\xbb\xbf# Serveurs \xc3\xa0 Paris\n" + base_with({"[agent] # caf\xc3\xa9 \xcc\xaa"}),
      "keel.toml");
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(error_of(base_with({"[agent]", "log_level = \"caf\xc3\xa9\""})),
            "keel.toml:14:17: non-ASCII character outside a comment; keel's configuration is "
            "ASCII apart from comments");
  // A '#' inside a string does not start a comment.
  EXPECT_THAT(error_of(base_with({"[agent]", "control_socket = \"/run/#\xc3\xa9\" # ok"})),
              StartsWith("keel.toml:14:25: non-ASCII"));
  EXPECT_THAT(error_of(base_with({"[agent]", "control_socket = '''", "#\xc3\xa9'''"})),
              StartsWith("keel.toml:15:2: non-ASCII"));
  // A multi-line string may end in extra quotes and hold escaped ones; the comment after it is
  // still a comment.
  EXPECT_THAT(error_of(base_with({"x = \"\"\"a\\\"\"\"\"\" # \xc3\xa9"})),
              StartsWith("keel.toml:13: unknown key 'x' in [[node]]"));
  EXPECT_THAT(error_of(base_with({"\xcc\xaa = 1"})), StartsWith("keel.toml:13:1: non-ASCII"));
}

TEST(ConfigTest, UnknownKeyInRingSuggestsTheRightOne) {
  const std::string message =
      error_of(base_with({"[ring]", "window_size = 60", "token_timout_ms = 200"}));
  EXPECT_EQ(message,
            "keel.toml:15: unknown key 'token_timout_ms' in [ring] (did you mean "
            "token_timeout_ms?)");
}

TEST(ConfigTest, UnknownKeyInNodeSuggestsTheRightOne) {
  const std::string message =
      error_of(lines({kCluster, kName, kNode, kId1, kName1, "adress = \"198.18.0.1\""}));
  EXPECT_THAT(message, StartsWith("keel.toml:6: unknown key 'adress' in [[node]]")) << message;
  EXPECT_THAT(message, HasSubstr("did you mean address?"));
}

TEST(ConfigTest, KeyInTheWrongSectionSaysWhereItBelongs) {
  const std::string message = error_of(base_with({"[transport]", "token_timeout_ms = 300"}));
  EXPECT_EQ(message,
            "keel.toml:14: unknown key 'token_timeout_ms' in [transport] (it belongs in [ring])");
}

TEST(ConfigTest, UnknownSectionSuggestsTheRightOne) {
  const std::string message = error_of(base_with({"", "[trasnport]", "mtu = 1500"}));
  EXPECT_EQ(message, "keel.toml:14: unknown section [trasnport] (did you mean [transport]?)");
}

TEST(ConfigTest, KeyOutsideAnySectionIsReported) {
  const std::string message = error_of("log_level = \"info\"\n" + base_with({}));
  EXPECT_EQ(message,
            "keel.toml:1: unknown key 'log_level' outside any section (it belongs in "
            "[agent])");
}

TEST(ConfigTest, FirstProblemInTheFileIsReported) {
  // Problems on lines 14 and 16: the one nearer the top wins, whatever the section order.
  const std::string message =
      error_of(base_with({"[transport]", "mtu = 10", "[agent]", "log_level = \"loud\""}));
  EXPECT_THAT(message, StartsWith("keel.toml:14: [transport] mtu")) << message;
}

TEST(ConfigTest, WrongTypesAreReported) {
  EXPECT_EQ(error_of(base_with({"[transport]", "port = \"5420\""})),
            "keel.toml:14: [transport] port must be an integer, not a string");
  EXPECT_EQ(error_of(lines({kCluster, "name = 5"})),
            "keel.toml:2: [cluster] name must be a string, not an integer");
  EXPECT_EQ(
      error_of(base_with({"[ring]", "token_timeout_ms = 300.0"})),
      "keel.toml:14: [ring] token_timeout_ms must be an integer, not a floating-point number");
  EXPECT_EQ(error_of("transport = 5\n" + base_with({})),
            "keel.toml:1: transport must be a section [transport], not an integer");
  EXPECT_THAT(error_of(lines({kCluster, kName, "[node]", kId1, kName1, kAddr1})),
              StartsWith("keel.toml:3: node must be an array of tables written [[node]]"));
}

TEST(ConfigTest, RingTunableOutOfRangeBlamesItsLine) {
  const std::string message = error_of(base_with({"[ring]", "", "token_timeout_ms = 5"}));
  EXPECT_THAT(message, StartsWith("keel.toml:15: [ring] token_timeout_ms must be between 10 and"))
      << message;
}

TEST(ConfigTest, RingTunableThatBreaksAnotherBlamesTheOneSet) {
  // token_hold_ms keeps its default (20), which a token timeout of 40 makes too large.
  const std::string message = error_of(base_with({"[ring]", "token_timeout_ms = 40"}));
  EXPECT_THAT(message, StartsWith("keel.toml:14: [ring] token_hold_ms must be between 0 and "
                                  "token_timeout_ms/4 = 10 (got 20)"))
      << message;
  EXPECT_THAT(message, HasSubstr("token_hold_ms is not set here"));
}

TEST(ConfigTest, RingTunableOutsideItsTypeGetsItsOwnRange) {
  EXPECT_EQ(error_of(base_with({"[ring]", "window_size = -1"})),
            "keel.toml:14: [ring] window_size must be between 1 and 10000 (got -1)");
  EXPECT_EQ(error_of(base_with({"[ring]", "token_timeout_ms = 5000000000"})),
            "keel.toml:14: [ring] token_timeout_ms must be between 10 and 60000 (got 5000000000)");
  EXPECT_EQ(error_of(base_with({"[ring]", "token_hold_ms = -2"})),
            "keel.toml:14: [ring] token_hold_ms must be between 0 and token_timeout_ms/4 = 75 "
            "(got -2)");
  // A problem further up still comes first.
  EXPECT_EQ(error_of(base_with({"[ring]", "token_timeout_ms = 5", "window_size = -1"})),
            "keel.toml:14: [ring] token_timeout_ms must be between 10 and 60000 (got 5)");
}

TEST(ConfigTest, MissingRequiredKeysAreReported) {
  EXPECT_EQ(error_of(lines({kNode, kId1, kName1, kAddr1})),
            "keel.toml: no [cluster] section; it needs at least name = \"...\"");
  EXPECT_EQ(error_of(lines({"", kCluster, "key_file = \"/k\"", kNode, kId1, kName1, kAddr1})),
            "keel.toml:2: [cluster] has no name; add name = \"...\"");
  EXPECT_EQ(error_of(lines({kCluster, kName})),
            "keel.toml: no [[node]] sections; the cluster needs at least one node");
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kName1, kAddr1})),
            "keel.toml:3: node \"fe1\" has no id; add id = 1 .. 65535");
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kId1, kAddr1})),
            "keel.toml:3: [[node]] has no name; add name = \"...\"");
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kId1, kName1})),
            "keel.toml:3: node \"fe1\" has no address; add address = \"IP\"");
}

TEST(ConfigTest, DuplicateNodesAreReported) {
  const char* const kDuplicateId = "id = 1";
  EXPECT_THAT(
      error_of(lines(
          {kCluster, kName, kNode, kId1, kName1, kAddr1, kNode, kDuplicateId, kName2, kAddr2})),
      StartsWith("keel.toml:7: node \"fe2\": id 1 is already used by node \"fe1\" (line 3)"));
  EXPECT_THAT(
      error_of(lines({kCluster, kName, kNode, kId1, kName1, kAddr1, kNode, kId2, kName1, kAddr2})),
      StartsWith("keel.toml:7: node name \"fe1\" is already used (line 3)"));
  // The same IPv6 address spelt two ways.
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kId1, kName1, "address = \"fd00::1\"", kNode,
                            kId2, kName2, "address = \"fd00:0:0::0:1\""})),
            "keel.toml:10: node \"fe2\": address fd00:0:0::0:1 is already used by node \"fe1\" "
            "(line 6)");
}

TEST(ConfigTest, TooManyNodesBlamesTheFirstOneTooMany) {
  std::string text = lines({kCluster, kName});  // lines 1-2; node k starts at 3 + 4 * (k - 1)
  for (std::size_t k = 1; k <= ring::kMaxNodes + 1; ++k) {
    text += "[[node]]\nid = " + std::to_string(k) + "\nname = \"n" + std::to_string(k) +
            "\"\naddress = \"10.0.0." + std::to_string(k) + "\"\n";
  }
  const std::string message = error_of(text);
  EXPECT_EQ(message, "keel.toml:" + std::to_string(3 + 4 * ring::kMaxNodes) +
                         ": too many nodes: at most 28 are supported");
}

TEST(ConfigTest, NodeIdsOutsideTheRangeAreReported) {
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, "id = 0", kName1, kAddr1})),
            "keel.toml:4: [[node]] id must be between 1 and 65535 (got 0)");
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kName1, kAddr1, "id = 65536"})),
            "keel.toml:6: [[node]] id must be between 1 and 65535 (got 65536)");
}

TEST(ConfigTest, BadAddressesAreReported) {
  EXPECT_EQ(error_of(lines(
                {kCluster, kName, kNode, kId1, "name = \"fe3\"", "address = \"198.18.0.300\""})),
            "keel.toml:6: node \"fe3\": address \"198.18.0.300\" is not an IPv4 or IPv6 address");
  EXPECT_THAT(error_of(lines({kCluster, kName, kNode, kId1, kName1, "address = \"fe1.lan\""})),
              StartsWith("keel.toml:6: node \"fe1\": address \"fe1.lan\" is not"));
}

TEST(ConfigTest, AddressesThatAreNoHostsAreRefused) {
  const auto error_for = [](const std::string& address) {
    const std::string line = "address = \"" + address + "\"";
    return error_of(lines({kCluster, kName, kNode, kId1, kName1, line.c_str()}));
  };
  for (const char* address : {"0.0.0.0", "::", "0::0"}) {
    EXPECT_EQ(error_for(address),
              fmt::format("keel.toml:6: node \"fe1\": address {} is the unspecified address, "
                          "which names no host; give the host's own address",
                          address));
  }
  for (const char* address : {"224.0.0.1", "239.192.0.1", "ff02::1", "ff0e::5"}) {
    EXPECT_EQ(error_for(address),
              fmt::format("keel.toml:6: node \"fe1\": address {} is a multicast address; give "
                          "the host's own address",
                          address));
  }
  EXPECT_EQ(error_for("255.255.255.255"),
            "keel.toml:6: node \"fe1\": address 255.255.255.255 is the broadcast address; give "
            "the host's own address");
  EXPECT_EQ(error_for("::ffff:198.18.0.1"),
            "keel.toml:6: node \"fe1\": address ::ffff:198.18.0.1 is an IPv4-mapped IPv6 "
            "address; write the IPv4 address itself");
  for (const char* address : {"fe80::1", "febf::1"}) {
    EXPECT_EQ(error_for(address),
              fmt::format("keel.toml:6: node \"fe1\": address {} is an IPv6 link-local address, "
                          "which needs an interface scope; give a global or unique local "
                          "(fd00::/8) address",
                          address));
  }
  // Loopback stays allowed: a cluster on one host (the agent tests run one on 127.0.0.x).
  for (const char* address : {"127.0.0.1", "::1", "fec0::1", "169.254.0.7"}) {
    const std::string line = "address = \"" + std::string(address) + "\"";
    auto parsed = parse_config(lines({kCluster, kName, kNode, kId1, kName1, line.c_str()}), "k");
    EXPECT_TRUE(parsed.ok()) << address << ": " << parsed.error().message;
  }
}

TEST(ConfigTest, MixedAddressFamiliesAreReported) {
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kId1, kName1, kAddr1, kNode, kId2, kName2,
                            "address = \"fd00::2\""})),
            "keel.toml:10: node \"fe2\": address fd00::2 is IPv6 but node \"fe1\" (line 6) uses "
            "IPv4; all nodes must use one address family");
}

TEST(ConfigTest, PortZeroIsReported) {
  EXPECT_EQ(error_of(base_with({"[transport]", "port = 0"})),
            "keel.toml:14: [transport] port must be between 1 and 65535 (got 0)");
  EXPECT_EQ(error_of(lines({kCluster, kName, kNode, kId1, kName1, kAddr1, "port = 0"})),
            "keel.toml:7: [[node]] port must be between 1 and 65535 (got 0)");
}

TEST(ConfigTest, MtuOutsideItsRangeIsReported) {
  EXPECT_EQ(error_of(base_with({"[transport]", "mtu = 67"})),
            "keel.toml:14: [transport] mtu must be between 68 and 65535 (got 67)");
  EXPECT_EQ(error_of(base_with({"[transport]", "mtu = 65536"})),
            "keel.toml:14: [transport] mtu must be between 68 and 65535 (got 65536)");
}

// Below these the ring's smallest packets do not fit, and the agent's transport would refuse to
// start: the check says so first, with the least MTU that works for the nodes' family.
TEST(ConfigTest, MtuTooSmallForTheRingIsReported) {
  EXPECT_EQ(
      error_of(base_with({"[transport]", "mtu = 1280"})),
      "keel.toml:14: [transport] mtu = 1280 is too small: the ring's smallest packets (1200 "
      "bytes) with the IPv4 (20), UDP (8) and seal (63) headers need an MTU of at least 1291");
  EXPECT_EQ(
      error_of(lines({kCluster, kName, kNode, kId1, kName1, "address = \"fd00::1\"", "[transport]",
                      "mtu = 1310"})),
      "keel.toml:8: [transport] mtu = 1310 is too small: the ring's smallest packets (1200 "
      "bytes) with the IPv6 (40), UDP (8) and seal (63) headers need an MTU of at least 1311");
  // The MTU is what to fix, not a max_packet_bytes that is already the least.
  EXPECT_THAT(
      error_of(base_with({"[transport]", "mtu = 1290", "[ring]", "max_packet_bytes = 1200"})),
      StartsWith("keel.toml:14: [transport] mtu = 1290 is too small"));
}

TEST(ConfigTest, UnknownLogLevelIsReported) {
  EXPECT_EQ(error_of(base_with({"[agent]", "log_level = \"inof\""})),
            "keel.toml:14: [agent] log_level \"inof\" is not one of trace, debug, info, warn, "
            "error (did you mean info?)");
}

TEST(ConfigTest, BadNamesAndPathsAreReported) {
  EXPECT_THAT(error_of(lines({kCluster, "name = \"my web\"", kNode, kId1, kName1, kAddr1})),
              StartsWith("keel.toml:2: [cluster] name \"my web\" must be 1 to 64 characters"));
  EXPECT_EQ(
      error_of(lines({kCluster, kName, "key_file = \"cluster.key\"", kNode, kId1, kName1, kAddr1})),
      "keel.toml:3: [cluster] key_file \"cluster.key\" must be an absolute path");
  EXPECT_THAT(error_of(base_with({"[agent]", "control_socket = \"keel.sock\""})),
              StartsWith("keel.toml:14: [agent] control_socket must be an absolute path"));
  // Once accepted, to fail only when the agent bound the socket.
  for (const char* directory : {"/", "/run/keel/", "/run/keel/.", "/run/.."}) {
    EXPECT_EQ(
        error_of(base_with({"[agent]", fmt::format("control_socket = \"{}\"", directory).c_str()})),
        fmt::format("keel.toml:14: [agent] control_socket \"{}\" names a directory; give "
                    "the socket a file name, like /run/keel/keel.sock",
                    directory));
  }
  EXPECT_EQ(error_of(lines({kCluster, kName, "node = \"fe9\"", kNode, kId1, kName1, kAddr1})),
            "keel.toml:3: [cluster] node \"fe9\" is not one of the [[node]] names");
}

TEST(ConfigTest, ControlCharactersAreRefused) {
  EXPECT_EQ(
      error_of(lines({kCluster, kName, kNode, kId1, kName1, "address = \"10.0.0.1\\u0000junk\""})),
      "keel.toml:6: [[node]] address must not contain control characters");
  EXPECT_EQ(error_of(base_with({"[agent]", "state_dir = \"/var/lib/keel\\u007f\""})),
            "keel.toml:14: [agent] state_dir must not contain control characters");
  EXPECT_EQ(error_of(base_with({"[agent]", "\"log\\nlevel\" = 1"})),
            "keel.toml:14: unknown key 'log?level' in [agent] (did you mean log_level?)");
}

TEST(ConfigTest, NonAsciiThroughEscapesIsNotAControlCharacter) {
  // The file itself is ASCII; a \u escape puts UTF-8 into a value.
  auto parsed = parse_config(base_with({"[agent]", "state_dir = \"/var/lib/caf\\u00e9\""}), "k");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed.value().agent.state_dir, "/var/lib/caf\xc3\xa9");
}

TEST(ConfigTest, TunablesOverrideTheDefaults) {
  auto parsed =
      parse_config(base_with({"[ring]", "token_timeout_ms = 1000", "token_hold_ms = 50",
                              "window_size = 80", "max_messages_per_visit = 20",
                              "max_send_queue_messages = 100", "idle_rotations_before_hold = 5"}),
                   "keel.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  const auto& r = parsed.value().ring;
  EXPECT_EQ(r.token_timeout_ms, 1000u);
  EXPECT_EQ(r.token_hold_ms, 50u);
  EXPECT_EQ(r.window_size, 80u);
  EXPECT_EQ(r.max_messages_per_visit, 20u);
  EXPECT_EQ(r.max_send_queue_messages, 100u);
  EXPECT_EQ(r.idle_rotations_before_hold, 5u);
  EXPECT_EQ(r.join_timeout_ms, ring::RingTunables{}.join_timeout_ms);
}

std::uint32_t derived_packet_bytes(const std::string& address2, const std::string& address1,
                                   int mtu) {
  const std::string text =
      "[cluster]\nname = \"web\"\n[[node]]\nid = 1\nname = \"a\"\naddress = \"" + address1 +
      "\"\n[[node]]\nid = 2\nname = \"b\"\naddress = \"" + address2 +
      "\"\n[transport]\nmtu = " + std::to_string(mtu) + "\n";
  auto parsed = parse_config(text, "keel.toml");
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
  return parsed.ok() ? parsed.value().ring.max_packet_bytes : 0;
}

TEST(ConfigTest, PacketSizeIsDerivedFromTheMtu) {
  EXPECT_EQ(derived_packet_bytes("10.0.0.2", "10.0.0.1", 1500), 1500u - 20 - 8 - 63);
  EXPECT_EQ(derived_packet_bytes("fd00::2", "fd00::1", 1500), 1500u - 40 - 8 - 63);
  EXPECT_EQ(derived_packet_bytes("10.0.0.2", "10.0.0.1", 1291), ring::kMinPacketBytes);
  EXPECT_EQ(derived_packet_bytes("fd00::2", "fd00::1", 1311), ring::kMinPacketBytes);
  EXPECT_EQ(derived_packet_bytes("10.0.0.2", "10.0.0.1", 65535), ring::kMaxPacketBytes);
}

TEST(ConfigTest, ExplicitPacketSizeMustFitTheMtu) {
  auto fits = parse_config(base_with({"[ring]", "max_packet_bytes = 1300"}), "keel.toml");
  ASSERT_TRUE(fits.ok()) << fits.error().message;
  EXPECT_EQ(fits.value().ring.max_packet_bytes, 1300u);
  EXPECT_EQ(error_of(base_with({"[ring]", "max_packet_bytes = 1410"})),
            "keel.toml:14: [ring] max_packet_bytes = 1410 does not fit transport mtu = 1500: at "
            "most 1409 bytes fit after the IPv4 (20), UDP (8) and seal (63) headers");
  EXPECT_THAT(error_of(base_with({"[ring]", "max_packet_bytes = 100"})),
              StartsWith("keel.toml:14: [ring] max_packet_bytes must be between 1200 and 65000"));
}

TEST(ConfigTest, ThisNodeComesFromTheHostnameOrTheOverride) {
  auto parsed = parse_config(kFullExample, "keel.toml");
  ASSERT_TRUE(parsed.ok());
  ClusterConfig config = parsed.value();
  auto by_host = resolve_this_node(config, "fe2");
  ASSERT_TRUE(by_host.ok()) << by_host.error().message;
  EXPECT_EQ(by_host.value().id, 2u);
  auto by_fqdn = resolve_this_node(config, "be1.example.net");
  ASSERT_TRUE(by_fqdn.ok()) << by_fqdn.error().message;
  EXPECT_EQ(by_fqdn.value().id, 3u);
  auto unknown = resolve_this_node(config, "laptop");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("\"laptop\""));
  EXPECT_THAT(unknown.error().message, HasSubstr("fe1, fe2, be1"));

  config.this_node = "fe1";
  auto overridden = resolve_this_node(config, "fe2");
  ASSERT_TRUE(overridden.ok());
  EXPECT_EQ(overridden.value().id, 1u);
  config.this_node = "fe7";
  auto missing = resolve_this_node(config, "fe2");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("\"fe7\""));
}

TEST(ConfigTest, ThisNodeFromTheFile) {
  auto parsed =
      parse_config(lines({kCluster, kName, "node = \"fe1\"", kNode, kId1, kName1, kAddr1}), "k");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed.value().this_node, std::optional<std::string>("fe1"));
  auto self = resolve_this_node(parsed.value(), "other");
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self.value().name, "fe1");
}

TEST(ConfigTest, LoadConfigReadsAFileAndNamesItInErrors) {
  const std::string path = ::testing::TempDir() + "keel_config_test.toml";
  std::FILE* file = std::fopen(path.c_str(), "w");
  ASSERT_NE(file, nullptr);
  const std::string text = base_with({"[ring]", "token_timout_ms = 1"});
  std::fwrite(text.data(), 1, text.size(), file);
  std::fclose(file);
  auto loaded = load_config(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message, StartsWith(path + ":14: unknown key"));
  std::remove(path.c_str());

  auto missing = load_config(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "cannot open config file " + path + ": No such file or directory");
}

// A FIFO in the config's place once made load_config() wait for a writer, for ever.
TEST(ConfigTest, LoadConfigRefusesAFifoWithoutWaiting) {
  const std::string path = ::testing::TempDir() + "keel_config_test.fifo";
  std::remove(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << std::strerror(errno);
  std::promise<std::string> outcome;
  std::future<std::string> result = outcome.get_future();
  std::thread loader([&] {
    auto loaded = load_config(path);
    outcome.set_value(loaded.ok() ? "(loaded)" : loaded.error().message);
  });
  const bool returned = result.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!returned) {
    // The loader waits in open() for a writer: be one, so that it returns and can be joined.
    const int writer = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (writer >= 0) ::close(writer);
  }
  loader.join();
  std::remove(path.c_str());
  EXPECT_TRUE(returned) << "load_config() waited for a writer";
  EXPECT_EQ(result.get(), "config file " + path + " is not a regular file");
}

TEST(ConfigTest, LoadConfigNamesADirectoryAndAFileTooLarge) {
  const std::string directory = ::testing::TempDir() + "keel_config_test.d";
  ASSERT_TRUE(::mkdir(directory.c_str(), 0700) == 0 || errno == EEXIST) << std::strerror(errno);
  auto loaded = load_config(directory);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().message, "cannot read config file " + directory + ": Is a directory");
  ::rmdir(directory.c_str());

  const std::string path = ::testing::TempDir() + "keel_config_test_large.toml";
  std::FILE* file = std::fopen(path.c_str(), "w");
  ASSERT_NE(file, nullptr);
  const std::string comment = "#" + std::string(1022, 'x') + "\n";  // 1 KiB a line
  for (int i = 0; i < 1024; ++i) std::fwrite(comment.data(), 1, comment.size(), file);
  std::fclose(file);
  EXPECT_THAT(load_config(path).error().message, HasSubstr("no [cluster] section"));  // 1 MiB
  file = std::fopen(path.c_str(), "a");
  ASSERT_NE(file, nullptr);
  std::fputc('\n', file);
  std::fclose(file);
  EXPECT_EQ(load_config(path).error().message,
            "config file " + path + " is larger than 1048576 bytes");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace keel::config
