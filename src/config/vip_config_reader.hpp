// parse_config()'s reader of the [vip] section (vip_config.hpp describes the section).
#pragma once

#include <toml++/toml.h>

#include <vector>

#include "config/diagnostics.hpp"
#include "config/vip_config.hpp"

namespace keel::config {
struct NodeConfig;
struct TransportConfig;
}  // namespace keel::config

namespace keel::config::detail {

// Reads [vip] from `root`, if present, into `out`; `nodes` and `transport` are already validated
// (no floating address may be a node's own or the transport's group).
void read_vip(const toml::table& root, const std::vector<NodeConfig>& nodes,
              const TransportConfig& transport, VipConfig& out, Problems& problems);

}  // namespace keel::config::detail
