// keel: one binary for every tool of the project; subcommands register themselves (commands.hpp).
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "keel: a high-availability cluster toolkit (ring membership and ordered messaging, floating "
      "IPs, mirrored volumes).\nRun `keel <command> --help` for a command's options."};
  app.require_subcommand(1);
  int exit_code = 0;
  keel::cli::register_sim_command(app, exit_code);
  keel::cli::register_keygen_command(app, exit_code);
  keel::cli::register_config_command(app, exit_code);
  keel::cli::register_agent_command(app, exit_code);
  keel::cli::register_status_command(app, exit_code);
  keel::cli::register_ring_command(app, exit_code);
  keel::cli::register_lab_command(app, exit_code);
  keel::cli::register_lab_probe_commands(app, exit_code);  // after the lab command
  keel::cli::register_vip_commands(app, exit_code);
  keel::cli::register_volume_commands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // --help prints and exits 0; every usage error exits 2 (CLI11's own codes are 100 and up).
    return app.exit(error) == 0 ? 0 : 2;
  }
  return exit_code;
}
