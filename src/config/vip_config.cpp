#include "config/vip_config.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <utility>

#include "config/config.hpp"
#include "config/toml_fields.hpp"
#include "config/vip_config_reader.hpp"

namespace keel::config {
namespace {

using detail::closest;
using detail::line_of;
using detail::printable;
using detail::Problems;
using detail::read_integer;
using detail::read_string;
using detail::read_string_array;
using detail::type_name;

const std::vector<std::string_view> kVipKeys = {"settle_ms", "startup_ms", "handover_ms", "pool"};
const std::vector<std::string_view> kPoolKeys = {
    "name",   "addresses",  "interface",  "nodes",  "announce_count", "announce_interval_ms",
    "notify", "on_acquire", "on_release", "prefer", "weights",        "interfaces",
    "health"};
const std::vector<std::string_view> kHealthKeys = {
    "kind",    "address",     "port",       "path", "expect_status",
    "command", "interval_ms", "timeout_ms", "rise", "fall"};
constexpr std::uint32_t kMaxSettleMs = 600'000;
constexpr std::uint32_t kMaxAnnounceCount = 100;
constexpr std::uint32_t kMaxAnnounceIntervalMs = 10'000;

// Node names as the [vip] section uses them.
class NodeNames {
 public:
  explicit NodeNames(const std::vector<NodeConfig>& nodes) : nodes_(nodes) {
    for (const auto& node : nodes) names_.push_back(node.name);
  }
  // The node called `name`, or a problem naming the closest one.
  std::optional<NodeId> find(const std::string& name, int line, std::string_view where,
                             Problems& problems) const {
    for (const auto& node : nodes_) {
      if (node.name == name) return node.id;
    }
    std::string message = fmt::format("{}: no node is named \"{}\"", where, printable(name));
    if (auto guess = closest(name, names_)) message += fmt::format(" (did you mean {}?)", *guess);
    problems.add(line, std::move(message));
    return std::nullopt;
  }
  std::vector<NodeId> all() const {
    std::vector<NodeId> ids;
    for (const auto& node : nodes_) ids.push_back(node.id);
    return ids;
  }

