// The [vip] section: floating-IP pools (docs/configuration.md, "Floating IPs").
//
//   [vip]
//   settle_ms = 0                      # wait after a view change before taking addresses over
//   startup_ms = 2000                  # a freshly started host alone in its view waits this long
//   handover_ms = 1000                 # a drain keeps old connections to the old holder this long
//
//   [[vip.pool]]
//   name = "web"
//   addresses = ["198.18.0.100/24", "198.18.0.101/24", "2001:2::100/64"]
//   interface = "eth0"                 # where the addresses go
//   nodes = ["h1", "h2", "h3"]         # who may hold them (default: every node)
//   announce_count = 3                 # gratuitous ARP / unsolicited NA rounds on a takeover
//   announce_interval_ms = 100
//   notify = ["198.18.0.1"]            # also announce by unicast to these hosts (routers)
//   on_acquire = "/usr/local/sbin/vip-hook acquire"   # run after an address is added
//   on_release = "/usr/local/sbin/vip-hook release"   # run after one is removed
//   [vip.pool.prefer]                  # address -> node it goes to when there is a choice
//   "198.18.0.100/24" = "h1"
//   [vip.pool.weights]                 # node -> weight: a share proportional to it
//   h1 = 2
//   [vip.pool.interfaces]              # per node, another interface than `interface`
//   h3 = "ens4"
//   [vip.pool.health]                  # gates whether a node may hold the pool's addresses
//   kind = "http"                      # http | tcp | exec
//   address = "127.0.0.1"
//   port = 80
//   path = "/"
//   expect_status = 200
//   interval_ms = 1000
//   timeout_ms = 500
//   rise = 2
//   fall = 2
//
// Validation (with the line of each problem; an address's own line): pool names unique, addresses
// IPv4 or IPv6 with a prefix length that a host may hold (not unspecified, loopback, multicast,
// limited broadcast, IPv4-mapped, nor its prefix's network, broadcast or subnet-router anycast
// address), at most vip::kMaxPools pools and vip::kMaxAddresses addresses over all of them (the
// core's limits), no address in two pools (or twice in one), no floating address equal to a
// node's own address or to the transport's group, node names that exist (with a suggestion),
// preferences and weights only for the pool's own nodes and addresses, a health check that can
// run. Whether an address fits the interface's subnet can only be known on the host: the agent
// checks that at start.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/common/types.hpp"
#include "core/vip/pools.hpp"
#include "io/health_check.hpp"

namespace keel::config {

struct NodeConfig;

struct VipAddress {
  std::string text;  // canonical "address/prefix", the name keel uses everywhere
  int family = 0;    // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};
  int prefix_length = 0;
};

struct VipPoolConfig {
  std::string name;
  std::vector<VipAddress> addresses;
  std::string interface;
  std::map<NodeId, std::string> interface_by_node;
  std::vector<NodeId> nodes;                // sorted
  std::map<std::string, NodeId> preferred;  // canonical address text -> node
  std::map<NodeId, std::uint32_t> weights;
  std::optional<io::HealthCheckConfig> health;  // nothing: always healthy
  std::uint32_t announce_count = 3;
  std::uint32_t announce_interval_ms = 100;
  std::vector<std::string> notify;  // unicast announcement targets (IP literals)
  std::string on_acquire;           // command lines, split like health check commands
  std::string on_release;

  const std::string& interface_for(NodeId node) const;
};

struct VipConfig {
  std::vector<VipPoolConfig> pools;
  std::uint32_t settle_ms = 0;
  std::uint32_t startup_ms = 2000;
  // After a drain's make-before-break handover of an IPv4 address, for this long the new holder
  // passes packets of connections it does not know to the old holder, which keeps the address
  // (without answering ARP for it): connections open at the switch are not reset. 0: off.
  std::uint32_t handover_ms = 1000;
  bool empty() const { return pools.empty(); }
};

// What the placement core needs of it (the same on every host).
vip::VipConfig core_vip_config(const VipConfig& config);

// "198.18.0.100/24" -> its parts, canonical text included; nothing if it is not an address with
// a prefix length that fits its family.
std::optional<VipAddress> parse_vip_address(const std::string& text);

}  // namespace keel::config
