// Options shared by the commands that talk to the local agent (`keel status`, `keel ring`):
// where its control socket is.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace keel::cli {

struct ControlOptions {
  std::string config;  // empty: not given
  std::string socket;  // empty: not given

  std::optional<std::string> config_path() const { return given(config); }
  std::optional<std::string> socket_path() const { return given(socket); }

 private:
  static std::optional<std::string> given(const std::string& value) {
    return value.empty() ? std::nullopt : std::optional<std::string>(value);
  }
};

inline void add_control_options(CLI::App& command, ControlOptions& options) {
  auto* config = command.add_option(
      "--config", options.config,
      std::string("Find the agent's control socket in this config file (default: ") +
          config::kDefaultConfigPath + ", else " + config::kDefaultControlSocket + ")");
  auto* socket = command.add_option("--socket", options.socket,
                                    "The agent's control socket (instead of --config)");
  config->excludes(socket);
}

}  // namespace keel::cli
