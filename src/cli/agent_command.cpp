// `keel agent`: runs this host's agent until SIGTERM or SIGINT (src/agent/agent.hpp does the work).
#include <fmt/format.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <asio.hpp>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "agent/agent.hpp"
#include "agent/logging.hpp"
#include "cli/commands.hpp"
#include "cli/hostname.hpp"
#include "config/config.hpp"
#include "io/heap_tuning.hpp"
#include "io/sealed_packet.hpp"

namespace keel::cli {

namespace {

struct AgentFlags {
  std::string config = config::kDefaultConfigPath;
  std::string node;
};

int fail(const std::string& message) {
  fmt::print(stderr, "keel agent: {}\n", message);
  return 1;
}

// Everything the agent needs before it touches the network, or the reason it cannot start.
Result<agent::AgentOptions> prepare(const AgentFlags& flags) {
  auto config = config::load_config(flags.config);
  if (!config.ok()) return config.error();
  if (!flags.node.empty()) config.value().this_node = flags.node;
  auto self = config::resolve_this_node(config.value(), hostname());
  if (!self.ok()) return self.error();
  auto key = io::read_key_file(config.value().key_file);
  if (!key.ok()) return key.error();
  return agent::AgentOptions{std::move(config).value(), std::move(self).value(), key.value()};
}

// The token must be passed on within a few milliseconds however busy the machine is, or a CPU hog
// looks like a dead host. Real-time round robin puts the agent ahead of ordinary processes; it
// sleeps almost all the time, so it takes little from them. Children (hooks, health checks) start
// as ordinary processes again (SCHED_RESET_ON_FORK).
void raise_priority(int priority) {
  if (priority == 0) return;
  sched_param parameters{};
  parameters.sched_priority = priority;
  if (::sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &parameters) != 0) {
    spdlog::warn("cannot run at real-time priority {} ({}); a busy machine may delay the token",
                 priority, std::strerror(errno));
  }
}

// How often the agent looks whether its heap has gone quiet and can be handed back.
constexpr std::chrono::milliseconds kIdleHeapTrimPeriod{2000};

int run_agent(const AgentFlags& flags) {
  auto options = prepare(flags);
  if (!options.ok()) return fail(options.error().message);
  if (auto logging = agent::setup_logging(options.value().config.agent.log_level); !logging.ok()) {
    return fail(logging.error().message);
  }
  std::signal(SIGPIPE, SIG_IGN);  // a vanished control client is an error value, not a signal
  raise_priority(options.value().config.agent.realtime_priority);  // before any thread starts
  if (!io::keep_buffers_in_the_heap()) {
    spdlog::warn("malloc refused keel's thresholds; volume buffers will be mapped afresh");
  }
  asio::io_context io(1);
  io::IdleHeapTrimmer heap_trimmer(io, kIdleHeapTrimPeriod);
  // Before start(): a SIGTERM that arrives from now on leaves the ring cleanly.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  agent::Agent agent(io, std::move(options).value());
  if (auto started = agent.start(); !started.ok()) {
    spdlog::critical("cannot start: {}", started.error().message);
    return fail(started.error().message);
  }
  // Leaves gracefully: floating IPs are handed over first (bounded, see Agent::request_shutdown).
  // The wait is armed again while the agent runs, so that a second signal during the handover
  // stops it at once; once it has stopped, the wait is cancelled so that io.run() can return.
  std::function<void()> wait_for_signal = [&] {
    signals.async_wait([&](const asio::error_code& error, int signal) {
      if (error) return;
      spdlog::info("received {}", ::strsignal(signal));
      agent.request_shutdown();
      if (agent.running()) wait_for_signal();
    });
  };
  agent.set_on_stopped([&signals, &heap_trimmer] {
    asio::error_code ignored;
    signals.cancel(ignored);
    heap_trimmer.stop();
  });
  wait_for_signal();
  heap_trimmer.start();
  try {
    io.run();
  } catch (const std::exception& error) {
    spdlog::critical("stopped by an exception: {}", error.what());
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void register_agent_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<AgentFlags>();
  CLI::App* command = app.add_subcommand(
      "agent",
      "Run this host's keel agent: the ring (membership and ordered messaging) on UDP, and the "
      "control socket that `keel status` and `keel ring` talk to. Runs until SIGTERM or SIGINT, "
      "then leaves the ring so the others re-form at once. Logs go to stderr (the journal under "
      "systemd). Exits 1 with the reason when the config, the key or the sockets are not usable.");
  command->add_option("--config", flags->config, "The cluster's config file")
      ->capture_default_str();
  command->add_option("--node", flags->node,
                      "This host's node name (default: [cluster] node, else the hostname)");
  command->callback([flags, &exit_code] { exit_code = run_agent(*flags); });
}

}  // namespace keel::cli
