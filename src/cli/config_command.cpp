// `keel config check`: validates a configuration file and the key file it names, then prints
// what the agent would run with.
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.hpp"
#include "cli/hostname.hpp"
#include "config/config.hpp"
#include "io/sealed_packet.hpp"

namespace keel::cli {
namespace {

struct CheckFlags {
  std::string config_path = config::kDefaultConfigPath;
  std::string node;  // empty: [cluster] node, else the hostname
};

void print_volumes(const config::ClusterConfig& config, const std::optional<NodeId>& self) {
  if (config.volumes.empty()) return;
  fmt::print("volumes    {}\n", config.volumes.size());
  for (const auto& volume : config.volumes) {
    std::string exports = volume.nbd_socket;
    if (volume.nbd_listen) {
      const std::string& host = volume.nbd_listen->host;
      const bool v6 = host.find(':') != std::string::npos;
      exports += fmt::format("{}{}:{}", exports.empty() ? "" : " and ",
                             v6 ? "[" + host + "]" : host, volume.nbd_listen->port);
    }
    fmt::print("  {:<20} {} and {}, {}, {}, replication port {}, NBD on {}\n", volume.name,
               config.node_by_id(volume.nodes[0])->name, config.node_by_id(volume.nodes[1])->name,
               format_size(volume.size_bytes), volume.mode == volume::Mode::Sync ? "sync" : "async",
               volume.replication_port, exports);
    if (self && volume.has_node(*self)) {
      fmt::print("  {:<20} this host: backing {}, metadata {}\n", "", volume.backing_for(*self),
                 volume.metadata_for(*self));
    }
  }
}

void print_summary(const config::ClusterConfig& config, const std::optional<NodeId>& self,
                   const std::string& self_note) {
  fmt::print("{}: ok\n", config.source);
  fmt::print("cluster    {}, key file {}: ok\n", config.cluster_name, config.key_file);
  fmt::print("nodes      {}\n", config.nodes.size());
  for (const auto& node : config.nodes) {
    const bool v6 = node.address.find(':') != std::string::npos;
    const std::string endpoint = v6 ? fmt::format("[{}]:{}", node.address, node.port)
                                    : fmt::format("{}:{}", node.address, node.port);
    fmt::print("  {:>5}  {:<20} {}{}\n", node.id, node.name, endpoint,
               self == node.id ? "  <- this host" : "");
  }
  fmt::print("this host  {}\n", self_note);
  fmt::print("transport  port {}, mtu {}: ring packets up to {} bytes\n", config.transport.port,
             config.transport.mtu, config.ring.max_packet_bytes);
  const auto& ring = config.ring;
  fmt::print("ring       token timeout {} ms, consensus timeout {} ms, join timeout {} ms\n",
             ring.token_timeout_ms, ring.consensus_timeout_ms, ring.join_timeout_ms);
  fmt::print("agent      control socket {}, log level {}\n", config.agent.control_socket,
             config.agent.log_level);
  print_volumes(config, self);
}

int run_check(const CheckFlags& flags) {
  auto loaded = config::load_config(flags.config_path);
  if (!loaded) {
    fmt::print(stderr, "keel config check: {}\n", loaded.error().message);
    return 1;
  }
  config::ClusterConfig& config = loaded.value();
  if (auto key = io::read_key_file(config.key_file); !key) {
    fmt::print(stderr, "keel config check: {}\n", key.error().message);
    return 1;
  }
  const bool named = !flags.node.empty() || config.this_node.has_value();
  if (!flags.node.empty()) config.this_node = flags.node;
  const std::string host = hostname();
  auto self = config::resolve_this_node(config, host);
  if (!self && named) {
    fmt::print(stderr, "keel config check: {}\n", self.error().message);
    return 1;
  }
  std::optional<NodeId> self_id;
  std::string note;
  if (self) {
    self_id = self.value().id;
    const char* how = !flags.node.empty() ? "--node" : named ? "[cluster] node" : "the hostname";
    note = fmt::format("{} (id {}, from {})", self.value().name, self.value().id, how);
  } else {
    note = fmt::format(
        "none: the hostname \"{}\" is not a configured node (fine on a host "
        "outside the cluster; use --node NAME to check as one of them)",
        host);
  }
  print_summary(config, self_id, note);
  return 0;
}

}  // namespace

void register_config_command(CLI::App& app, int& exit_code) {
  CLI::App* config_command = app.add_subcommand("config", "Work with keel's configuration file");
  config_command->require_subcommand(1);
  auto flags = std::make_shared<CheckFlags>();
  CLI::App* check = config_command->add_subcommand(
      "check",
      "Validate a configuration file and its key file; print the cluster it describes, or the "
      "first problem (file:line: message) and exit 1");
  check->add_option("--config", flags->config_path, "The configuration file")
      ->capture_default_str();
  check->add_option("--node", flags->node,
                    "Check as this node (default: [cluster] node, else the hostname)");
  check->callback([flags, &exit_code] { exit_code = run_check(*flags); });
}

}  // namespace keel::cli
