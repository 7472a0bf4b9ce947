// parse_config()'s reader of the [[volume]] sections (volume_config.hpp describes them).
#pragma once

#include <toml++/toml.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.hpp"
#include "config/volume_config.hpp"

namespace keel::config {
struct NodeConfig;
}

namespace keel::config::detail {

// Where each value of a volume came from, for the checks across volumes.
struct VolumeLines {
  int header = kNoLine;
  int name = kNoLine;
  std::array<int, 2> backing{};   // the backing_on key, else the backing key
  std::array<int, 2> metadata{};  // the metadata_on key, else metadata, else the backing line
  int replication_port = kNoLine;
  int nbd_socket = kNoLine;
  int nbd_listen = kNoLine;

  int or_header(int line) const { return line != kNoLine ? line : header; }
};

// `[[volume]] "data"`, or `[[volume]]` while the name is unknown: how messages name a volume.
std::string volume_label(const VolumeConfig& volume);
// The name of configured node `id`.
const std::string& node_name(const std::vector<NodeConfig>& nodes, NodeId id);

// Reads one [[volume]] table: every key on its own, not yet against the other volumes.
VolumeConfig read_volume(const toml::table& table, const std::vector<NodeConfig>& nodes,
                         VolumeLines& lines, Problems& problems);

// The keys a [[volume]] table may hold (its sub-tables backing_on and metadata_on included).
const std::vector<std::string_view>& volume_keys();

// Reads every [[volume]] of `root` into `out`; `nodes` are the already validated nodes, and
// `control_socket` the agent's ([agent] control_socket), which no NBD socket may be.
void read_volumes(const toml::table& root, const std::vector<NodeConfig>& nodes,
                  const std::string& control_socket, std::vector<VolumeConfig>& out,
                  Problems& problems);

}  // namespace keel::config::detail
