#include "lab/host_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

namespace keel::lab {

namespace {

// TOML basic string: the lab's paths and names hold no quotes or backslashes, but escape anyway.
std::string toml_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// KEY=VALUE with a plain identifier as the key, or nothing.
std::optional<std::pair<std::string, std::string>> split_setting(const std::string& text) {
  const auto equals = text.find('=');
  const std::string key = text.substr(0, std::min(equals, text.size()));
  const bool key_ok = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  const bool one_line = text.find_first_of("\r\n") == std::string::npos;
  if (equals == std::string::npos || !key_ok || !one_line || equals + 1 == text.size()) {
    return std::nullopt;
  }
  return std::pair{key, text.substr(equals + 1)};
}

// "{host}" in the extra TOML stands for the host's own directory, so that per-host files
// (a volume's backing file, its NBD socket) differ between hosts that share one filesystem.
std::string expand_host_dir(std::string text, const std::string& host_dir) {
  for (std::size_t at = text.find("{host}"); at != std::string::npos;
       at = text.find("{host}", at + host_dir.size())) {
    text.replace(at, 6, host_dir);
  }
  return text;
}

}  // namespace

std::string key_path(const std::string& dir) { return dir + "/cluster.key"; }

std::string host_config_toml(const LabState& state, int index, const HostConfigSettings& settings) {
  const HostState& self = state.host(index);
  std::string text = fmt::format(
      "# keel lab {}: host {} (written by `keel lab up`; docs/lab.md)\n"
      "[cluster]\nname = {}\nkey_file = {}\nnode = {}\n",
      state.prefix, self.name, toml_string("lab-" + state.prefix), toml_string(key_path(state.dir)),
      toml_string(self.name));
  for (const auto& host : state.hosts) {
    text += fmt::format("\n[[node]]\nid = {}\nname = {}\naddress = {}\n", host.index,
                        toml_string(host.name), toml_string(host.address));
  }
  text += fmt::format("\n[transport]\nport = {}\n", kRingPort);
  for (const auto& [key, value] : settings.transport) text += key + " = " + value + "\n";
  if (!settings.ring.empty()) {
    text += "\n[ring]\n";
    for (const auto& [key, value] : settings.ring) text += key + " = " + value + "\n";
  }
  text += fmt::format("\n[agent]\ncontrol_socket = {}\nlog_level = {}\nstate_dir = {}\n",
                      toml_string(self.socket), toml_string(settings.log_level),
                      toml_string(self.dir + "/state"));
  if (!settings.extra.empty()) text += "\n" + expand_host_dir(settings.extra, self.dir);
  return text;
}

Result<std::pair<std::string, std::string>> parse_ring_setting(const std::string& text) {
  auto setting = split_setting(text);
  if (!setting) {
    return Error{"ring setting '" + text + "' is not KEY=VALUE (e.g. token_timeout_ms=200)"};
  }
  return *setting;
}

Result<std::pair<std::string, std::string>> parse_transport_setting(const std::string& text) {
  auto setting = split_setting(text);
  if (!setting) {
    return Error{"transport setting '" + text + "' is not KEY=VALUE (e.g. mode=broadcast)"};
  }
  auto& value = setting->second;
  const bool number =
      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!number) value = toml_string(value);
  return *setting;
}

}  // namespace keel::lab
