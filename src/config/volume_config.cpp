#include "config/volume_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "config/config.hpp"
#include "config/toml_fields.hpp"
#include "config/volume_config_reader.hpp"
#include "core/common/assert.hpp"

namespace keel::config {
namespace {

using detail::node_name;
using detail::Problems;
using detail::volume_label;
using detail::VolumeLines;

// A path spelt one way, without looking at the filesystem: "//" and "/./" gone, ".." applied, no
// trailing '/'. Two paths equal after this name one file (symbolic links aside), so
// "/var/lib/keel//data.img" is the same backing as "/var/lib/keel/data.img".
std::string same_file(const std::string& path) {
  std::string normal = std::filesystem::path(path).lexically_normal().string();
  if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

// A path a volume uses on a node, for finding two uses of one file.
struct PathUse {
  NodeId node;
  const std::string* path;  // as written, for messages
  std::string normal;       // as compared
  std::size_t volume;
  const char* kind;  // "backing" or "metadata"
  int line;
};

void check_paths(const std::vector<VolumeConfig>& volumes, const std::vector<VolumeLines>& lines,
                 const std::vector<NodeConfig>& nodes, Problems& problems) {
  std::vector<PathUse> uses;
  for (std::size_t v = 0; v < volumes.size(); ++v) {
    for (std::size_t i = 0; i < 2; ++i) {
      const std::string& backing = volumes[v].backing[i];
      uses.push_back(
          {volumes[v].nodes[i], &backing, same_file(backing), v, "backing", lines[v].backing[i]});
    }
    for (std::size_t i = 0; i < 2; ++i) {
      const std::string& metadata = volumes[v].metadata[i];
      uses.push_back({volumes[v].nodes[i], &metadata, same_file(metadata), v, "metadata",
                      lines[v].metadata[i]});
    }
  }
  for (std::size_t a = 0; a < uses.size(); ++a) {
    for (std::size_t b = 0; b < a; ++b) {
      const PathUse& use = uses[a];
      const PathUse& other = uses[b];
      if (use.node != other.node || use.normal != other.normal) continue;
      const VolumeConfig& volume = volumes[use.volume];
      const std::string where = fmt::format("{}: {} {} on node \"{}\"", volume_label(volume),
                                            use.kind, *use.path, node_name(nodes, use.node));
      problems.add(
          use.line,
          use.volume == other.volume
              ? fmt::format("{} is also its {}; they must be separate files", where, other.kind)
              : fmt::format("{} is also the {} of volume \"{}\" (line {})", where, other.kind,
                            volumes[other.volume].name, lines[other.volume].header));
    }
  }
}

// Whether TCP listeners on `a` and `b` (canonical literals) and one port can both bind on a host.
// A wildcard takes the port on every address of its family, and "::" (dual stack, as keel binds
// it) on IPv4 ones too.
bool listeners_clash(const std::string& a, const std::string& b) {
  const auto ipv4 = [](const std::string& host) { return host.find(':') == std::string::npos; };
  if (a == b || a == "::" || b == "::") return true;
  if (a == "0.0.0.0") return ipv4(b);
  if (b == "0.0.0.0") return ipv4(a);
  return false;
}

// The TCP ports a volume's NBD listener could take from the replication links on its nodes
// (each listens on its node's address and the volume's replication_port): the agent would find
// out only when it binds, after the other listener took the port.
void check_listen_against_replication(const std::vector<VolumeConfig>& volumes,
                                      const std::vector<VolumeLines>& lines,
                                      const std::vector<NodeConfig>& nodes, Problems& problems) {
  for (std::size_t i = 0; i < volumes.size(); ++i) {
    const VolumeConfig& volume = volumes[i];
    if (!volume.nbd_listen) continue;
    for (std::size_t j = 0; j < volumes.size(); ++j) {
      const VolumeConfig& other = volumes[j];
      if (other.replication_port != volume.nbd_listen->port) continue;
      for (const NodeConfig& node : nodes) {
        if (!volume.has_node(node.id) || !other.has_node(node.id)) continue;
        if (!listeners_clash(volume.nbd_listen->host, node.address)) continue;
        const std::string whose =
            i == j ? std::string("its own replication_port")
                   : fmt::format("the replication_port of volume \"{}\" (line {})", other.name,
                                 lines[j].header);
        problems.add(lines[i].nbd_listen,
                     fmt::format("{}: nbd_listen {} port {} is also {} on node \"{}\" ({}); "
                                 "give them different ports",
                                 volume_label(volume), volume.nbd_listen->host,
                                 volume.nbd_listen->port, whose, node.name, node.address));
        break;
      }
    }
  }
}

// What two volumes may not share: a name, a replication port, an NBD socket or address, a path;
// and what no volume may take from the agent: its control socket.
void check_across(const std::vector<VolumeConfig>& volumes, const std::vector<VolumeLines>& lines,
                  const std::vector<NodeConfig>& nodes, const std::string& control_socket,
                  Problems& problems) {
  for (std::size_t i = 0; i < volumes.size(); ++i) {
    const VolumeConfig& volume = volumes[i];
    const VolumeLines& at = lines[i];
    if (!volume.nbd_socket.empty() && same_file(volume.nbd_socket) == same_file(control_socket)) {
      problems.add(at.or_header(at.nbd_socket),
                   fmt::format("{}: nbd_socket {} is the agent's control socket ([agent] "
                               "control_socket); give the volume a socket of its own",
                               volume_label(volume), volume.nbd_socket));
    }
    for (std::size_t j = 0; j < i; ++j) {
      const VolumeConfig& other = volumes[j];
      const std::string theirs =
          fmt::format("volume \"{}\" (line {})", other.name, lines[j].header);
      if (volume.name == other.name) {
        problems.add(at.or_header(at.name),
                     fmt::format("{}: another volume has this name (line {})", volume_label(volume),
                                 lines[j].header));
      }
      if (volume.replication_port == other.replication_port) {
        problems.add(at.or_header(at.replication_port),
                     fmt::format("{}: replication_port {} is also used by {}; give each volume "
                                 "its own port",
                                 volume_label(volume), volume.replication_port, theirs));
      }
      if (!volume.nbd_socket.empty() && !other.nbd_socket.empty() &&
          same_file(volume.nbd_socket) == same_file(other.nbd_socket)) {
        problems.add(at.or_header(at.nbd_socket),
                     fmt::format("{}: nbd_socket {} is also used by {}", volume_label(volume),
                                 volume.nbd_socket, theirs));
      }
      // The same address and port clash anywhere (a service address moves between nodes); a
      // wildcard only where the two volumes share a node.
      const bool share_node = volume.has_node(other.nodes[0]) || volume.has_node(other.nodes[1]);
      if (volume.nbd_listen && other.nbd_listen &&
          volume.nbd_listen->port == other.nbd_listen->port &&
          (volume.nbd_listen->host == other.nbd_listen->host ||
           (share_node && listeners_clash(volume.nbd_listen->host, other.nbd_listen->host)))) {
        const std::string on_other = volume.nbd_listen->host == other.nbd_listen->host
                                         ? std::string()
                                         : " (on " + other.nbd_listen->host + ")";
        problems.add(at.nbd_listen, fmt::format("{}: nbd_listen port {} on {} is also used by {}{}",
                                                volume_label(volume), volume.nbd_listen->port,
                                                volume.nbd_listen->host, theirs, on_other));
      }
    }
  }
  check_listen_against_replication(volumes, lines, nodes, problems);
  check_paths(volumes, lines, nodes, problems);
}

std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) {
  for (const char c : bytes) {
    hash ^= static_cast<std::uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::uint64_t fnv1a(std::uint64_t hash, std::uint64_t value) {
  char bytes[8];
  for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return fnv1a(hash, std::string_view(bytes, sizeof bytes));
}

}  // namespace

NodeId VolumeConfig::peer_of(NodeId node) const {
  KEEL_ASSERT(has_node(node));
  return node == nodes[0] ? nodes[1] : nodes[0];
}

const std::string& VolumeConfig::backing_for(NodeId node) const {
  KEEL_ASSERT(has_node(node));
  return backing[node == nodes[0] ? 0 : 1];
}

const std::string& VolumeConfig::metadata_for(NodeId node) const {
  KEEL_ASSERT(has_node(node));
  return metadata[node == nodes[0] ? 0 : 1];
}

std::uint64_t volumes_digest(const std::vector<VolumeConfig>& volumes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  // Each string ends with its length so that ("ab", "c") and ("a", "bc") differ.
  auto text = [&hash](const std::string& value) { hash = fnv1a(fnv1a(hash, value), value.size()); };
  for (const VolumeConfig& volume : volumes) {
    text(volume.name);
    for (std::size_t i = 0; i < 2; ++i) {
      hash = fnv1a(hash, volume.nodes[i]);
      text(volume.backing[i]);
      text(volume.metadata[i]);
    }
    for (const std::uint64_t value :
         {volume.size_bytes, static_cast<std::uint64_t>(volume.mode),
          std::uint64_t{volume.replication_port}, volume.resync_rate_bytes_s,
          std::uint64_t{volume.activity_log_extents}}) {
      hash = fnv1a(hash, value);
    }
    text(volume.nbd_socket);
    text(volume.nbd_listen
             ? fmt::format("[{}]:{}", volume.nbd_listen->host, volume.nbd_listen->port)
             : std::string());
  }
  return hash;
}

namespace detail {

const std::vector<std::string_view>& volume_keys() {
  static const std::vector<std::string_view> keys = {"name",
                                                     "nodes",
                                                     "size",
                                                     "backing",
                                                     "metadata",
                                                     "mode",
                                                     "replication_port",
                                                     "resync_rate",
                                                     "nbd_socket",
                                                     "nbd_listen",
                                                     "activity_log_extents",
                                                     "busy_poll_us",
                                                     "write_cache",
                                                     "backing_on",
                                                     "metadata_on"};
  return keys;
}

void read_volumes(const toml::table& root, const std::vector<NodeConfig>& nodes,
                  const std::string& control_socket, std::vector<VolumeConfig>& out,
                  Problems& problems) {
  const toml::node* node = root.get("volume");
  if (node == nullptr) return;
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    problems.add(line_of(*node), "volume must be written as [[volume]] sections");
    return;
  }
  if (array->size() > kMaxVolumes) {
    problems.add(line_of(*array->get(kMaxVolumes)), fmt::format("at most {} volumes", kMaxVolumes));
    return;
  }
  const std::size_t problems_before = problems.count();
  std::vector<VolumeLines> lines;
  for (const toml::node& element : *array) {
    lines.emplace_back();
    out.push_back(read_volume(*element.as_table(), nodes, lines.back(), problems));
  }
  // Defaults left by a field that failed would look like clashes: check across only clean ones.
  if (problems.count() == problems_before) {
    check_across(out, lines, nodes, control_socket, problems);
  }
}

}  // namespace detail
}  // namespace keel::config