 private:
  const std::vector<NodeConfig>& nodes_;
  std::vector<std::string_view> names_;
};

std::string pool_label(const VipPoolConfig& pool) {
  return pool.name.empty() ? std::string("[[vip.pool]]")
                           : fmt::format("[[vip.pool]] \"{}\"", printable(pool.name));
}

// A sub-table of a pool ([vip.pool.prefer] ...), or nothing; a problem if it is something else.
const toml::table* sub_table(const toml::table& pool, std::string_view key,
                             const std::string& label, Problems& problems) {
  const toml::node* node = pool.get(key);
  if (node == nullptr) return nullptr;
  if (const auto* table = node->as_table()) return table;
  problems.add(line_of(*node), fmt::format("{}: {} must be a table ([vip.pool.{}]), not {}", label,
                                           key, key, type_name(*node)));
  return nullptr;
}

// Where a pool and each of its addresses are written.
struct PoolLines {
  int header = detail::kNoLine;
  std::vector<int> addresses;  // one per entry of VipPoolConfig::addresses
};

// Why a host may not hold `address` as a floating address, or nothing: it names no host, or a
// group, or this host alone, or its prefix's network, broadcast or subnet-router anycast address.
// A /31 or /32 (RFC 3021) has no network or broadcast address, nor has an IPv6 /127 or /128
// (RFC 6164) a subnet-router anycast address: every address of such a prefix is a host's.
std::optional<std::string> not_floatable(const VipAddress& address) {
  const auto& bytes = address.bytes;
  const int bits = address.family == AF_INET ? 32 : 128;
  // Whether every bit from `first` to the end of the address is `value`.
  const auto bits_from = [&](int first, int value) {
    for (int bit = first; bit < bits; ++bit) {
      if ((bytes[bit / 8] >> (7 - bit % 8) & 1) != value) return false;
    }
    return true;
  };
  const auto zero_bytes = [&](std::size_t count) {
    return std::all_of(bytes.begin(), bytes.begin() + count, [](std::uint8_t b) { return b == 0; });
  };
  if (bits_from(0, 0)) return "is the unspecified address, which names no host";
  if (address.family == AF_INET) {
    if (bytes[0] == 0) return "is in 0.0.0.0/8, which names no host";
    if (bytes[0] == 127) return "is a loopback address, which no other host can reach";
    if ((bytes[0] & 0xf0) == 0xe0) return "is a multicast address, which names a group, not a host";
    if (bits_from(0, 1)) return "is the limited broadcast address, which names every host";
    if (address.prefix_length <= 30 && bits_from(address.prefix_length, 0)) {
      return "is the network address of its prefix, which names the subnet, not a host";
    }
    if (address.prefix_length <= 30 && bits_from(address.prefix_length, 1)) {
      return "is the broadcast address of its prefix, which names every host of the subnet";
    }
    return std::nullopt;
  }
  if (zero_bytes(15) && bytes[15] == 1) {
    return "is the loopback address, which no other host can reach";
  }
  if (bytes[0] == 0xff) return "is a multicast address, which names a group, not a host";
  if (zero_bytes(10) && bytes[10] == 0xff && bytes[11] == 0xff) {
    return "is an IPv4-mapped IPv6 address; write the IPv4 address itself";
  }
  if (address.prefix_length <= 126 && bits_from(address.prefix_length, 0)) {
    return "is the subnet-router anycast address of its prefix (all host bits zero), which the "
           "prefix's routers answer";
  }
  return std::nullopt;
}

void read_addresses(const toml::table& table, const std::string& label, VipPoolConfig& pool,
                    PoolLines& lines, Problems& problems) {
  std::vector<std::string> texts;
  if (!read_string_array(table, "addresses", label, texts, problems)) {
    if (table.get("addresses") == nullptr) {
      problems.add_missing(line_of(table), fmt::format("{} has no addresses; add addresses = "
                                                       "[\"198.51.100.10/24\", ...]",
                                                       label));
    }
    return;
  }
  const toml::array& entries = *table.get("addresses")->as_array();
  if (texts.empty()) problems.add(line_of(entries), fmt::format("{}: addresses is empty", label));
  for (std::size_t i = 0; i < texts.size(); ++i) {
    // An array written over several lines has its elements on their own lines.
    const int line = line_of(entries[i]);
    auto address = parse_vip_address(texts[i]);
    if (!address) {
      problems.add(line, fmt::format("{}: \"{}\" is not an IPv4 or IPv6 address with a prefix "
                                     "length (like 198.51.100.10/24 or 2001:db8::10/64)",
                                     label, printable(texts[i])));
      continue;
    }
    if (auto why = not_floatable(*address)) {
      problems.add(line, fmt::format("{}: address {} {}", label, address->text, *why));
      continue;
    }
    pool.addresses.push_back(*address);
    lines.addresses.push_back(line);
  }
}

void read_nodes(const toml::table& table, const std::string& label, const NodeNames& names,
                VipPoolConfig& pool, Problems& problems) {
  std::vector<std::string> wanted;
  if (!read_string_array(table, "nodes", label, wanted, problems)) {
    pool.nodes = names.all();
    return;
  }
  const int line = line_of(*table.get("nodes"));
  for (const auto& name : wanted) {
    if (auto id = names.find(name, line, label, problems)) pool.nodes.push_back(*id);
  }
  std::sort(pool.nodes.begin(), pool.nodes.end());
  if (std::adjacent_find(pool.nodes.begin(), pool.nodes.end()) != pool.nodes.end()) {
    problems.add(line, fmt::format("{}: nodes names a node twice", label));
  }
  if (wanted.empty()) problems.add(line, fmt::format("{}: nodes is empty", label));
}

// A node of this pool named by a key of a sub-table, or a problem.
std::optional<NodeId> pool_node(const VipPoolConfig& pool, const NodeNames& names,
                                const std::string& name, int line, const std::string& where,
                                Problems& problems) {
  auto id = names.find(name, line, where, problems);
  if (!id) return std::nullopt;
  if (!std::binary_search(pool.nodes.begin(), pool.nodes.end(), *id)) {
    problems.add(line, fmt::format("{}: node \"{}\" is not one of the pool's nodes", where,
                                   printable(name)));
    return std::nullopt;
  }
  return id;
}

void read_preferences(const toml::table& table, const std::string& label, const NodeNames& names,
                      VipPoolConfig& pool, Problems& problems) {
  const toml::table* prefer = sub_table(table, "prefer", label, problems);
  if (prefer == nullptr) return;
  const std::string where = label + " prefer";
  for (auto&& [key, value] : *prefer) {
    const int line = line_of(key);
    const auto address = parse_vip_address(std::string(key.str()));
    auto configured =
        std::find_if(pool.addresses.begin(), pool.addresses.end(), [&](const auto& a) {
          return address && a.family == address->family && a.bytes == address->bytes;
        });
    if (configured == pool.addresses.end()) {
      problems.add(line, fmt::format("{}: \"{}\" is not one of the pool's addresses", where,
                                     printable(key.str())));
      continue;
    }
    std::string node;
    if (!value.is_string()) {
      problems.add(line, fmt::format("{}: the value must be a node name", where));
      continue;
    }
    if (!read_string(*prefer, key.str(), where, node, problems)) continue;
    if (auto id = pool_node(pool, names, node, line, where, problems)) {
      pool.preferred[configured->text] = *id;
    }
  }
}

void read_weights(const toml::table& table, const std::string& label, const NodeNames& names,
                  VipPoolConfig& pool, Problems& problems) {
  const toml::table* weights = sub_table(table, "weights", label, problems);
  if (weights == nullptr) return;
  const std::string where = label + " weights";
  for (auto&& [key, value] : *weights) {
    const int line = line_of(key);
    auto id = pool_node(pool, names, std::string(key.str()), line, where, problems);
    const auto* weight = value.as_integer();
    if (weight == nullptr || weight->get() < 1 || weight->get() > vip::kMaxWeight) {
      problems.add(line, fmt::format("{}: a weight must be an integer from 1 to {}", where,
                                     vip::kMaxWeight));
      continue;
    }
    if (id) pool.weights[*id] = static_cast<std::uint32_t>(weight->get());
  }
}

void read_interfaces(const toml::table& table, const std::string& label, const NodeNames& names,
                     VipPoolConfig& pool, Problems& problems) {
  auto valid_interface = [](const std::string& name) {
    return !name.empty() && name.size() <= 15 && name.find('/') == std::string::npos &&
           std::none_of(name.begin(), name.end(), [](char c) { return c == ' ' || c == ':'; });
  };
  if (!read_string(table, "interface", label, pool.interface, problems)) {
    if (table.get("interface") == nullptr) {
      problems.add_missing(line_of(table),
                           fmt::format("{} has no interface; add interface = \"eth0\"", label));
    }
  } else if (!valid_interface(pool.interface)) {
    problems.add(line_of(*table.get("interface")),
                 fmt::format("{}: \"{}\" is not a network interface name", label,
                             printable(pool.interface)));
  }
  const toml::table* overrides = sub_table(table, "interfaces", label, problems);
  if (overrides == nullptr) return;
  const std::string where = label + " interfaces";
  for (auto&& [key, value] : *overrides) {
    const int line = line_of(key);
    auto id = pool_node(pool, names, std::string(key.str()), line, where, problems);
    std::string name;  // stays empty, and so not an interface name, for a value of another type
    if (value.is_string() && !read_string(*overrides, key.str(), where, name, problems)) continue;
    if (!valid_interface(name)) {
      problems.add(line, fmt::format("{}: the value must be a network interface name", where));
      continue;
    }
    if (id) pool.interface_by_node[*id] = name;
  }
}

void read_health(const toml::table& table, const std::string& label, VipPoolConfig& pool,
                 Problems& problems) {
  const toml::table* health = sub_table(table, "health", label, problems);
  if (health == nullptr) return;
  const std::string where = label + " health";
  const std::size_t problems_before = problems.count();
  detail::check_keys(*health, "[vip.pool.health]", kHealthKeys, problems);
  io::HealthCheckConfig check;
  std::string kind;
  if (!read_string(*health, "kind", where, kind, problems)) {
    if (health->get("kind") == nullptr) {
      problems.add_missing(
          line_of(*health),
          fmt::format("{} has no kind; add kind = \"http\", \"tcp\" or \"exec\"", where));
    }
    return;
  }
  if (kind == "http") {
    check.kind = io::HealthCheckKind::kHttp;
  } else if (kind == "tcp") {
    check.kind = io::HealthCheckKind::kTcp;
  } else if (kind == "exec") {
    check.kind = io::HealthCheckKind::kExec;
  } else {
    problems.add(
        line_of(*health->get("kind")),
        fmt::format("{}: kind \"{}\" is not one of http, tcp, exec", where, printable(kind)));
    return;
  }
  check.host = "127.0.0.1";
  read_string(*health, "address", where, check.host, problems);
  read_integer(*health, "port", where, 1, 65535, check.port, problems);
  read_string(*health, "path", where, check.path, problems);
  read_integer(*health, "expect_status", where, 100, 599, check.expected_status, problems);
  std::string command;
  if (read_string(*health, "command", where, command, problems)) {
    auto words = io::split_command(command);
    if (!words) {
      problems.add(line_of(*health->get("command")),
                   fmt::format("{}: command: {}", where, words.error().message));
    } else {
      check.command = std::move(words).value();
    }
  }
  read_integer(*health, "interval_ms", where, 10, 3'600'000, check.interval_ms, problems);
  read_integer(*health, "timeout_ms", where, 10, 3'600'000, check.timeout_ms, problems);
  read_integer(*health, "rise", where, 1, 100, check.rise, problems);
  read_integer(*health, "fall", where, 1, 100, check.fall, problems);
  if (problems.count() != problems_before) return;  // the field's own message says it better
  if (auto valid = io::validate(check); !valid) {
    problems.add(line_of(*health), fmt::format("{}: {}", where, valid.error().message));
    return;
  }
  pool.health = std::move(check);
}

std::optional<VipPoolConfig> read_pool(const toml::table& table, const NodeNames& names,
                                       PoolLines& lines, Problems& problems) {
  VipPoolConfig pool;
  lines.header = line_of(table);
  detail::check_keys(table, "[[vip.pool]]", kPoolKeys, problems);
  if (!read_string(table, "name", "[[vip.pool]]", pool.name, problems) &&
      table.get("name") == nullptr) {
    problems.add_missing(line_of(table), "[[vip.pool]] has no name; add name = \"web\"");
  } else if (!detail::valid_name(pool.name)) {
    problems.add(line_of(*table.get("name")),
                 fmt::format("[[vip.pool]] name \"{}\" must be 1 to {} characters of A-Z, a-z, "
                             "0-9, '.', '_', '-'",
                             printable(pool.name), detail::kMaxNameBytes));
  }
  const std::string label = pool_label(pool);
  read_addresses(table, label, pool, lines, problems);
  read_nodes(table, label, names, pool, problems);
  read_interfaces(table, label, names, pool, problems);
  read_preferences(table, label, names, pool, problems);
  read_weights(table, label, names, pool, problems);
  read_health(table, label, pool, problems);
  read_integer(table, "announce_count", label, 0, kMaxAnnounceCount, pool.announce_count, problems);
  read_integer(table, "announce_interval_ms", label, 1, kMaxAnnounceIntervalMs,
               pool.announce_interval_ms, problems);
  if (read_string_array(table, "notify", label, pool.notify, problems)) {
    std::array<std::uint8_t, 16> bytes{};
    for (const auto& target : pool.notify) {
      if (inet_pton(AF_INET, target.c_str(), bytes.data()) != 1 &&
          inet_pton(AF_INET6, target.c_str(), bytes.data()) != 1) {
        problems.add(
            line_of(*table.get("notify")),
            fmt::format("{}: notify \"{}\" is not an IP address", label, printable(target)));
      }
    }
  }
  for (const char* hook : {"on_acquire", "on_release"}) {
    std::string& command =
        std::string_view(hook) == "on_acquire" ? pool.on_acquire : pool.on_release;
    if (read_string(table, hook, label, command, problems)) {
      if (auto words = io::split_command(command); !words) {
        problems.add(line_of(*table.get(hook)),
                     fmt::format("{}: {}: {}", label, hook, words.error().message));
      }
    }
  }
  return pool;
}

// An address as placement compares them: the prefix length does not make another address.
using AddressKey = std::pair<int, std::array<std::uint8_t, 16>>;

// Problems that span pools, nodes and the transport: a name used twice, an address in two places
// (two pools, a node's own, the group the ring sends to). A name is reported at its pool's line, an
// address at its own, each against the first pool that has the name or the address.
void check_across(const std::vector<VipPoolConfig>& pools, const std::vector<PoolLines>& lines,
                  const std::vector<NodeConfig>& nodes, const TransportConfig& transport,
                  Problems& problems) {
  std::vector<std::pair<AddressKey, const NodeConfig*>> node_addresses;
  for (const auto& node : nodes) {
    // Any prefix length fits either family; only the address is compared.
    if (auto own = parse_vip_address(node.address + "/32")) {
      node_addresses.push_back({{own->family, own->bytes}, &node});
    }
  }
  // Empty in unicast mode; else a multicast group (which no floating address is) or the subnet's
  // broadcast address, which a floating address of a wider prefix may be.
  const auto group = parse_vip_address(transport.group + "/32");
  std::map<std::string, std::size_t> pool_by_name;
  std::map<AddressKey, std::size_t> pool_by_address;
  for (std::size_t i = 0; i < pools.size(); ++i) {
    const std::string label = pool_label(pools[i]);
    if (!pools[i].name.empty()) {
      auto [first, added] = pool_by_name.emplace(pools[i].name, i);
      if (!added) {
        problems.add(lines[i].header, fmt::format("{}: another pool has this name (line {})", label,
                                                  lines[first->second].header));
      }
    }
    for (std::size_t a = 0; a < pools[i].addresses.size(); ++a) {
      const VipAddress& address = pools[i].addresses[a];
      const int line = lines[i].addresses[a];
      const AddressKey key{address.family, address.bytes};
      if (auto [first, added] = pool_by_address.emplace(key, i); !added) {
        const std::size_t j = first->second;
        problems.add(
            line, j == i ? fmt::format("{}: address {} is listed twice", label, address.text)
                         : fmt::format("{}: address {} is also in {} (line {}); pools must "
                                       "not overlap",
                                       label, address.text, pool_label(pools[j]), lines[j].header));
      }
      for (const auto& [own, node] : node_addresses) {
        if (own != key) continue;
        problems.add(line, fmt::format("{}: address {} is node \"{}\"'s own address; a floating "
                                       "address must be a separate one",
                                       label, address.text, node->name));
      }
      if (group && AddressKey{group->family, group->bytes} == key) {
        problems.add(line, fmt::format("{}: address {} is the [transport] group the ring sends "
                                       "to; a floating address must be a separate one",
                                       label, address.text));
      }
    }
  }
}

// The core holds at most vip::kMaxAddresses floating addresses over all pools (and its VipNode
// stops the agent on more): the entry that goes over is the one to fix.
void check_total(const std::vector<VipPoolConfig>& pools, const std::vector<PoolLines>& lines,
                 Problems& problems) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < pools.size(); ++i) {
    for (std::size_t a = 0; a < pools[i].addresses.size(); ++a) {
      if (++total <= vip::kMaxAddresses) continue;
      problems.add(
          lines[i].addresses[a],
          fmt::format("{}: address {} is floating address {}; all pools together may "
                      "hold at most {}",
                      pool_label(pools[i]), pools[i].addresses[a].text, total, vip::kMaxAddresses));
      return;
    }
  }
}

}  // namespace

