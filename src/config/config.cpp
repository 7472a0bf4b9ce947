// parse_config(): TOML text to a validated ClusterConfig.
//
// Checking runs in two passes. The first walks every section and key: unknown names (with a
// suggestion), wrong types, values out of their own range, malformed names and addresses, missing
// required keys. The second, which runs only when the first found nothing, checks what spans
// several values: duplicates across nodes, the address family, the ring tunables together (and
// each against its range, which needs the others for some), and the packet size against the MTU.
// Each pass reports the problem nearest the top of the file, so a person fixing the file one
// message at a time works from top to bottom.
//
// toml++ is used with exceptions (the Debian build of the library has them); the parse error is
// caught here and nothing escapes parse_config(). Text with non-ASCII characters outside
// comments is refused before toml++ sees it (see diagnostics.hpp for why).
#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "config/diagnostics.hpp"
#include "config/node_reader.hpp"
#include "config/toml_fields.hpp"
#include "config/transport_reader.hpp"
#include "config/vip_config_reader.hpp"
#include "config/volume_config_reader.hpp"
#include "core/ring/limits.hpp"
#include "io/datagram_sizes.hpp"
#include "io/unique_fd.hpp"

namespace keel::config {
namespace {

using detail::check_group_against_nodes;
using detail::check_name;
using detail::check_nodes;
using detail::closest;
using detail::kNoLine;
using detail::line_of;
using detail::NodeEntry;
using detail::parse_address;
using detail::printable;
using detail::Problems;
using detail::read_integer;
using detail::read_string;
using detail::read_transport_mode_keys;
using detail::TransportLines;
using detail::type_name;
using detail::valid_name;

constexpr std::size_t kMaxConfigBytes = 1u << 20;
constexpr std::size_t kMaxSocketPathBytes = 107;  // sun_path holds 108 bytes with the NUL
// IPv4's least link MTU (RFC 791). The ring needs more, by the nodes' address family: the second
// pass checks that (fit_packets).
constexpr std::uint32_t kMinMtu = 68;
constexpr std::uint32_t kMaxMtu = 65535;

constexpr std::array kLogLevels = {"trace", "debug", "info", "warn", "error"};

struct Tunable {
  const char* name;
  std::uint32_t ring::RingTunables::*field;
};

// Every ring tunable a config file may set (report_receipts is for the simulator only).
constexpr std::array<Tunable, 12> kTunables = {{
    {"token_timeout_ms", &ring::RingTunables::token_timeout_ms},
    {"token_retransmits", &ring::RingTunables::token_retransmits},
    {"join_timeout_ms", &ring::RingTunables::join_timeout_ms},
    {"consensus_timeout_ms", &ring::RingTunables::consensus_timeout_ms},
    {"probe_interval_ms", &ring::RingTunables::probe_interval_ms},
    {"token_hold_ms", &ring::RingTunables::token_hold_ms},
    {"idle_rotations_before_hold", &ring::RingTunables::idle_rotations_before_hold},
    {"window_size", &ring::RingTunables::window_size},
    {"max_messages_per_visit", &ring::RingTunables::max_messages_per_visit},
    {"max_outstanding_messages", &ring::RingTunables::max_outstanding_messages},
    {"max_packet_bytes", &ring::RingTunables::max_packet_bytes},
    {"max_send_queue_messages", &ring::RingTunables::max_send_queue_messages},
}};

struct Section {
  std::string_view name;   // as written in the file: "cluster", "node", ...
  std::string_view label;  // as written in messages: "[cluster]", "[[node]]", ...
  std::vector<std::string_view> keys;
};

const std::vector<Section>& sections() {
  static const std::vector<Section> all = [] {
    std::vector<Section> s = {
        {"cluster", "[cluster]", {"name", "key_file", "node"}},
        {"node", "[[node]]", {"id", "name", "address", "port"}},
        {"transport", "[transport]", {"port", "mtu", "mode", "group", "multicast_ttl"}},
        {"ring", "[ring]", {}},
        {"agent", "[agent]", {"control_socket", "log_level", "realtime_priority", "state_dir"}},
        {"vip", "[vip]", {"settle_ms", "startup_ms", "handover_ms", "pool"}},
        {"volume", "[[volume]]", detail::volume_keys()},
    };
    for (const auto& t : kTunables) s[3].keys.emplace_back(t.name);
    return s;
  }();
  return all;
}

const Section& section_named(std::string_view name) {
  for (const auto& s : sections()) {
    if (s.name == name) return s;
  }
  KEEL_ASSERT(false);
  return sections().front();
}

// " (it belongs in [ring])" for a key that some other section defines, else nothing.
std::string home_hint(std::string_view name) {
  for (const auto& section : sections()) {
    if (std::find(section.keys.begin(), section.keys.end(), name) != section.keys.end()) {
      return fmt::format(" (it belongs in {})", section.label);
    }
  }
  return "";
}

// Reports keys of `table` that `section` does not define, suggesting the intended name.
void check_keys(const toml::table& table, const Section& section, Problems& problems) {
  detail::check_keys(table, section.label, section.keys, problems, home_hint);
}

// Reports top-level keys that are not a known section.
void check_sections(const toml::table& root, Problems& problems) {
  std::vector<std::string_view> names;
  for (const auto& s : sections()) names.push_back(s.name);
  for (auto&& [key, value] : root) {
    const auto name = key.str();
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    std::string message;
    if (value.is_table() || value.is_array_of_tables()) {
      const char* brackets = value.is_table() ? "[" : "[[";
      const char* closing = value.is_table() ? "]" : "]]";
      message = fmt::format("unknown section {}{}{}", brackets, printable(name), closing);
      if (auto guess = closest(name, names)) {
        message += fmt::format(" (did you mean {}?)", section_named(*guess).label);
      }
    } else {
      message =
          fmt::format("unknown key '{}' outside any section", printable(name)) + home_hint(name);
    }
    problems.add(line_of(key), std::move(message));
  }
}

// Finds a section table; reports it if present but not a table.
const toml::table* section_table(const toml::table& root, std::string_view name,
                                 Problems& problems) {
  const toml::node* node = root.get(name);
  if (node == nullptr) return nullptr;
  if (const auto* table = node->as_table()) {
    check_keys(*table, section_named(name), problems);
    return table;
  }
  problems.add(line_of(*node),
               fmt::format("{} must be a section [{}], not {}", name, name, type_name(*node)));
  return nullptr;
}

void read_cluster(const toml::table& root, ClusterConfig& config, Problems& problems) {
  const toml::table* table = section_table(root, "cluster", problems);
  if (table == nullptr) {
    if (root.get("cluster") == nullptr) {
      problems.add_missing(kNoLine, "no [cluster] section; it needs at least name = \"...\"");
    }
    return;
  }
  if (read_string(*table, "name", "[cluster]", config.cluster_name, problems)) {
    check_name(*table, "name", "[cluster] name", config.cluster_name, problems);
  } else if (table->get("name") == nullptr) {
    problems.add_missing(line_of(*table), "[cluster] has no name; add name = \"...\"");
  }
  if (read_string(*table, "key_file", "[cluster]", config.key_file, problems) &&
      (config.key_file.empty() || config.key_file.front() != '/')) {
    problems.add(
        line_of(*table->get("key_file")),
        fmt::format("[cluster] key_file \"{}\" must be an absolute path", config.key_file));
  }
  std::string node;
  if (read_string(*table, "node", "[cluster]", node, problems)) {
    check_name(*table, "node", "[cluster] node", node, problems);
    config.this_node = node;
  }
}

TransportLines read_transport(const toml::table& root, ClusterConfig& config, Problems& problems) {
  TransportLines lines;
  const toml::table* table = section_table(root, "transport", problems);
  if (table == nullptr) return lines;
  TransportConfig& transport = config.transport;
  read_integer(*table, "port", "[transport]", 1, 65535, transport.port, problems);
  if (read_integer(*table, "mtu", "[transport]", kMinMtu, kMaxMtu, transport.mtu, problems)) {
    lines.mtu = line_of(*table->get("mtu"));
  }
  read_transport_mode_keys(*table, transport, lines, problems);
  return lines;
}

void read_agent(const toml::table& root, ClusterConfig& config, Problems& problems) {
  const toml::table* table = section_table(root, "agent", problems);
  if (table == nullptr) return;
  auto& agent = config.agent;
  if (read_string(*table, "control_socket", "[agent]", agent.control_socket, problems)) {
    const std::string& path = agent.control_socket;
    const int line = line_of(*table->get("control_socket"));
    if (path.empty() || path.front() != '/' || path.size() > kMaxSocketPathBytes) {
      problems.add(
          line, fmt::format("[agent] control_socket must be an absolute path of at most {} bytes",
                            kMaxSocketPathBytes));
    } else if (!detail::names_a_file(path)) {
      problems.add(line, fmt::format("[agent] control_socket \"{}\" names a directory; give the "
                                     "socket a file name, like {}",
                                     path, kDefaultControlSocket));
    }
  }
  if (read_string(*table, "log_level", "[agent]", agent.log_level, problems) &&
      std::find(kLogLevels.begin(), kLogLevels.end(), agent.log_level) == kLogLevels.end()) {
    std::string message = fmt::format(
        "[agent] log_level \"{}\" is not one of trace, debug, info, warn, error", agent.log_level);
    const std::vector<std::string_view> levels(kLogLevels.begin(), kLogLevels.end());
    if (auto guess = closest(agent.log_level, levels)) {
      message += fmt::format(" (did you mean {}?)", *guess);
    }
    problems.add(line_of(*table->get("log_level")), std::move(message));
  }
  read_integer(*table, "realtime_priority", "[agent]", 0, 99, agent.realtime_priority, problems);
  if (read_string(*table, "state_dir", "[agent]", agent.state_dir, problems) &&
      (agent.state_dir.empty() || agent.state_dir.front() != '/')) {
    problems.add(line_of(*table->get("state_dir")), "[agent] state_dir must be an absolute path");
  }
}

// A [ring] key the file sets.
struct TunableLine {
  std::string_view name;
  int line;
  std::optional<std::int64_t> outside;  // the value written, when no uint32 holds it
};
using TunableLines = std::vector<TunableLine>;

// A value no tunable's field can hold is out of every tunable's range (each is at most a few
// hundred thousand). It is stored as this, which ring::validate() refuses for every tunable, so
// that the second pass reports it with the tunable's own range, the value written put back.
constexpr std::uint32_t kOutsideEveryRange = std::numeric_limits<std::uint32_t>::max();

TunableLines read_ring(const toml::table& root, ring::RingTunables& tunables, Problems& problems) {
  TunableLines lines;
  const toml::table* table = section_table(root, "ring", problems);
  if (table == nullptr) return lines;
  constexpr auto kLowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto kHighest = std::numeric_limits<std::int64_t>::max();
  for (const auto& t : kTunables) {
    std::int64_t value = 0;
    if (!read_integer(*table, t.name, "[ring]", kLowest, kHighest, value, problems)) continue;
    lines.push_back({t.name, line_of(*table->get(t.name)), std::nullopt});
    if (value < 0 || value > kOutsideEveryRange) {
      tunables.*t.field = kOutsideEveryRange;
      lines.back().outside = value;
    } else {
      tunables.*t.field = static_cast<std::uint32_t>(value);
    }
  }
  return lines;
}

// The line to blame for a message from ring::validate(): the first tunable it names that the
// file sets, else the [ring] header.
int blame_line(const std::string& message, const TunableLines& set, const toml::table& root) {
  std::size_t best_position = std::string::npos;
  int best_line = kNoLine;
  for (const auto& tunable : set) {
    const std::size_t position = message.find(tunable.name);
    if (position < best_position) {
      best_position = position;
      best_line = tunable.line;
    }
  }
  if (best_line != kNoLine) return best_line;
  const toml::node* section = root.get("ring");
  return section != nullptr ? line_of(*section) : kNoLine;
}

// A message from ring::validate(), noting when the tunable it names is at its default, and
// giving the value written when it was out of the field's type.
std::string ring_message(const std::string& problem, const TunableLines& set) {
  const std::string_view field = std::string_view(problem).substr(0, problem.find(' '));
  const auto found = std::find_if(set.begin(), set.end(),
                                  [&](const TunableLine& entry) { return entry.name == field; });
  if (found == set.end()) {
    return fmt::format("[ring] {} ({} is not set here, so it has its default; set it too)", problem,
                       field);
  }
  std::string message = "[ring] " + problem;
  const std::string stored = fmt::format("(got {})", kOutsideEveryRange);
  if (const auto at = message.rfind(stored); found->outside && at != std::string::npos) {
    message.replace(at, stored.size(), fmt::format("(got {})", *found->outside));
  }
  return message;
}

// Sizes ring packets to the MTU, or checks the size the file sets against it, by the sums the
// transport checks them with (io/datagram_sizes.hpp): a file accepted here is not refused by the
// agent's transport. The ring has a least packet size, so a small MTU is refused outright.
void fit_packets(ClusterConfig& config, int family, const TransportLines& transport_lines,
                 const TunableLines& set, Problems& problems) {
  const bool ipv6 = family == AF_INET6;
  const std::uint32_t mtu = config.transport.mtu;
  const auto fit = static_cast<std::uint32_t>(io::max_ring_packet_bytes(mtu, ipv6));
  const std::string headers =
      fmt::format("the {} ({}), UDP ({}) and seal ({}) headers", ipv6 ? "IPv6" : "IPv4",
                  io::ip_header_bytes(ipv6), io::kUdpHeaderBytes, io::kSealOverheadBytes);
  if (fit < ring::kMinPacketBytes) {
    // The default MTU fits either family: a file that is refused here sets it.
    KEEL_ASSERT(transport_lines.mtu != kNoLine);
    problems.add(transport_lines.mtu,
                 fmt::format("[transport] mtu = {} is too small: the ring's smallest packets ({} "
                             "bytes) with {} need an MTU of at least {}",
                             mtu, ring::kMinPacketBytes, headers,
                             io::min_mtu_for(ring::kMinPacketBytes, ipv6)));
    return;
  }
  const auto explicit_size = std::find_if(set.begin(), set.end(), [](const TunableLine& entry) {
    return entry.name == std::string_view("max_packet_bytes");
  });
  if (explicit_size == set.end()) {
    config.ring.max_packet_bytes = std::min<std::uint32_t>(fit, ring::kMaxPacketBytes);
    return;
  }
  if (config.ring.max_packet_bytes > fit) {
    problems.add(explicit_size->line,
                 fmt::format("[ring] max_packet_bytes = {} does not fit transport mtu = {}: at "
                             "most {} bytes fit after {}",
                             config.ring.max_packet_bytes, mtu, fit, headers));
  }
}

// Second pass: everything that depends on several values.
void check_whole(const toml::table& root, ClusterConfig& config, std::vector<NodeEntry>& entries,
                 const TransportLines& transport_lines, const TunableLines& ring_lines,
                 Problems& problems) {
  check_nodes(entries, problems);
  check_group_against_nodes(config.transport, transport_lines, entries, problems);
  if (config.this_node && std::none_of(entries.begin(), entries.end(), [&](const NodeEntry& e) {
        return e.node.name == *config.this_node;
      })) {
    const toml::node* key = root.at_path("cluster.node").node();
    problems.add(
        line_of(*key),
        fmt::format("[cluster] node \"{}\" is not one of the [[node]] names", *config.this_node));
  }
  const auto ring_problem = ring::validate(config.ring);
  KEEL_ASSERT(ring_problem || std::none_of(ring_lines.begin(), ring_lines.end(),
                                           [](const TunableLine& t) { return t.outside; }));
  if (ring_problem) {
    problems.add(blame_line(*ring_problem, ring_lines, root),
                 ring_message(*ring_problem, ring_lines));
  } else if (!entries.empty()) {
    fit_packets(config, entries.front().family, transport_lines, ring_lines, problems);
  }
  std::sort(entries.begin(), entries.end(),
            [](const NodeEntry& a, const NodeEntry& b) { return a.node.id < b.node.id; });
  for (const auto& entry : entries) config.nodes.push_back(entry.node);
}

Result<ClusterConfig> check(const toml::table& root, const std::string& source) {
  Problems problems(source);
  ClusterConfig config;
  config.source = source;
  check_sections(root, problems);
  read_cluster(root, config, problems);
  const TransportLines transport_lines = read_transport(root, config, problems);
  const auto check_node_keys = [](const toml::table& table, Problems& found) {
    check_keys(table, section_named("node"), found);
  };
  std::vector<NodeEntry> entries =
      detail::read_nodes(root, config.transport.port, check_node_keys, problems);
  const TunableLines ring_lines = read_ring(root, config.ring, problems);
  read_agent(root, config, problems);
  if (problems.any()) return problems.first();
  check_whole(root, config, entries, transport_lines, ring_lines, problems);
  if (problems.any()) return problems.first();
  // [vip] and [[volume]] name nodes, so they are read once the nodes are known to be valid.
  detail::read_vip(root, config.nodes, config.transport, config.vip, problems);
  detail::read_volumes(root, config.nodes, config.agent.control_socket, config.volumes, problems);
  if (problems.any()) return problems.first();
  KEEL_ASSERT(!config.nodes.empty() && config.nodes.size() <= ring::kMaxNodes);
  KEEL_ASSERT(!ring::validate(config.ring));
  return config;
}

std::string configured_names(const ClusterConfig& config) {
  std::string names;
  for (const auto& node : config.nodes) {
    if (!names.empty()) names += ", ";
    names += node.name;
  }
  return names;
}

}  // namespace

const NodeConfig* ClusterConfig::node_by_id(NodeId id) const {
  for (const auto& node : nodes) {
    if (node.id == id) return &node;
  }
  return nullptr;
}

const NodeConfig* ClusterConfig::node_by_name(const std::string& name) const {
  for (const auto& node : nodes) {
    if (node.name == name) return &node;
  }
  return nullptr;
}

std::vector<NodeId> ClusterConfig::node_ids() const {
  std::vector<NodeId> ids;
  ids.reserve(nodes.size());
  for (const auto& node : nodes) ids.push_back(node.id);
  return ids;
}

const VolumeConfig* ClusterConfig::volume_by_name(const std::string& name) const {
  for (const auto& volume : volumes) {
    if (volume.name == name) return &volume;
  }
  return nullptr;
}

Result<ClusterConfig> parse_config(const std::string& text, const std::string& source) {
  if (auto at = detail::find_non_ascii_outside_comments(text)) {
    return Error{
        fmt::format("{}:{}:{}: non-ASCII character outside a comment; keel's "
                    "configuration is ASCII apart from comments",
                    source, at->line, at->column)};
  }
  toml::table root;
  try {
    root = toml::parse(std::string_view(text), std::string_view(source));
  } catch (const toml::parse_error& error) {
    const auto& where = error.source().begin;
    return Error{
        fmt::format("{}:{}:{}: {}", source, where.line, where.column, error.description())};
  }
  return check(root, source);
}

Result<ClusterConfig> load_config(const std::string& path) {
  // O_NONBLOCK: a FIFO given as the config must not hang `keel config check` or the agent until
  // something writes to it; it is refused below, as the key file reader refuses one.
  io::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    return Error{fmt::format("cannot open config file {}: {}", path, std::strerror(errno))};
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return Error{fmt::format("cannot read config file {}: {}", path, std::strerror(errno))};
  }
  if (S_ISDIR(info.st_mode)) {
    return Error{fmt::format("cannot read config file {}: {}", path, std::strerror(EISDIR))};
  }
  if (!S_ISREG(info.st_mode)) {
    return Error{fmt::format("config file {} is not a regular file", path)};
  }
  // One byte past the limit tells a file at the limit from a larger one.
  std::string text(kMaxConfigBytes + 1, '\0');
  std::size_t size = 0;
  while (size < text.size()) {
    const ssize_t got = ::read(fd.get(), text.data() + size, text.size() - size);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return Error{fmt::format("cannot read config file {}: {}", path, std::strerror(errno))};
    }
    if (got == 0) break;
    size += static_cast<std::size_t>(got);
  }
  if (size > kMaxConfigBytes) {
    return Error{fmt::format("config file {} is larger than {} bytes", path, kMaxConfigBytes)};
  }
  text.resize(size);
  return parse_config(text, path);
}

Result<NodeConfig> resolve_this_node(const ClusterConfig& config, const std::string& hostname) {
  if (config.this_node) {
    if (const NodeConfig* node = config.node_by_name(*config.this_node)) return *node;
    return Error{
        fmt::format("this host is set to be node \"{}\", which {} does not configure "
                    "(its nodes: {})",
                    *config.this_node, config.source, configured_names(config))};
  }
  if (const NodeConfig* node = config.node_by_name(hostname)) return *node;
  const std::string short_name = hostname.substr(0, hostname.find('.'));
  if (const NodeConfig* node = config.node_by_name(short_name)) return *node;
  return Error{
      fmt::format("this host's name \"{}\" is not a node in {} (its nodes: {}); set "
                  "node = \"NAME\" in [cluster] or name the node on the command line",
                  hostname, config.source, configured_names(config))};
}

}  // namespace keel::config
