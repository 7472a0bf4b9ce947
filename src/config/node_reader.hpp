// The [[node]] sections of the config: read in the first pass (each node on its own: name, id,
// address, port), checked together in the second (limits, duplicates, one address family, a
// multicast or broadcast group against the nodes). Part of parse_config() (config.cpp).
//
// Thread-safety: pure functions.
#pragma once

#include <sys/socket.h>
#include <toml++/toml.h>

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "config/config.hpp"
#include "config/diagnostics.hpp"
#include "config/transport_reader.hpp"

namespace keel::config::detail {

constexpr std::int64_t kMaxNodeId = 65535;

// A node as read, with the lines later checks point at.
struct NodeEntry {
  NodeConfig node;
  int line = kNoLine;  // the [[node]] header
  int address_line = kNoLine;
  int port_line = kNoLine;  // kNoLine: the node has the [transport] port
  int family = AF_UNSPEC;
  std::array<std::uint8_t, 16> address_bytes{};  // canonical form, to find duplicates
};

// Reports the keys of a [[node]] table that the section does not define (parse_config() knows
// every section's keys, for its suggestions).
using NodeKeyCheck = std::function<void(const toml::table& table, Problems& problems)>;

// First pass: every [[node]] that reads without a problem (the others are reported).
std::vector<NodeEntry> read_nodes(const toml::table& root, std::uint16_t default_port,
                                  const NodeKeyCheck& check_node_keys, Problems& problems);
// Second pass over the nodes: limits and uniqueness.
void check_nodes(const std::vector<NodeEntry>& entries, Problems& problems);
// Second pass over a multicast or broadcast group: against the nodes' addresses and ports.
void check_group_against_nodes(const TransportConfig& transport, const TransportLines& lines,
                               const std::vector<NodeEntry>& entries, Problems& problems);

}  // namespace keel::config::detail