const std::string& VipPoolConfig::interface_for(NodeId node) const {
  auto found = interface_by_node.find(node);
  return found == interface_by_node.end() ? interface : found->second;
}

std::optional<VipAddress> parse_vip_address(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos || slash + 1 >= text.size()) return std::nullopt;
  VipAddress address;
  const std::string host = text.substr(0, slash);
  if (inet_pton(AF_INET, host.c_str(), address.bytes.data()) == 1) {
    address.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), address.bytes.data()) == 1) {
    address.family = AF_INET6;
  } else {
    return std::nullopt;
  }
  const char* first = text.data() + slash + 1;
  const char* last = text.data() + text.size();
  auto [end, error] = std::from_chars(first, last, address.prefix_length);
  const int max = address.family == AF_INET ? 32 : 128;
  if (error != std::errc{} || end != last || address.prefix_length < 1 ||
      address.prefix_length > max) {
    return std::nullopt;
  }
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(address.family, address.bytes.data(), buffer, sizeof buffer);
  address.text = std::string(buffer) + "/" + std::to_string(address.prefix_length);
  return address;
}

vip::VipConfig core_vip_config(const VipConfig& config) {
  vip::VipConfig core;
  core.settle_us = static_cast<TimeUs>(config.settle_ms) * 1000;
  core.startup_us = static_cast<TimeUs>(config.startup_ms) * 1000;
  for (const auto& pool : config.pools) {
    vip::PoolConfig core_pool;
    core_pool.name = pool.name;
    for (const auto& address : pool.addresses) core_pool.addresses.push_back(address.text);
    core_pool.nodes = pool.nodes;
    core_pool.preferred = pool.preferred;
    core_pool.weights = pool.weights;
    core.pools.push_back(std::move(core_pool));
  }
  return core;
}

