// `keel lab`: a keel cluster on this machine, as network namespaces on a bridge, with faults
// (src/lab/lab.hpp does the work; docs/lab.md explains it).
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cli/commands.hpp"
#include "lab/cleanup_guard.hpp"
#include "lab/demo.hpp"
#include "lab/frontends_demo.hpp"
#include "lab/lab.hpp"
#include "lab/network.hpp"

namespace keel::cli {

namespace {

using lab::Lab;

struct LabFlags {
  int hosts = 0;
  std::string prefix;
  std::string dir;
  std::string keel_binary;
  std::vector<std::string> ring_settings;
  std::vector<std::string> transport_settings;
  std::string log_level = "info";
  std::vector<std::string> stand_in;
  int formation_timeout_s = 20;
  bool keep_dir = false;
  bool json = false;
  std::string action;
  std::vector<std::string> arguments;
  std::string host;
  std::vector<std::string> command;
};

int fail(const std::string& what, const std::string& message) {
  fmt::print(stderr, "keel lab {}: {}\n", what, message);
  return 1;
}

// The lab a command acts on, from --dir, --prefix or the only one in /tmp.
Result<Lab> open_lab(const LabFlags& flags) {
  auto dir = Lab::locate(flags.dir, flags.prefix);
  if (!dir) return dir.error();
  return Lab::open(dir.value());
}

int run_up(const LabFlags& flags) {
  if (auto reason = lab::lab_unavailable_reason()) return fail("up", *reason);
  lab::LabOptions options;
  options.hosts = flags.hosts;
  options.prefix = flags.prefix;
  options.dir = flags.dir;
  options.keel_binary = flags.keel_binary;
  options.stand_in = flags.stand_in;
  options.config.log_level = flags.log_level;
  options.formation_timeout = std::chrono::seconds(flags.formation_timeout_s);
  for (const auto& text : flags.ring_settings) {
    auto setting = lab::parse_ring_setting(text);
    if (!setting) return fail("up", setting.error().message);
    options.config.ring.push_back(setting.value());
  }
  for (const auto& text : flags.transport_settings) {
    auto setting = lab::parse_transport_setting(text);
    if (!setting) return fail("up", setting.error().message);
    options.config.transport.push_back(setting.value());
  }
  options.progress = [](const std::string& line) { fmt::print("keel lab up: {}\n", line); };
  // Until the lab is complete, a guard removes it if this command is interrupted.
  std::optional<lab::CleanupGuard> guard;
  std::string guard_error;
  options.on_claimed = [&](const std::string& dir, const std::string& keel) {
    auto armed = lab::CleanupGuard::arm(keel, dir);
    if (armed) guard.emplace(std::move(armed.value()));
    if (!armed) guard_error = armed.error().message;
  };
  auto made = Lab::up(options);
  if (!made) return fail("up", made.error().message);
  if (guard) guard->disarm();
  if (!guard_error.empty()) fmt::print(stderr, "keel lab up: warning: {}\n", guard_error);
  const Lab& lab = made.value();
  fmt::print("lab {} is up in {} ({} hosts).\n", lab.state().prefix, lab.dir(), lab.host_count());
  fmt::print("  keel lab status          what runs and each host's view\n");
  fmt::print("  keel lab fault ...       link-down, freeze, kill, partition, loss, heal ...\n");
  fmt::print("  keel status --socket {}\n", lab.host(1).socket);
  fmt::print("  keel lab down            removes everything\n");
  return 0;
}

nlohmann::json status_json(const Lab& lab) {
  auto value = nlohmann::json::parse(lab::to_json(lab.state()));
  for (auto& host : value["hosts"]) {
    const int index = host["index"].get<int>();
    host["running"] = lab::is_running(lab.host(index).agent);
    auto view = host["running"].get<bool>() && !lab.host(index).frozen
                    ? lab.agent_view(index)
                    : Result<lab::AgentView>(Error{"no agent"});
    if (view) {
      host["view"] = {{"state", view.value().state},
                      {"ring", view.value().ring},
                      {"members", view.value().members}};
    } else {
      host["view"] = nullptr;
    }
  }
  return value;
}

int run_status(const LabFlags& flags) {
  auto opened = open_lab(flags);
  if (!opened) return fail("status", opened.error().message);
  const Lab& lab = opened.value();
  if (flags.json) {
    fmt::print("{}\n", status_json(lab).dump(2));
    return 0;
  }
  const auto& state = lab.state();
  fmt::print("lab {} ({}) in {}\n  bridge {}, nft table bridge {}, network faults: {}\n",
             state.prefix, lab::phase_name(state.phase), state.dir, state.names().bridge(),
             state.names().table(), lab::describe(state.faults));
  fmt::print("  {:<4} {:<13} {:<11} {:<5} {:<16} {}\n", "host", "address", "namespace", "link",
             "agent", "view");
  for (const auto& host : state.hosts) {
    const bool running = lab::is_running(host.agent);
    std::string agent = running ? fmt::format("pid {}", host.agent.pid) : "not running";
    if (running && host.frozen) agent += " frozen";
    std::string view = "-";
    if (running && !host.frozen) {
      auto seen = lab.agent_view(host.index);
      view = seen ? lab::describe(seen.value()) : seen.error().message;
    }
    fmt::print("  {:<4} {:<13} {:<11} {:<5} {:<16} {}\n", host.name, host.address, host.netns,
               host.link_up ? "up" : "down", agent, view);
  }
  return 0;
}

int run_down(const LabFlags& flags) {
  if (!lab::running_as_root()) return fail("down", "not root: run as root");
  auto opened = open_lab(flags);
  if (!opened) return fail("down", opened.error().message);
  Lab& lab = opened.value();
  const std::string prefix = lab.state().prefix;
  if (auto done = lab.down(!flags.keep_dir); !done) return fail("down", done.error().message);
  fmt::print("lab {} removed{}\n", prefix,
             flags.keep_dir ? " (directory kept: " + lab.dir() + ")" : "");
  return 0;
}

Result<Ok> want_arguments(const std::vector<std::string>& args, std::size_t count,
                          const std::string& usage) {
  if (args.size() != count) return Error{"usage: keel lab fault " + usage};
  return Ok{};
}

// A fault on one host; nothing if `action` is not one.
std::optional<Result<std::string>> apply_host_fault(Lab& lab, const std::string& action,
                                                    const std::vector<std::string>& args) {
  using HostFault = Result<Ok> (Lab::*)(int);
  const std::vector<std::tuple<std::string, HostFault, std::string>> host_faults = {
      {"freeze", &Lab::freeze, "agent frozen (SIGSTOP)"},
      {"thaw", &Lab::thaw, "agent thawed (SIGCONT)"},
      {"kill", &Lab::kill_agent, "agent killed (SIGKILL)"},
      {"stop", &Lab::stop_agent, "agent stopped (SIGTERM)"},
      {"start", &Lab::start_agent, "agent started"},
      {"restart", &Lab::restart_agent, "agent restarted"},
      {"link-down", nullptr, "link down"},
      {"link-up", nullptr, "link up"}};
  for (const auto& [name, method, done_text] : host_faults) {
    if (action != name) continue;
    if (auto ok = want_arguments(args, 1, name + " HOST"); !ok) return ok.error();
    auto host = lab::parse_host(args[0], lab.host_count());
    if (!host) return host.error();
    auto done =
        method ? (lab.*method)(host.value()) : lab.set_link(host.value(), name == "link-up");
    if (!done) return done.error();
    return fmt::format("h{}: {}", host.value(), done_text);
  }
  return std::nullopt;
}

Result<Ok> apply_network_fault(Lab& lab, const std::string& action,
                               const std::vector<std::string>& args) {
  const int hosts = lab.host_count();
  if (action == "partition") {
    std::vector<std::vector<int>> groups;
    for (const auto& arg : args) {
      auto group = lab::parse_host_list(arg, hosts);
      if (!group) return group.error();
      groups.push_back(group.value());
    }
    return lab.partition(groups);
  }
  if (action == "cut") {
    if (auto ok = want_arguments(args, 2, "cut FROM TO"); !ok) return ok;
    auto from = lab::parse_host(args[0], hosts);
    auto to = lab::parse_host(args[1], hosts);
    if (!from || !to) return (!from ? from : to).error();
    return lab.cut(from.value(), to.value());
  }
  if (action == "loss") {
    if (auto ok = want_arguments(args, 1, "loss PERCENT"); !ok) return ok;
    const bool digits = !args[0].empty() && args[0].size() <= 3 &&
                        args[0].find_first_not_of("0123456789") == std::string::npos;
    return lab.loss(digits ? std::stoi(args[0]) : -1);
  }
  if (action == "heal") {
    if (auto ok = want_arguments(args, 0, "heal"); !ok) return ok;
    return lab.heal();
  }
  return Error{"unknown fault '" + action + "'; see keel lab fault --help"};
}

Result<std::string> apply_fault(Lab& lab, const std::string& action,
                                const std::vector<std::string>& args) {
  if (auto done = apply_host_fault(lab, action, args)) return std::move(*done);
  if (auto done = apply_network_fault(lab, action, args); !done) return done.error();
  return "network faults now: " + lab::describe(lab.state().faults);
}

int run_fault(const LabFlags& flags) {
  if (!lab::running_as_root()) return fail("fault", "not root: run as root");
  auto opened = open_lab(flags);
  if (!opened) return fail("fault", opened.error().message);
  auto done = apply_fault(opened.value(), flags.action, flags.arguments);
  if (!done) return fail("fault", done.error().message);
  fmt::print("{}\n", done.value());
  return 0;
}

int run_exec(const LabFlags& flags) {
  if (!lab::running_as_root()) return fail("exec", "not root: run as root");
  auto opened = open_lab(flags);
  if (!opened) return fail("exec", opened.error().message);
  auto host = lab::parse_host(flags.host, opened.value().host_count());
  if (!host) return fail("exec", host.error().message);
  std::vector<std::string> argv = {"ip", "netns", "exec", opened.value().host(host.value()).netns};
  argv.insert(argv.end(), flags.command.begin(), flags.command.end());
  std::vector<char*> args;
  for (auto& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  ::execvp("ip", args.data());
  return fail("exec", "cannot run ip: " + std::string(std::strerror(errno)));
}

void add_lab_choice(CLI::App* command, LabFlags& flags) {
  command->add_option("--dir", flags.dir, "The lab's directory (default: the only lab in /tmp)");
  command->add_option("--prefix", flags.prefix,
                      "The lab's prefix (its directory is then "
                      "/tmp/keel-lab-PREFIX)");
}

void register_up(CLI::App* lab, const std::shared_ptr<LabFlags>& flags, int& exit_code) {
  CLI::App* up = lab->add_subcommand(
      "up",
      "Build a lab of N hosts (namespaces PREFIX-h1.. on bridge PREFIX-br, addresses "
      "198.18.0.11..), start their agents and wait for one view of all of them");
  up->add_option("hosts", flags->hosts, "Number of hosts, 1 to 28")
      ->required()
      ->check(CLI::Range(1, lab::kMaxLabHosts));
  up->add_option("--prefix", flags->prefix, "Name prefix (default: kl + 4 hex digits)");
  up->add_option("--dir", flags->dir, "Lab directory (default: /tmp/keel-lab-PREFIX)");
  up->add_option("--keel", flags->keel_binary, "keel binary for the agents (default: this one)");
  up->add_option("--ring", flags->ring_settings,
                 "A [ring] setting for every host, KEY=VALUE (e.g. token_timeout_ms=200); repeat");
  up->add_option("--transport", flags->transport_settings,
                 "A [transport] setting for every host, KEY=VALUE (e.g. mode=broadcast "
                 "group=198.18.0.255: the lab's /24); repeat");
  up->add_option("--log-level", flags->log_level, "Agents' log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  up->add_option("--timeout", flags->formation_timeout_s, "Seconds to wait for the view")
      ->check(CLI::Range(1, 600));
  up->add_option("--stand-in", flags->stand_in,
                 "Run this command in each namespace instead of an agent (plumbing tests)")
      ->expected(1, -1);
  up->callback([flags, &exit_code] { exit_code = run_up(*flags); });
}

void register_fault(CLI::App* lab, const std::shared_ptr<LabFlags>& flags, int& exit_code) {
  CLI::App* fault = lab->add_subcommand("fault", "Inject or clear a fault");
  fault->footer(
      "Faults:\n"
      "  link-down HOST | link-up HOST   the host's veth on the bridge down / up\n"
      "  freeze HOST | thaw HOST         SIGSTOP / SIGCONT to its agent\n"
      "  kill HOST                       SIGKILL to its agent\n"
      "  stop HOST                       SIGTERM to its agent (it leaves the ring cleanly)\n"
      "  start HOST | restart HOST       start its agent (restart kills a running one first)\n"
      "  partition 1,2 3,4,5             drop IPv4 between the groups (name every host once)\n"
      "  cut A B                         drop IPv4 frames from A to B (one way)\n"
      "  loss PCT                        drop PCT% of IPv4 frames entering from every host\n"
      "  heal                            remove partition, cuts and loss\n"
      "HOST is hN or N. Network faults add up; heal clears them all.");
  fault->add_option("fault", flags->action, "The fault")->required();
  fault->add_option("args", flags->arguments, "Its arguments");
  add_lab_choice(fault, *flags);
  fault->callback([flags, &exit_code] { exit_code = run_fault(*flags); });
}

void register_others(CLI::App* lab, const std::shared_ptr<LabFlags>& flags, int& exit_code) {
  CLI::App* status = lab->add_subcommand("status", "Show the lab: hosts, agents, views, faults");
  status->add_flag("--json", flags->json, "The state file and each host's view, as JSON");
  add_lab_choice(status, *flags);
  status->callback([flags, &exit_code] { exit_code = run_status(*flags); });

  CLI::App* down = lab->add_subcommand(
      "down",
      "Stop the lab's processes and remove its namespaces, veths, bridge, nft table and "
      "directory (also finishes a half-built lab)");
  down->add_flag("--keep-dir", flags->keep_dir, "Keep the directory (configs, logs)");
  add_lab_choice(down, *flags);
  down->callback([flags, &exit_code] { exit_code = run_down(*flags); });

  CLI::App* exec = lab->add_subcommand("exec", "Run a command inside a host's namespace");
  exec->add_option("host", flags->host, "hN or N")->required();
  exec->add_option("command", flags->command, "The command, after --")->required();
  exec->footer("Example: keel lab exec h2 -- ip -br addr");
  add_lab_choice(exec, *flags);
  exec->callback([flags, &exit_code] { exit_code = run_exec(*flags); });

  auto demo = std::make_shared<lab::DemoOptions>();
  auto pause_seconds = std::make_shared<double>(1.0);
  CLI::App* demo_command = lab->add_subcommand(
      "demo",
      "A narrated walk through a lab ring: formation, a killed host, a partition and "
      "its merge, ordered messages checked on every host; removes the lab at the end");
  demo_command->add_option("--hosts", demo->hosts, "Number of hosts")->check(CLI::Range(3, 9));
  demo_command->add_option("--pause", *pause_seconds, "Seconds to pause before each part")
      ->check(CLI::Range(0.0, 60.0));
  demo_command->add_option("--prefix", demo->prefix, "The lab's prefix (default: generated)");
  auto frontends = std::make_shared<bool>(false);
  demo_command->add_flag("--frontends", *frontends,
                         "Instead: 4 frontends with nginx and 8 floating IPs, a client probing "
                         "them, through link loss, a dead nginx, a partition and a drain");
  demo_command->callback([demo, pause_seconds, frontends, &exit_code] {
    demo->pause = std::chrono::milliseconds(static_cast<int>(*pause_seconds * 1000));
    if (*frontends) {
      exit_code = lab::run_frontends_demo({demo->pause, demo->prefix});
      return;
    }
    exit_code = lab::run_lab_demo(*demo);
  });

  CLI::App* guard = lab->add_subcommand("guard", "");  // internal: cleanup_guard.hpp
  guard->group("");
  guard->add_option("--dir", flags->dir)->required();
  guard->callback([flags, &exit_code] { exit_code = lab::run_cleanup_guard(flags->dir); });
}

}  // namespace

void register_lab_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<LabFlags>();
  CLI::App* lab = app.add_subcommand(
      "lab",
      "A keel cluster on this machine: hosts as network namespaces on a bridge, real "
      "agents on real UDP, and faults (root only; docs/lab.md)");
  lab->require_subcommand(1);
  register_up(lab, flags, exit_code);
  register_fault(lab, flags, exit_code);
  register_others(lab, flags, exit_code);
}

}  // namespace keel::cli
