// The `keel` binary's subcommands. Each lives in its own file and registers itself on the App:
// it adds a subcommand with its options and a callback that runs it and stores the process exit
// code in `exit_code`. main.cpp calls every register function, then parses.
#pragma once

#include <CLI/CLI.hpp>

namespace keel::cli {

void register_sim_command(CLI::App& app, int& exit_code);
void register_keygen_command(CLI::App& app, int& exit_code);
void register_config_command(CLI::App& app, int& exit_code);
void register_agent_command(CLI::App& app, int& exit_code);
void register_status_command(CLI::App& app, int& exit_code);
void register_ring_command(CLI::App& app, int& exit_code);
void register_lab_command(CLI::App& app, int& exit_code);
void register_lab_probe_commands(CLI::App& app, int& exit_code);  // lab serve, lab probe
void register_vip_commands(CLI::App& app, int& exit_code);        // vip, node
void register_volume_commands(CLI::App& app, int& exit_code);

}  // namespace keel::cli
