// Reading and checking the [[node]] sections (node_reader.hpp).
#include "config/node_reader.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>

#include "config/toml_fields.hpp"
#include "core/ring/limits.hpp"

namespace keel::config::detail {

namespace {

std::string node_label(const NodeEntry& entry) {
  if (valid_name(entry.node.name)) return fmt::format("node \"{}\"", entry.node.name);
  return "[[node]]";
}

// Why an address cannot be a host's own, and what to write instead; or nothing. Loopback passes: a
// cluster of agents on one host uses 127.0.0.x (the agent tests run such clusters).
std::optional<std::string> not_a_host(int family, const std::array<std::uint8_t, 16>& bytes) {
  const auto all = [&bytes](std::size_t from, std::size_t to, std::uint8_t value) {
    return std::all_of(bytes.begin() + from, bytes.begin() + to,
                       [value](std::uint8_t b) { return b == value; });
  };
  const std::size_t size = family == AF_INET ? 4 : 16;
  if (all(0, size, 0)) {
    return "is the unspecified address, which names no host; give the host's own address";
  }
  if (family == AF_INET) {
    if ((bytes[0] & 0xf0) == 0xe0) return "is a multicast address; give the host's own address";
    if (all(0, 4, 0xff)) return "is the broadcast address; give the host's own address";
    return std::nullopt;
  }
  if (bytes[0] == 0xff) return "is a multicast address; give the host's own address";
  if (all(0, 10, 0) && all(10, 12, 0xff)) {
    return "is an IPv4-mapped IPv6 address; write the IPv4 address itself";
  }
  if (bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80) {
    return "is an IPv6 link-local address, which needs an interface scope; give a global or "
           "unique local (fd00::/8) address";
  }
  return std::nullopt;
}

void read_node_address(const toml::table& table, NodeEntry& entry, Problems& problems) {
  if (!read_string(table, "address", "[[node]]", entry.node.address, problems)) {
    if (table.get("address") == nullptr) {
      problems.add_missing(
          entry.line, fmt::format("{} has no address; add address = \"IP\"", node_label(entry)));
    }
    return;
  }
  entry.address_line = line_of(*table.get("address"));
  entry.family = parse_address(entry.node.address, entry.address_bytes);
  if (entry.family == AF_UNSPEC) {
    problems.add(entry.address_line,
                 fmt::format("{}: address \"{}\" is not an IPv4 or IPv6 address", node_label(entry),
                             entry.node.address));
  } else if (auto why = not_a_host(entry.family, entry.address_bytes)) {
    problems.add(entry.address_line,
                 fmt::format("{}: address {} {}", node_label(entry), entry.node.address, *why));
  }
}

std::optional<NodeEntry> read_node(const toml::node& element, std::uint16_t default_port,
                                   const NodeKeyCheck& check_node_keys, Problems& problems) {
  const auto* table = element.as_table();
  if (table == nullptr) {
    problems.add(line_of(element),
                 fmt::format("each node must be a table [[node]], not {}", type_name(element)));
    return std::nullopt;
  }
  check_node_keys(*table, problems);
  NodeEntry entry;
  entry.line = line_of(*table);
  entry.node.port = default_port;
  bool ok = true;
  if (read_string(*table, "name", "[[node]]", entry.node.name, problems)) {
    check_name(*table, "name", "[[node]] name", entry.node.name, problems);
  } else {
    ok = false;
    if (table->get("name") == nullptr) {
      problems.add_missing(entry.line, "[[node]] has no name; add name = \"...\"");
    }
  }
  if (!read_integer(*table, "id", "[[node]]", 1, kMaxNodeId, entry.node.id, problems)) {
    ok = false;
    if (table->get("id") == nullptr) {
      problems.add_missing(
          entry.line, fmt::format("{} has no id; add id = 1 .. {}", node_label(entry), kMaxNodeId));
    }
  }
  read_node_address(*table, entry, problems);
  if (read_integer(*table, "port", "[[node]]", 1, 65535, entry.node.port, problems)) {
    entry.port_line = line_of(*table->get("port"));
  }
  if (!ok || entry.family == AF_UNSPEC) return std::nullopt;
  return entry;
}

}  // namespace

std::vector<NodeEntry> read_nodes(const toml::table& root, std::uint16_t default_port,
                                  const NodeKeyCheck& check_node_keys, Problems& problems) {
  std::vector<NodeEntry> entries;
  const toml::node* node = root.get("node");
  if (node == nullptr) {
    problems.add_missing(kNoLine, "no [[node]] sections; the cluster needs at least one node");
    return entries;
  }
  const auto* array = node->as_array();
  if (array == nullptr) {
    problems.add(
        line_of(*node),
        fmt::format("node must be an array of tables written [[node]], not {}", type_name(*node)));
    return entries;
  }
  if (array->empty()) {
    problems.add(line_of(*node), "node is empty; the cluster needs at least one [[node]]");
  }
  for (const auto& element : *array) {
    if (auto entry = read_node(element, default_port, check_node_keys, problems)) {
      entries.push_back(*entry);
    }
  }
  return entries;
}

// Second pass over the nodes: limits and uniqueness.
void check_nodes(const std::vector<NodeEntry>& entries, Problems& problems) {
  if (entries.size() > ring::kMaxNodes) {
    problems.add(entries[ring::kMaxNodes].line,
                 fmt::format("too many nodes: at most {} are supported", ring::kMaxNodes));
    return;  // and the pairwise checks below stay cheap
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const NodeEntry& later = entries[i];
    for (std::size_t j = 0; j < i; ++j) {
      const NodeEntry& earlier = entries[j];
      const auto& n = later.node;
      if (n.id == earlier.node.id) {
        problems.add(later.line,
                     fmt::format("{}: id {} is already used by node \"{}\" (line {})",
                                 node_label(later), n.id, earlier.node.name, earlier.line));
      }
      if (n.name == earlier.node.name) {
        problems.add(later.line, fmt::format("node name \"{}\" is already used (line {})", n.name,
                                             earlier.line));
      }
      if (later.family == earlier.family && later.address_bytes == earlier.address_bytes) {
        problems.add(
            later.address_line,
            fmt::format("{}: address {} is already used by node \"{}\" (line {})",
                        node_label(later), n.address, earlier.node.name, earlier.address_line));
      }
      if (later.family != earlier.family) {
        problems.add(
            later.address_line,
            fmt::format("{}: address {} is {} but node \"{}\" (line {}) uses {}; all "
                        "nodes must use one address family",
                        node_label(later), n.address, later.family == AF_INET ? "IPv4" : "IPv6",
                        earlier.node.name, earlier.address_line,
                        earlier.family == AF_INET ? "IPv4" : "IPv6"));
      }
    }
  }
}

// Second pass over a multicast or broadcast group: against the nodes' addresses and ports.
void check_group_against_nodes(const TransportConfig& transport, const TransportLines& lines,
                               const std::vector<NodeEntry>& entries, Problems& problems) {
  if (transport.mode == TransportMode::unicast || entries.empty()) return;
  std::array<std::uint8_t, 16> bytes{};
  const int family = parse_address(transport.group, bytes);
  const NodeEntry& first = entries.front();
  if (family != first.family) {
    problems.add(lines.group,
                 fmt::format("[transport] group {} is {} but node \"{}\" (line {}) uses {}; the "
                             "group must be of the nodes' address family",
                             transport.group, family == AF_INET ? "IPv4" : "IPv6", first.node.name,
                             first.address_line, first.family == AF_INET ? "IPv4" : "IPv6"));
  }
  for (const NodeEntry& entry : entries) {
    if (entry.family == family && entry.address_bytes == bytes) {
      problems.add(lines.group,
                   fmt::format("[transport] group {} is the address of node \"{}\" (line {})",
                               transport.group, entry.node.name, entry.address_line));
    }
    if (entry.node.port != transport.port) {
      problems.add(entry.port_line,
                   fmt::format("{}: port {} differs from [transport] port {}; in {} mode every "
                               "node must use the cluster port, where one datagram to the group "
                               "{} reaches them all",
                               node_label(entry), entry.node.port, transport.port,
                               to_string(transport.mode), transport.group));
    }
  }
}

}  // namespace keel::config::detail