namespace detail {

void read_vip(const toml::table& root, const std::vector<NodeConfig>& nodes,
              const TransportConfig& transport, VipConfig& out, Problems& problems) {
  const toml::node* node = root.get("vip");
  if (node == nullptr) return;
  const auto* vip = node->as_table();
  if (vip == nullptr) {
    problems.add(line_of(*node),
                 fmt::format("vip must be a section [vip], not {}", type_name(*node)));
    return;
  }
  check_keys(*vip, "[vip]", kVipKeys, problems);
  read_integer(*vip, "settle_ms", "[vip]", 0, kMaxSettleMs, out.settle_ms, problems);
  read_integer(*vip, "startup_ms", "[vip]", 0, kMaxSettleMs, out.startup_ms, problems);
  read_integer(*vip, "handover_ms", "[vip]", 0, kMaxSettleMs, out.handover_ms, problems);
  const toml::node* pools = vip->get("pool");
  if (pools == nullptr) return;
  const auto* array = pools->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    problems.add(line_of(*pools), "vip.pool must be written as [[vip.pool]] sections");
    return;
  }
  const NodeNames names(nodes);
  std::vector<PoolLines> lines;
  for (const toml::node& element : *array) {
    PoolLines pool_lines;
    if (auto pool = read_pool(*element.as_table(), names, pool_lines, problems)) {
      out.pools.push_back(std::move(*pool));
      lines.push_back(std::move(pool_lines));
    }
  }
  if (out.pools.size() > vip::kMaxPools) {
    problems.add(line_of(*pools), fmt::format("at most {} pools", vip::kMaxPools));
  }
  check_total(out.pools, lines, problems);
  check_across(out.pools, lines, nodes, transport, problems);
}

}  // namespace detail
}  // namespace keel::config
