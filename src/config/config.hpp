// ClusterConfig: keel's configuration file, one TOML file identical on every host.
//
// parse_config() validates everything and reports the first problem with the file name and line
// (`keel.toml:12: node "fe3": address "198.18.0.300" is not an IPv4 or IPv6 address`), so the
// agent can refuse to start with a message a person can act on. docs/configuration.md is the
// reference for every key.
//
// Example:
//   [cluster]
//   name = "web"
//   key_file = "/etc/keel/cluster.key"
//   # node = "fe1"          # this host's node name; default: the system hostname
//
//   [[node]]
//   id = 1
//   name = "fe1"
//   address = "198.18.0.1"
//   # port = 5420          # default: transport.port
//
//   [transport]
//   port = 5420
//   mtu = 1500
//   # mode = "unicast"      # or "multicast" or "broadcast", with group = "ADDRESS"
//
//   [ring]
//   token_timeout_ms = 300   # any field of ring::RingTunables, same names
//
//   [agent]
//   control_socket = "/run/keel/keel.sock"
//   log_level = "info"
//   realtime_priority = 10
//
//   [vip] and [[vip.pool]]: floating IPs (vip_config.hpp)
//   [[volume]]: mirrored volumes (volume_config.hpp)
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/vip_config.hpp"
#include "config/volume_config.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/ring/tunables.hpp"

namespace keel::config {

constexpr std::uint16_t kDefaultPort = 5420;
constexpr const char* kDefaultConfigPath = "/etc/keel/keel.toml";
constexpr const char* kDefaultKeyFile = "/etc/keel/cluster.key";
constexpr const char* kDefaultControlSocket = "/run/keel/keel.sock";
constexpr const char* kDefaultStateDir = "/var/lib/keel";

struct NodeConfig {
  NodeId id = kNoNode;  // 1 .. 65535, unique
  std::string name;     // unique; [A-Za-z0-9._-]{1,64}
  std::string address;  // IPv4 or IPv6 literal, unique
  std::uint16_t port = kDefaultPort;
};

// How a packet for every node is sent: one datagram per node, or one to a group address.
enum class TransportMode { unicast, multicast, broadcast };
const char* to_string(TransportMode mode);  // "unicast", ...

struct TransportConfig {
  std::uint16_t port = kDefaultPort;
  std::uint32_t mtu = 1500;  // link MTU; ring packets are sized to fit it after all headers
  TransportMode mode = TransportMode::unicast;
  // Multicast: an IPv4 or IPv6 multicast group. Broadcast: the nodes' subnet's IPv4 broadcast
  // address. Empty in unicast mode. In the group modes every node's port is `port`.
  std::string group;
  int multicast_ttl = 1;  // 1 .. 255; multicast only
};

struct AgentConfig {
  std::string control_socket = kDefaultControlSocket;
  // Where the agent keeps what must outlive it (its boot epoch, io/boot_epoch.hpp).
  std::string state_dir = kDefaultStateDir;
  std::string log_level = "info";  // trace, debug, info, warn, error
  // SCHED_RR priority of the agent (1..99), so that a CPU hog cannot delay the token past its
  // timeout and cause a view change; 0 leaves the agent an ordinary process.
  int realtime_priority = 10;
};

struct ClusterConfig {
  std::string source;        // the file it came from, for messages
  std::string cluster_name;  // [A-Za-z0-9._-]{1,64}
  std::string key_file = kDefaultKeyFile;
  std::optional<std::string> this_node;  // [cluster] node: overrides the hostname
  std::vector<NodeConfig> nodes;         // sorted by id, 1 .. ring::kMaxNodes entries
  TransportConfig transport;
  ring::RingTunables ring;  // max_packet_bytes derived from transport.mtu
  AgentConfig agent;
  VipConfig vip;  // [vip]: floating-IP pools (vip_config.hpp); empty when absent
  std::vector<VolumeConfig> volumes;  // [[volume]]: mirrored volumes (volume_config.hpp)

  const NodeConfig* node_by_id(NodeId id) const;
  const NodeConfig* node_by_name(const std::string& name) const;
  std::vector<NodeId> node_ids() const;
  const VolumeConfig* volume_by_name(const std::string& name) const;
};

// Parses and validates TOML text. `source` names it in error messages.
Result<ClusterConfig> parse_config(const std::string& text, const std::string& source);
// Reads and parses a file; a missing or unreadable file is an error naming the path.
Result<ClusterConfig> load_config(const std::string& path);
// Which configured node this host is: [cluster] node if set, else `hostname`; an error lists
// the configured names when none matches.
Result<NodeConfig> resolve_this_node(const ClusterConfig& config, const std::string& hostname);

}  // namespace keel::config
