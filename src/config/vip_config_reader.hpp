// parse_config()'s reader of the [vip] section (vip_config.hpp describes the section).
#pragma once

#include <toml++/toml.h>

#include <vector>

#include "config/diagnostics.hpp"
#include "config/vip_config.hpp"

namespace keel::config {
struct NodeConfig;
}

namespace keel::config::detail {

// Reads [vip] from `root`, if present, into `out`; `nodes` are the already validated nodes.
void read_vip(const toml::table& root, const std::vector<NodeConfig>& nodes, VipConfig& out,
              Problems& problems);

}  // namespace keel::config::detail
