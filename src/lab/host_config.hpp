// The keel.toml of each lab host: one cluster of all the lab's hosts (node id I, name hI, address
// 198.18.0.(10+I)), this host named in [cluster] node, the key and the control socket in the lab
// directory, and the settings given ([ring] tunables, [transport] mode and group, log level).
// Every host's file differs only in `node` and `control_socket`.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lab/state.hpp"

namespace keel::lab {

struct HostConfigSettings {
  // Lines of the [ring] table, e.g. {"token_timeout_ms", "200"} (values are TOML literals).
  std::vector<std::pair<std::string, std::string>> ring;
  // More lines of the [transport] table (after its port), e.g. {"mode", "\"broadcast\""}.
  std::vector<std::pair<std::string, std::string>> transport;
  std::string log_level = "info";
  // TOML appended after everything else, the same on every host (e.g. [vip] pools) except that
  // "{host}" becomes the host's directory (LAB/hI).
  std::string extra;
};

std::string key_path(const std::string& dir);  // DIR/cluster.key

std::string host_config_toml(const LabState& state, int index, const HostConfigSettings& settings);

// "token_timeout_ms=200" -> {"token_timeout_ms", "200"}; the key must be a plain identifier.
Result<std::pair<std::string, std::string>> parse_ring_setting(const std::string& text);
// "mode=broadcast" -> {"mode", "\"broadcast\""}: as above, but a value that is not a number
// becomes a TOML string.
Result<std::pair<std::string, std::string>> parse_transport_setting(const std::string& text);

}  // namespace keel::lab
