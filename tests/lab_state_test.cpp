// The lab's state file and host configs (src/lab/state.hpp, host_config.hpp): no root needed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "config/config.hpp"
#include "lab/host_config.hpp"
#include "lab/state.hpp"

namespace keel::lab {
namespace {

LabState sample_state(const std::string& dir) {
  LabState state;
  state.prefix = "kl12ab";
  state.dir = dir;
  state.keel_binary = "/usr/bin/keel";
  state.phase = LabPhase::up;
  for (int index = 1; index <= 3; ++index) {
    state.hosts.push_back(make_host_state(state.names(), dir, index));
  }
  state.host(2).agent = ProcessId{4242, 987654321};
  state.host(3).link_up = false;
  state.host(3).frozen = true;
  state.faults.partition = {{1}, {2, 3}};
  state.faults.cuts = {{2, 1}};
  state.faults.loss_percent = 7;
  state.helpers = {ProcessId{77, 1}};
  return state;
}

void expect_same(const LabState& a, const LabState& b) {
  EXPECT_EQ(a.prefix, b.prefix);
  EXPECT_EQ(a.dir, b.dir);
  EXPECT_EQ(a.keel_binary, b.keel_binary);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.faults, b.faults);
  EXPECT_EQ(a.helpers, b.helpers);
  ASSERT_EQ(a.hosts.size(), b.hosts.size());
  for (std::size_t i = 0; i < a.hosts.size(); ++i) {
    EXPECT_EQ(a.hosts[i].socket, b.hosts[i].socket);
    EXPECT_EQ(a.hosts[i].agent, b.hosts[i].agent);
    EXPECT_EQ(a.hosts[i].link_up, b.hosts[i].link_up);
    EXPECT_EQ(a.hosts[i].frozen, b.hosts[i].frozen);
  }
}

TEST(LabState, HostRecordsFollowTheNames) {
  const HostState host = make_host_state(LabNames("kl12ab"), "/tmp/x", 2);
  EXPECT_EQ(host.name, "h2");
  EXPECT_EQ(host.netns, "kl12ab-h2");
  EXPECT_EQ(host.veth, "kl12ab-h2");
  EXPECT_EQ(host.address, "198.18.0.12");
  EXPECT_EQ(host.config, "/tmp/x/h2/keel.toml");
  EXPECT_EQ(host.socket, "/tmp/x/h2/keel.sock");
  EXPECT_EQ(host.log, "/tmp/x/h2/agent.log");
  EXPECT_FALSE(host.agent.valid());
}

TEST(LabState, JsonRoundTrip) {
  const LabState state = sample_state("/tmp/keel-lab-kl12ab");
  auto parsed = parse_state(to_json(state), "lab.json");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  expect_same(state, parsed.value());
}

TEST(LabState, FileRoundTrip) {
  char pattern[] = "/tmp/keel-lab-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const LabState state = sample_state(pattern);
  ASSERT_TRUE(save_state(state).ok());
  auto loaded = load_state(pattern);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  expect_same(state, loaded.value());
  std::filesystem::remove_all(pattern);
}

TEST(LabState, RefusesFilesNamingForeignObjects) {
  LabState state = sample_state("/tmp/keel-lab-kl12ab");
  std::string text = to_json(state);
  const auto at = text.find("\"kl12ab-h2\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 11, "\"eth0\"");  // a host that would delete the machine's own interface
  EXPECT_FALSE(parse_state(text, "lab.json").ok());
  EXPECT_FALSE(parse_state("{}", "lab.json").ok());
  EXPECT_FALSE(parse_state("not json", "lab.json").ok());
  std::string bad_prefix = to_json(state);
  const auto prefix_at = bad_prefix.find("\"prefix\": \"kl12ab\"");
  ASSERT_NE(prefix_at, std::string::npos);
  bad_prefix.replace(prefix_at, 18, "\"prefix\": \"Bad-1\"");
  EXPECT_FALSE(parse_state(bad_prefix, "lab.json").ok());
  EXPECT_NE(parse_state("[]", "x/lab.json").error().message.find("x/lab.json"), std::string::npos);
}

TEST(LabHostConfig, EveryHostsConfigParsesAndNamesItself) {
  const LabState state = sample_state("/tmp/keel-lab-kl12ab");
  HostConfigSettings settings;
  settings.ring = {{"token_timeout_ms", "200"}};
  settings.log_level = "debug";
  for (int index = 1; index <= state.host_count(); ++index) {
    const std::string text = host_config_toml(state, index, settings);
    auto config = config::parse_config(text, "keel.toml");
    ASSERT_TRUE(config.ok()) << config.error().message << "\n" << text;
    EXPECT_EQ(config.value().cluster_name, "lab-kl12ab");
    EXPECT_EQ(config.value().key_file, "/tmp/keel-lab-kl12ab/cluster.key");
    EXPECT_EQ(config.value().agent.control_socket, state.host(index).socket);
    EXPECT_EQ(config.value().agent.log_level, "debug");
    EXPECT_EQ(config.value().ring.token_timeout_ms, 200u);
    ASSERT_EQ(config.value().nodes.size(), 3u);
    EXPECT_EQ(config.value().nodes[2].address, "198.18.0.13");
    auto self = config::resolve_this_node(config.value(), "some-hostname");
    ASSERT_TRUE(self.ok()) << self.error().message;
    EXPECT_EQ(self.value().id, static_cast<NodeId>(index));
  }
}

TEST(LabHostConfig, RingSettings) {
  auto setting = parse_ring_setting("token_timeout_ms=150");
  ASSERT_TRUE(setting.ok());
  EXPECT_EQ(setting.value().first, "token_timeout_ms");
  EXPECT_EQ(setting.value().second, "150");
  EXPECT_FALSE(parse_ring_setting("token_timeout_ms").ok());
  EXPECT_FALSE(parse_ring_setting("=5").ok());
  EXPECT_FALSE(parse_ring_setting("a b=5").ok());
  EXPECT_FALSE(parse_ring_setting("x=").ok());
  EXPECT_FALSE(parse_ring_setting("x=1\n[agent]").ok());
}

TEST(LabHostConfig, TransportSettings) {
  auto mode = parse_transport_setting("mode=broadcast");
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ(mode.value(), (std::pair<std::string, std::string>{"mode", "\"broadcast\""}));
  auto group = parse_transport_setting("group=198.18.0.255");
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(group.value().second, "\"198.18.0.255\"");
  EXPECT_EQ(parse_transport_setting("mtu=9000").value().second, "9000");
  EXPECT_FALSE(parse_transport_setting("mode").ok());

  const LabState state = sample_state("/tmp/keel-lab-kl12ab");
  HostConfigSettings settings;
  settings.transport = {mode.value(), group.value()};
  auto config = config::parse_config(host_config_toml(state, 1, settings), "keel.toml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config.value().transport.mode, config::TransportMode::broadcast);
  EXPECT_EQ(config.value().transport.group, "198.18.0.255");
}

}  // namespace
}  // namespace keel::lab
