// Reading one [[volume]] table: each key on its own, with the line of each problem. What spans
// volumes (names, ports, sockets, paths) is checked in volume_config.cpp once all were read.
#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "config/config.hpp"
#include "config/toml_fields.hpp"
#include "config/volume_config_reader.hpp"
#include "core/common/assert.hpp"

namespace keel::config::detail {
namespace {

constexpr std::size_t kMaxSocketPathBytes = 107;  // sun_path holds 108 bytes with the NUL
constexpr std::size_t kMaxPathBytes = 4095;       // PATH_MAX without the NUL

const NodeConfig* find_node(const std::vector<NodeConfig>& nodes, const std::string& name) {
  auto found =
      std::find_if(nodes.begin(), nodes.end(), [&](const auto& n) { return n.name == name; });
  return found == nodes.end() ? nullptr : &*found;
}

std::string no_such_node(const std::vector<NodeConfig>& nodes, const std::string& name,
                         const std::string& where) {
  std::vector<std::string_view> names;
  for (const auto& node : nodes) names.push_back(node.name);
  std::string message = fmt::format("{}: no node is named \"{}\"", where, printable(name));
  if (auto guess = closest(name, names)) message += fmt::format(" (did you mean {}?)", *guess);
  return message;
}

// A size in bytes written as an integer or as a string parse_size() reads.
bool read_size(const toml::table& table, std::string_view key, const std::string& label,
               std::uint64_t& out, Problems& problems) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return false;
  const int line = line_of(*node);
  if (const auto* integer = node->as_integer()) {
    if (integer->get() < 0) {
      problems.add(line, fmt::format("{}: {} must not be negative", label, key));
      return false;
    }
    out = static_cast<std::uint64_t>(integer->get());
    return true;
  }
  const auto* text = node->as_string();
  if (text == nullptr) {
    problems.add(line, fmt::format("{}: {} must be an integer or a string like \"2GiB\", not {}",
                                   label, key, type_name(*node)));
    return false;
  }
  auto bytes = parse_size(text->get());
  if (!bytes) {
    problems.add(line, fmt::format("{}: {} \"{}\" is not a size; write a number of bytes, or one "
                                   "with a suffix K, M, G, T or KiB, MiB, GiB, TiB (powers of "
                                   "1024), like \"2GiB\"",
                                   label, key, printable(text->get())));
    return false;
  }
  out = *bytes;
  return true;
}

void read_size_and_rate(const toml::table& table, const std::string& label, VolumeConfig& volume,
                        Problems& problems) {
  if (read_size(table, "size", label, volume.size_bytes, problems)) {
    const int line = line_of(*table.get("size"));
    if (volume.size_bytes == 0) {
      problems.add(line, fmt::format("{}: size must be more than 0", label));
    } else if (volume.size_bytes % volume::kBlockBytes != 0) {
      problems.add(line, fmt::format("{}: size {} is not a multiple of {} bytes", label,
                                     format_size(volume.size_bytes), volume::kBlockBytes));
    } else if (volume.size_bytes > kMaxVolumeBytes) {
      problems.add(line, fmt::format("{}: size {} is more than the {} a volume may have", label,
                                     format_size(volume.size_bytes), format_size(kMaxVolumeBytes)));
    }
  } else if (table.get("size") == nullptr) {
    problems.add_missing(line_of(table),
                         fmt::format("{} has no size; add size = \"10GiB\"", label));
  }
  if (read_size(table, "resync_rate", label, volume.resync_rate_bytes_s, problems) &&
      volume.resync_rate_bytes_s > kMaxResyncRateBytesS) {
    problems.add(line_of(*table.get("resync_rate")),
                 fmt::format("{}: resync_rate is at most {} per second (0: unlimited)", label,
                             format_size(kMaxResyncRateBytesS)));
  }
}

void read_volume_nodes(const toml::table& table, const std::string& label,
                       const std::vector<NodeConfig>& nodes, VolumeConfig& volume,
                       Problems& problems) {
  std::vector<std::string> names;
  if (!read_string_array(table, "nodes", label, names, problems)) {
    if (table.get("nodes") == nullptr) {
      problems.add_missing(
          line_of(table),
          fmt::format("{} has no nodes; add nodes = [\"NODE1\", \"NODE2\"]", label));
    }
    return;
  }
  const int line = line_of(*table.get("nodes"));
  if (names.size() != 2) {
    problems.add(line, fmt::format("{}: nodes must name exactly two nodes (it names {})", label,
                                   names.size()));
    return;
  }
  // Both or neither: the readers after this one take a set node for a configured one, whose name
  // they may look up (node_name() asserts it is there).
  std::array<NodeId, 2> ids{};
  for (std::size_t i = 0; i < 2; ++i) {
    const NodeConfig* node = find_node(nodes, names[i]);
    if (node == nullptr) {
      problems.add(line, no_such_node(nodes, names[i], label));
      return;
    }
    ids[i] = node->id;
  }
  if (ids[0] == ids[1]) {
    problems.add(line, fmt::format("{}: nodes names \"{}\" twice; a volume is mirrored between two "
                                   "different nodes",
                                   label, printable(names[0])));
    return;
  }
  volume.nodes = ids;
}

bool valid_path(const std::string& path) {
  return !path.empty() && path.front() == '/' && path.back() != '/' && path.size() <= kMaxPathBytes;
}

// One path key (backing or metadata) and its per-node table (backing_on or metadata_on): the path
// of each node in `paths`, the line it came from in `lines`. False if a node has none.
bool read_paths(const toml::table& table, std::string_view key, const std::string& label,
                const std::vector<NodeConfig>& nodes, const VolumeConfig& volume,
                std::array<std::string, 2>& paths, std::array<int, 2>& lines, Problems& problems) {
  auto check = [&](const std::string& path, int line, const std::string& what) {
    if (valid_path(path)) return true;
    problems.add(line, fmt::format("{}: {} \"{}\" must be an absolute path to a file or a device",
                                   label, what, printable(path)));
    return false;
  };
  std::string common;
  if (read_string(table, key, label, common, problems)) {
    const int line = line_of(*table.get(key));
    if (check(common, line, std::string(key))) {
      paths = {common, common};
      lines = {line, line};
    }
  }
  const std::string sub_key = std::string(key) + "_on";
  if (const toml::node* node = table.get(sub_key); node != nullptr && !node->is_table()) {
    problems.add(line_of(*node), fmt::format("{}: {} must be a table ([volume.{}]), not {}", label,
                                             sub_key, sub_key, type_name(*node)));
  } else if (node != nullptr) {
    const toml::table& per_node = *node->as_table();
    for (auto&& [name, value] : per_node) {
      const int line = line_of(name);
      const std::string where = fmt::format("{} {}", label, sub_key);
      const NodeConfig* found = find_node(nodes, std::string(name.str()));
      if (found == nullptr) {
        problems.add(line, no_such_node(nodes, std::string(name.str()), where));
        continue;
      }
      const std::size_t index = found->id == volume.nodes[0] ? 0 : 1;
      std::string path;
      if (!volume.has_node(found->id)) {
        problems.add(line, fmt::format("{}: node \"{}\" is not one of the volume's nodes", where,
                                       found->name));
      } else if (!value.is_string()) {
        problems.add(line,
                     fmt::format("{}: the value must be a path, not {}", where, type_name(value)));
      } else if (read_string(per_node, name.str(), where, path, problems) &&
                 check(path, line, fmt::format("{} {}", sub_key, found->name))) {
        paths[index] = path;
        lines[index] = line;
      }
    }
  }
  return !paths[0].empty() && !paths[1].empty();
}

void read_storage(const toml::table& table, const std::string& label,
                  const std::vector<NodeConfig>& nodes, VolumeConfig& volume, VolumeLines& lines,
                  Problems& problems) {
  // Paths are per node; the nodes' problem comes first.
  if (volume.nodes[0] == kNoNode || volume.nodes[1] == kNoNode) return;
  if (!read_paths(table, "backing", label, nodes, volume, volume.backing, lines.backing,
                  problems)) {
    problems.add_missing(line_of(table),
                         fmt::format("{} has no backing for every node; add backing = "
                                     "\"/var/lib/keel/volumes/NAME.img\" (or [volume.backing_on])",
                                     label));
    return;
  }
  std::array<int, 2> metadata_lines{};
  read_paths(table, "metadata", label, nodes, volume, volume.metadata, metadata_lines, problems);
  for (std::size_t i = 0; i < 2; ++i) {
    if (!volume.metadata[i].empty()) {
      lines.metadata[i] = metadata_lines[i];
      continue;
    }
    // The default sits beside the backing file; beside a device it would be in /dev, a tmpfs.
    lines.metadata[i] = lines.backing[i];
    volume.metadata[i] = volume.backing[i] + kMetadataSuffix;
    if (volume.backing[i].rfind("/dev/", 0) == 0) {
      const std::string& node = node_name(nodes, volume.nodes[i]);
      problems.add(lines.backing[i],
                   fmt::format("{}: the backing {} on node \"{}\" is a device, and the default "
                               "metadata path {} would be in /dev; set metadata_on {} = "
                               "\"/var/lib/keel/{}{}\"",
                               label, volume.backing[i], node, volume.metadata[i], node,
                               printable(volume.name), kMetadataSuffix));
    }
  }
}

// "198.18.0.10:10809" or "[2001:db8::10]:10809", the host made canonical; or nothing.
std::optional<NbdListen> parse_listen(const std::string& text) {
  std::string host;
  std::string port;
  int family = AF_INET;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("]:");
    if (close == std::string::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    family = AF_INET6;
  } else {
    const auto colon = text.find(':');
    if (colon == std::string::npos || text.find(':', colon + 1) != std::string::npos) {
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  std::array<std::uint8_t, 16> bytes{};
  if (inet_pton(family, host.c_str(), bytes.data()) != 1) return std::nullopt;
  NbdListen listen;
  const char* last = port.data() + port.size();
  auto [end, error] = std::from_chars(port.data(), last, listen.port);
  if (error != std::errc{} || end != last || listen.port == 0) return std::nullopt;
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buffer, sizeof buffer);
  listen.host = buffer;
  return listen;
}

void read_export(const toml::table& table, const std::string& label, VolumeConfig& volume,
                 VolumeLines& lines, Problems& problems) {
  if (valid_name(volume.name)) volume.nbd_socket = "/run/keel/nbd-" + volume.name + ".sock";
  if (read_string(table, "nbd_socket", label, volume.nbd_socket, problems)) {
    lines.nbd_socket = line_of(*table.get("nbd_socket"));
    if (!volume.nbd_socket.empty() &&
        (volume.nbd_socket.front() != '/' || volume.nbd_socket.size() > kMaxSocketPathBytes)) {
      problems.add(lines.nbd_socket,
                   fmt::format("{}: nbd_socket must be an absolute path of at most {} bytes, or "
                               "\"\" for none",
                               label, kMaxSocketPathBytes));
    } else if (!volume.nbd_socket.empty() && !names_a_file(volume.nbd_socket)) {
      problems.add(lines.nbd_socket,
                   fmt::format("{}: nbd_socket \"{}\" names a directory; give the socket a file "
                               "name, like /run/keel/nbd-NAME.sock",
                               label, volume.nbd_socket));
    }
  }
  std::string listen;
  if (read_string(table, "nbd_listen", label, listen, problems)) {
    lines.nbd_listen = line_of(*table.get("nbd_listen"));
    volume.nbd_listen = parse_listen(listen);
    if (!volume.nbd_listen) {
      problems.add(lines.nbd_listen,
                   fmt::format("{}: nbd_listen \"{}\" is not ADDRESS:PORT (198.51.100.10:10809, "
                               "or [2001:db8::10]:10809 for IPv6)",
                               label, printable(listen)));
    }
  }
  if (volume.nbd_socket.empty() && !volume.nbd_listen && lines.nbd_socket != kNoLine &&
      lines.nbd_listen == kNoLine) {
    problems.add(lines.nbd_socket,
                 fmt::format("{}: with nbd_socket = \"\" and no nbd_listen the volume has no NBD "
                             "export; set one of them",
                             label));
  }
}

void read_mode(const toml::table& table, const std::string& label, VolumeConfig& volume,
               Problems& problems) {
  std::string mode;
  if (!read_string(table, "mode", label, mode, problems)) return;
  if (mode == "sync") {
    volume.mode = volume::Mode::Sync;
  } else if (mode == "async") {
    volume.mode = volume::Mode::Async;
  } else {
    std::string message =
        fmt::format("{}: mode \"{}\" is not one of sync, async", label, printable(mode));
    if (auto guess = closest(mode, {"sync", "async"})) {
      message += fmt::format(" (did you mean {}?)", *guess);
    }
    problems.add(line_of(*table.get("mode")), std::move(message));
  }
}

}  // namespace

std::string volume_label(const VolumeConfig& volume) {
  return volume.name.empty() ? std::string("[[volume]]")
                             : fmt::format("[[volume]] \"{}\"", printable(volume.name));
}

const std::string& node_name(const std::vector<NodeConfig>& nodes, NodeId id) {
  auto found = std::find_if(nodes.begin(), nodes.end(), [&](const auto& n) { return n.id == id; });
  KEEL_ASSERT(found != nodes.end());
  return found->name;
}

VolumeConfig read_volume(const toml::table& table, const std::vector<NodeConfig>& nodes,
                         VolumeLines& lines, Problems& problems) {
  VolumeConfig volume;
  lines.header = line_of(table);
  check_keys(table, "[[volume]]", volume_keys(), problems);
  if (read_string(table, "name", "[[volume]]", volume.name, problems)) {
    lines.name = line_of(*table.get("name"));
    if (!valid_name(volume.name)) {
      problems.add(lines.name,
                   fmt::format("[[volume]] name \"{}\" must be 1 to {} characters of A-Z, a-z, "
                               "0-9, '.', '_', '-'",
                               printable(volume.name), kMaxNameBytes));
    }
  } else if (table.get("name") == nullptr) {
    problems.add_missing(lines.header, "[[volume]] has no name; add name = \"data\"");
  }
  const std::string label = volume_label(volume);
  read_volume_nodes(table, label, nodes, volume, problems);
  read_size_and_rate(table, label, volume, problems);
  read_storage(table, label, nodes, volume, lines, problems);
  read_mode(table, label, volume, problems);
  if (read_integer(table, "replication_port", label, 1, 65535, volume.replication_port, problems)) {
    lines.replication_port = line_of(*table.get("replication_port"));
  }
  read_export(table, label, volume, lines, problems);
  read_integer(table, "activity_log_extents", label, kMinActivityLogExtents, kMaxActivityLogExtents,
               volume.activity_log_extents, problems);
  read_integer(table, "busy_poll_us", label, 0, kMaxVolumeBusyPollUs, volume.busy_poll_us,
               problems);
  read_bool(table, "write_cache", label, volume.write_cache, problems);
  return volume;
}

}  // namespace keel::config::detail
