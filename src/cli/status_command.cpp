// `keel status`: asks the local agent for its status over the control socket and prints it as a
// table, or as the agent's JSON object with --json.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "cli/commands.hpp"
#include "cli/control_options.hpp"
#include "cli/json_text.hpp"

namespace keel::cli {

using nlohmann::json;

namespace {

constexpr int kReplyTimeoutMs = 5000;

struct StatusFlags {
  ControlOptions control;
  bool json = false;
};

// A number from the reply, or 0 when the field is missing.
std::uint64_t number(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

std::string text(const json& object, const char* key) { return json_text(object, key); }

std::string join_members(const json& members) {
  std::string out;
  for (const json& member : members) {
    if (!out.empty()) out += ", ";
    out += text(member, "id") + " " + text(member, "name");
  }
  return out.empty() ? "none" : out;
}

std::string rejected_text(const json& rejected) {
  std::uint64_t total = 0;
  std::string detail;
  for (const auto& [reason, count] : rejected.items()) {
    if (!count.is_number_unsigned() || count.get<std::uint64_t>() == 0) continue;
    total += count.get<std::uint64_t>();
    detail +=
        fmt::format("{}{} {}", detail.empty() ? "" : ", ", reason, count.get<std::uint64_t>());
  }
  return detail.empty() ? "0" : fmt::format("{} ({})", total, detail);
}

void print_peers(const json& peers) {
  fmt::print("\n{:<5} {:<16} {:<28} {:>12} {:>10}  {}\n", "peer", "name", "address", "last heard",
             "opened", "rejected");
  for (const json& peer : peers) {
    const auto heard = peer.find("last_heard_ms");
    const std::string last_heard = heard == peer.end() || heard->is_null()
                                       ? "never"
                                       : fmt::format("{} ms ago", heard->get<std::uint64_t>());
    fmt::print("{:<5} {:<16} {:<28} {:>12} {:>10}  {}\n", text(peer, "id"), text(peer, "name"),
               text(peer, "address"), last_heard, number(peer, "packets_opened"),
               rejected_text(peer.value("rejected", json::object())));
  }
}

void print_counters(const json& ring, const json& transport) {
  fmt::print(
      "\nring       packets sent {}, received {}, rejected {}; messages submitted {}, delivered "
      "{};\n           ring messages broadcast {}, retransmitted {}; tokens received {}, "
      "retransmitted {};\n           views installed {}, gathers entered {}\n",
      number(ring, "packets_sent"), number(ring, "packets_received"),
      number(ring, "packets_rejected"), number(ring, "messages_submitted"),
      number(ring, "messages_delivered"), number(ring, "ring_messages_broadcast"),
      number(ring, "retransmissions"), number(ring, "tokens_received"),
      number(ring, "tokens_retransmitted"), number(ring, "views_installed"),
      number(ring, "gathers_entered"));
  fmt::print(
      "transport  datagrams sent {}, send errors {}, receive errors {}; packets opened {};\n"
      "           dropped: malformed {}, forged {}, replayed {}, unknown sender {}; from "
      "unconfigured addresses {}\n",
      number(transport, "datagrams_sent"), number(transport, "send_errors"),
      number(transport, "receive_errors"), number(transport, "opened"),
      number(transport, "malformed"), number(transport, "forged"), number(transport, "replayed"),
      number(transport, "unknown_sender"),
      rejected_text(transport.value("dropped_from_unconfigured", json::object())));
}

void print_table(const json& status) {
  const json node = status.value("node", json::object());
  fmt::print("node       {} {} ({}), cluster {}, pid {}, up {} s\n", text(node, "id"),
             text(node, "name"), text(node, "address"), text(status, "cluster"),
             number(status, "pid"), number(status, "uptime_ms") / 1000);
  fmt::print("state      {}\n", text(status, "state"));
  const json members = status.value("members", json::array());
  fmt::print("ring       {} ({} members)\n", text(status, "ring"), members.size());
  fmt::print("members    {}\n", join_members(members));
  std::string groups;
  for (const json& group : status.value("groups", json::array())) {
    groups += (groups.empty() ? "" : ", ") + group.get<std::string>();
  }
  fmt::print("groups     {}\n", groups.empty() ? "none" : groups);
  fmt::print("send queue {}\n", number(status, "send_queue"));
  print_peers(status.value("peers", json::array()));
  print_counters(status.value("ring_stats", json::object()),
                 status.value("transport_stats", json::object()));
}

int run_status(const StatusFlags& flags) {
  auto fail = [](const std::string& message) {
    fmt::print(stderr, "keel status: {}\n", message);
    return 1;
  };
  auto path = agent::control_socket_path(flags.control.config_path(), flags.control.socket_path());
  if (!path.ok()) return fail(path.error().message);
  auto client = agent::ControlClient::connect(path.value());
  if (!client.ok()) return fail(client.error().message);
  client.value().set_timeout_ms(kReplyTimeoutMs);
  auto reply = client.value().request(json{{"op", "status"}});
  if (!reply.ok()) return fail(reply.error().message);
  if (reply.value().value("ok", false) != true) return fail(text(reply.value(), "error"));
  if (flags.json) {
    fmt::print("{}\n", agent::to_line(reply.value()));
  } else {
    print_table(reply.value());
  }
  return 0;
}

}  // namespace

void register_status_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* command = app.add_subcommand(
      "status",
      "Show this host's agent: its node, ring state, current ring and members, every peer (last "
      "heard, packets rejected and why) and the ring and transport counters.");
  add_control_options(*command, flags->control);
  command->add_flag("--json", flags->json, "Print the agent's status reply, one JSON object");
  command->callback([flags, &exit_code] { exit_code = run_status(*flags); });
}

}  // namespace keel::cli
