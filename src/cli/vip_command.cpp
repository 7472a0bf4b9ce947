// `keel vip status` and `keel node drain|undrain`: the floating IPs as this host's agent sees
// them, and the planned handover of this host's addresses (docs/vip.md).
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "cli/ask_agent.hpp"
#include "cli/commands.hpp"
#include "cli/control_options.hpp"
#include "cli/json_text.hpp"

namespace keel::cli {

using nlohmann::json;

namespace {

struct VipFlags {
  ControlOptions control;
  bool json = false;
};

std::string age(const json& address) {
  const auto it = address.find("since_ms_ago");
  if (it == address.end() || !it->is_number()) return "-";
  const auto ms = it->get<std::uint64_t>();
  return ms < 10'000 ? fmt::format("{} ms", ms) : fmt::format("{} s", ms / 1000);
}

std::string sync_state(const json& vip) {
  if (vip.value("synced", false)) return vip.value("quiescent", false) ? "settled" : "moving";
  std::string nodes;
  for (const json& node : vip.value("waiting_for", json::array())) {
    nodes += (nodes.empty() ? "" : ", ") + node.dump();
  }
  if (nodes.empty()) return "waiting for the view's states";
  return "waiting for the states of node " + nodes + " (nothing moves until they come)";
}

void print_vip(const json& reply) {
  const json vip = reply.value("vip", json::object());
  fmt::print("this host  {}, {}\n", vip.value("drained", false) ? "drained" : "serving",
             sync_state(vip));
  for (const json& pool : vip.value("pools", json::array())) {
    std::string health = "no check";
    if (pool.contains("health")) {
      health = json_text(pool["health"], "kind") + " " + json_text(pool["health"], "state");
      const std::string error = json_text(pool["health"], "last_error");
      if (error != "-" && !error.empty()) health += " (" + error + ")";
    }
    fmt::print("\npool {}: {} here, health {}\n", json_text(pool, "name"),
               !pool.value("served_here", false)   ? "not served"
               : pool.value("healthy_here", false) ? "eligible"
                                                   : "not eligible",
               health);
    fmt::print("  {:<28} {:<8} {:<6} {:<10} {}\n", "address", "holder", "here", "since", "why");
    for (const json& address : pool.value("addresses", json::array())) {
      fmt::print("  {:<28} {:<8} {:<6} {:<10} {}\n", json_text(address, "address"),
                 json_text(address, "holder"), address.value("held_here", false) ? "yes" : "no",
                 age(address), json_text(address, "why"));
    }
  }
}

}  // namespace

void register_vip_commands(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<VipFlags>();
  CLI::App* vip = app.add_subcommand("vip", "Floating IPs (see docs/vip.md)");
  vip->require_subcommand(1);
  CLI::App* status = vip->add_subcommand(
      "status",
      "Every pool and address: which node holds it, whether this host does, since when and why, "
      "and this host's health check for the pool.");
  add_control_options(*status, flags->control);
  status->add_flag("--json", flags->json, "Print the agent's reply, one JSON object");
  status->callback([flags, &exit_code] {
    auto reply = ask_agent("vip status", flags->control, json{{"op", "vip_status"}});
    if (!reply) {
      exit_code = 1;
      return;
    }
    if (flags->json) {
      fmt::print("{}\n", agent::to_line(*reply));
    } else {
      print_vip(*reply);
    }
    exit_code = 0;
  });

  auto node_flags = std::make_shared<ControlOptions>();
  CLI::App* node = app.add_subcommand("node", "This host's part in the cluster");
  node->require_subcommand(1);
  for (const char* op : {"drain", "undrain"}) {
    const bool draining = std::string(op) == "drain";
    CLI::App* command = node->add_subcommand(
        op, draining ? "Hand this host's floating IPs to the others without refusing a connection: "
                       "each new holder adds and announces an address before this host "
                       "releases it. The host stays in the ring; `undrain` lets it serve again."
                     : "Let this host hold floating IPs again after `keel node drain`; it takes "
                       "its share back as placement decides.");
    add_control_options(*command, *node_flags);
    command->callback([node_flags, op, &exit_code] {
      const std::string name = std::string("node ") + op;
      auto reply = ask_agent(name, *node_flags, json{{"op", op}});
      exit_code = reply ? 0 : 1;
      if (reply) fmt::print("{}: done; `keel vip status` shows the addresses moving\n", op);
    });
  }
}

}  // namespace keel::cli
