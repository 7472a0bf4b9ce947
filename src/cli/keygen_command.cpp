// `keel keygen [PATH]`: writes a new random cluster key (io::write_new_key_file does the work).
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "config/config.hpp"
#include "io/sealed_packet.hpp"

namespace keel::cli {
namespace {

// Creates the key's directory (mode 0700) when it is missing; its parent must exist.
Result<Ok> ensure_parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Ok{};
  const std::string parent = path.substr(0, slash);
  if (::mkdir(parent.c_str(), 0700) == 0 || errno == EEXIST) return Ok{};
  return Error{fmt::format("cannot create directory {}: {}", parent, std::strerror(errno))};
}

int run_keygen(const std::string& path) {
  auto made = ensure_parent_directory(path);
  if (made) made = io::write_new_key_file(path);
  if (!made) {
    fmt::print(stderr, "keel keygen: {}\n", made.error().message);
    return 1;
  }
  fmt::print(
      "Wrote a new cluster key to {} (mode 0600).\n"
      "Copy it to the same path on every host of the cluster over a secure channel, keeping the "
      "mode, e.g.\n  scp -p {} root@HOST:{}\n"
      "Hosts with different keys cannot hear each other.\n",
      path, path, path);
  return 0;
}

}  // namespace

void register_keygen_command(CLI::App& app, int& exit_code) {
  auto path = std::make_shared<std::string>(config::kDefaultKeyFile);
  CLI::App* keygen = app.add_subcommand(
      "keygen",
      "Write a new random cluster key (64 hex digits, mode 0600). Every host needs the same key; "
      "an existing file is never overwritten.");
  keygen->add_option("path", *path, "Where to write it")->capture_default_str();
  keygen->callback([path, &exit_code] { exit_code = run_keygen(*path); });
}

}  // namespace keel::cli
