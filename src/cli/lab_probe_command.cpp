// `keel lab serve` and `keel lab probe`: the lab's HTTP responder and prober (src/lab/probe.hpp),
// run inside the lab's namespaces by the floating-IP tests, the demo and the benchmark.
#include <fmt/format.h>

#include <memory>

#include "cli/commands.hpp"
#include "lab/probe.hpp"

namespace keel::cli {

void register_lab_probe_commands(CLI::App& app, int& exit_code) {
  CLI::App* lab = app.get_subcommand("lab");
  auto serve = std::make_shared<lab::ServeOptions>();
  CLI::App* serve_command = lab->add_subcommand(
      "serve", "Answer every HTTP request on PORT with this host's name (run in a lab host)");
  serve_command->add_option("--port", serve->port, "TCP port")->capture_default_str();
  serve_command->add_option("--name", serve->name, "The name to answer with")->required();
  serve_command->callback([serve, &exit_code] {
    auto served = lab::run_http_responder(*serve);
    fmt::print(stderr, "keel lab serve: {}\n", served ? "stopped" : served.error().message);
    exit_code = 1;
  });

  auto probe = std::make_shared<lab::ProbeOptions>();
  CLI::App* probe_command = lab->add_subcommand(
      "probe",
      "Connect to every TARGET over and over and log one JSON line per attempt (run in the lab's "
      "client namespace)");
  probe_command->add_option("--target", probe->targets, "IPv4 addresses to probe")->required();
  probe_command->add_option("--port", probe->port, "TCP port")->capture_default_str();
  probe_command->add_option("--interval-ms", probe->interval_ms, "Time between probes of a target")
      ->capture_default_str();
  probe_command->add_option("--timeout-ms", probe->timeout_ms, "A probe slower than this fails")
      ->capture_default_str();
  probe_command
      ->add_option("--in-flight", probe->in_flight,
                   "Probes of one target in flight at once: more than 1 starts one every interval "
                   "even while earlier ones wait for their timeout")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  probe_command->add_option("--out", probe->out, "The log file (appended)")->required();
  probe_command->callback([probe, &exit_code] {
    auto probed = lab::run_prober(*probe);
    fmt::print(stderr, "keel lab probe: {}\n", probed ? "stopped" : probed.error().message);
    exit_code = 1;
  });
}

}  // namespace keel::cli
