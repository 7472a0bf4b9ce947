// ask_agent(): one request to the local agent's control socket, for the commands that only need
// a reply (vip, node, volume). Prints the error as `keel <command>: ...` and returns nothing on
// failure, including a reply with ok = false.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "cli/control_options.hpp"
#include "cli/json_text.hpp"

namespace keel::cli {

inline std::optional<nlohmann::json> ask_agent(const std::string& command,
                                               const ControlOptions& control,
                                               const nlohmann::json& request,
                                               int timeout_ms = 5000) {
  auto fail = [&command](const std::string& message) {
    fmt::print(stderr, "keel {}: {}\n", command, message);
    return std::nullopt;
  };
  auto path = agent::control_socket_path(control.config_path(), control.socket_path());
  if (!path.ok()) return fail(path.error().message);
  auto client = agent::ControlClient::connect(path.value());
  if (!client.ok()) return fail(client.error().message);
  client.value().set_timeout_ms(timeout_ms);
  auto reply = client.value().request(request);
  if (!reply.ok()) return fail(reply.error().message);
  if (reply.value().value("ok", false) != true) return fail(json_text(reply.value(), "error"));
  return reply.value();
}

}  // namespace keel::cli
