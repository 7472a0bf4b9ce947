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
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
