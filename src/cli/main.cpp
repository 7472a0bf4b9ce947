// keel: one binary for every tool of the project; subcommands register themselves (commands.hpp).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"

namespace {

// For `keel bogus` (or `keel config bogus`) CLI11 says only "A subcommand is required": the word
// it did not know is left over. This names it and the commands there are; nothing when no word
// was left over where a command was wanted.
std::optional<std::string> unknown_command(const CLI::App& app) {
  const CLI::App* at = &app;
  std::string path = "keel";
  while (!at->get_subcommands().empty()) {
    at = at->get_subcommands().back();
    path += " " + at->get_name();
  }
  const std::vector<std::string> left_over = at->remaining();
  if (at->get_require_subcommand_min() == 0 || left_over.empty() ||
      left_over.front().starts_with('-')) {
    return std::nullopt;
  }
  std::string commands;
  for (const CLI::App* command : at->get_subcommands([](const CLI::App* command) {
         return !command->get_name().empty() && !command->get_group().empty();  // not hidden
       })) {
    commands += (commands.empty() ? "" : ", ") + command->get_name();
  }
  return fmt::format("{}: unknown command '{}'; the commands are: {}", path, left_over.front(),
                     commands);
}

}  // namespace

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
    // Only where a command was required and missing: `keel bogus --help` still asks for help.
    const bool required = dynamic_cast<const CLI::RequiredError*>(&error) != nullptr;
    if (auto unknown = required ? unknown_command(app) : std::nullopt) {
      fmt::print(stderr, "{}\nRun with --help for more information.\n", *unknown);
      return 2;
    }
    // --help prints and exits 0; every usage error exits 2 (CLI11's own codes are 100 and up).
    return app.exit(error) == 0 ? 0 : 2;
  }
  return exit_code;
}
