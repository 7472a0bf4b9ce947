// `keel volume ...`: mirrored volumes (docs/volume.md). `create` works on this host's files
// directly (before the agent serves the volume); the others ask the local agent.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli/ask_agent.hpp"
#include "cli/commands.hpp"
#include "cli/json_text.hpp"
#include "cli/volume_create.hpp"

namespace keel::cli {

using nlohmann::json;

namespace {

struct VolumeFlags {
  ControlOptions control;
  std::string volume;
  bool json = false;
  bool force = false;
  bool discard_local = false;
  bool discard_peer = false;
  VolumeCreateOptions create;
};

std::string bytes_text(std::uint64_t bytes) {
  if (bytes < 10 * 1024) return fmt::format("{} B", bytes);
  if (bytes < 10ull << 20) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  if (bytes < 10ull << 30) return fmt::format("{:.1f} MiB", bytes / 1048576.0);
  return fmt::format("{:.1f} GiB", bytes / 1073741824.0);
}

// At the rate so far: ", about 12 min left" (nothing before the rate is known).
std::string time_left_text(std::uint64_t total, std::uint64_t done, std::uint64_t rate) {
  if (rate == 0 || done >= total) return "";
  const std::uint64_t seconds = (total - done + rate - 1) / rate;
  if (seconds < 90) return fmt::format(", about {} s left", seconds);
  const std::uint64_t minutes = (seconds + 30) / 60;
  if (minutes < 90) return fmt::format(", about {} min left", minutes);
  return fmt::format(", about {} h {} min left", minutes / 60, minutes % 60);
}

void print_volume(const json& volume) {
  if (volume.contains("error")) {  // the volume's thread did not answer (a stalled disk)
    fmt::print("volume {}: NO ANSWER: {}\n", json_text(volume, "name"), json_text(volume, "error"));
    return;
  }
  const json peer = volume.value("peer", json::object());
  const bool not_serving_yet =
      json_text(volume, "role") == "Primary" && !volume.value("serving", false);
  fmt::print(
      "volume {}: {}{} {}{}, link {}{}\n", json_text(volume, "name"), json_text(volume, "role"),
      not_serving_yet ? " (not serving)" : "", json_text(volume, "disk"),
      volume.value("blank", false) ? " (new and empty)" : "", json_text(volume, "link"),
      volume.value("suspended", false) ? ", I/O SUSPENDED until the peer is recorded outdated"
                                       : "");
  fmt::print("  peer      {} ({}): {}\n", json_text(peer, "name"), json_text(peer, "node"),
             peer.contains("role") ? json_text(peer, "role") + " " + json_text(peer, "disk")
                                   : std::string("not connected"));
  fmt::print("  quorum    {}{}\n", volume.value("quorum", false) ? "yes" : "no",
             volume.value("peer_outdated", false) ? "; the peer's copy is recorded outdated" : "");
  fmt::print("  out of sync {}\n", bytes_text(volume.value("out_of_sync_bytes", 0ull)));
  const json resync = volume.value("resync", json::object());
  if (resync.value("total_bytes", 0ull) > 0) {
    const auto total = resync.value("total_bytes", 0ull);
    const auto done = resync.value("done_bytes", 0ull);
    const auto rate = resync.value("rate_bytes_s", 0ull);
    fmt::print("  resync    {} of {} ({:.1f}%), {}/s{}, {} blocks copied\n", bytes_text(done),
               bytes_text(total), total ? 100.0 * static_cast<double>(done) / total : 100.0,
               bytes_text(rate), time_left_text(total, done, rate), resync.value("blocks", 0ull));
  } else if (resync.value("blocks", 0ull) > 0) {
    fmt::print("  resync    last one copied {} blocks\n", resync.value("blocks", 0ull));
  }
  const json verify = volume.value("verify", json::object());
  if (verify.value("running", false) || verify.value("done_bytes", 0ull) > 0) {
    fmt::print("  verify    {}{}, {} checked, {} blocks differ\n",
               verify.value("running", false) ? "running" : "done",
               verify.value("running", false) ? "" : "",
               bytes_text(verify.value("done_bytes", 0ull)),
               verify.value("mismatched_blocks", 0ull));
  }
  const std::string refused = json_text(volume, "refused_reason");
  if (!refused.empty() && refused != "-") fmt::print("  REFUSED   {}\n", refused);
  const std::string disk_error = json_text(volume, "disk_error");
  if (!disk_error.empty() && disk_error != "-") fmt::print("  DISK      {}\n", disk_error);
  const std::string metadata_error = json_text(volume, "metadata_error");
  if (!metadata_error.empty() && metadata_error != "-") {
    fmt::print("  METADATA  {} (tried again every second)\n", metadata_error);
    if (volume.value("stepping_down", false)) {
      // The demote that ends the step-down waits for the Inconsistent mark to be on disk or in
      // the journal, so the peer refuses a promote meanwhile (docs/volume.md).
      fmt::print(
          "  HINT      this copy stays primary, serving nothing, until its Inconsistent mark is "
          "written; to fail over now, stop this node's agent and promote the peer, and do not "
          "promote this copy again before it has resynced from the peer\n");
    }
  }
  const json nbd = volume.value("nbd", json::object());
  fmt::print("  nbd       {}, {} connection(s)\n", json_text(nbd, "export"),
             nbd.value("connections", 0ull));
}

void add_volume_argument(CLI::App& command, VolumeFlags& flags) {
  command.add_option("volume", flags.volume, "The volume's name ([[volume]] name)")->required();
}

// Promote and demote take effect once something durable is done: a promote once this copy's
// new role is on disk, a demote once the writes in flight are durable on both copies (or,
// without the peer, recorded through the ring). The agent starts them and answers at once, so
// that its own loop never waits; the command waits here, reading the volume's status, until the
// copy serves (promote) or is no longer primary (demote). When it returns 0, clients may connect,
// or the other node may be promoted.
constexpr auto kRoleChangeWait = std::chrono::seconds(10);
constexpr auto kRoleChangePoll = std::chrono::milliseconds(20);

// When a command's change counts as done.
enum class TakesEffect { on_reply, when_serving, when_secondary };

int wait_for_role_change(const VolumeFlags& flags, const std::string& name, TakesEffect effect) {
  const bool promote = effect == TakesEffect::when_serving;
  const auto deadline = std::chrono::steady_clock::now() + kRoleChangeWait;
  for (;;) {
    auto status = ask_agent("volume " + name, flags.control,
                            json{{"op", "volume_status"}, {"volume", flags.volume}});
    if (!status) return 1;
    const json volumes = status->value("volumes", json::array());
    const auto entry = std::find_if(volumes.begin(), volumes.end(), [&](const json& volume) {
      return volume.value("name", "") == flags.volume;
    });
    if (entry == volumes.end()) {
      fmt::print(stderr, "keel volume {}: the agent no longer reports volume {}\n", name,
                 flags.volume);
      return 1;
    }
    // Only what the volume's thread reports counts: an entry without a role (its thread did not
    // answer, its disk stalled) says nothing about whether the change took effect.
    const bool done =
        promote ? entry->value("serving", false) : json_text(*entry, "role") == "Secondary";
    if (done) {
      fmt::print("volume {}: {} done\n", flags.volume, name);
      return 0;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      const std::string state =
          entry->contains("error")
              ? "not answering (" + json_text(*entry, "error") + ")"
              : (promote ? std::string("not serving yet")
                         : std::string("still primary: its writes in flight wait for the peer or "
                                       "for the ring,"));
      fmt::print(stderr,
                 "keel volume {}: {} is {} after {} s (see `keel volume status`); the {} goes "
                 "on and ends by itself\n",
                 name, flags.volume, state, kRoleChangeWait.count(), name);
      return 1;
    }
    std::this_thread::sleep_for(kRoleChangePoll);
  }
}

void register_simple(CLI::App& volume, std::shared_ptr<VolumeFlags> flags, int& exit_code,
                     const char* name, const char* op, const char* help,
                     TakesEffect effect = TakesEffect::on_reply) {
  CLI::App* command = volume.add_subcommand(name, help);
  add_volume_argument(*command, *flags);
  add_control_options(*command, flags->control);
  if (std::string(name) == "promote") {
    command->add_flag("--force", flags->force,
                      "Promote even an Outdated or Inconsistent copy, or without quorum: may "
                      "lose acknowledged writes or run the volume on two hosts. Logged loudly.");
  }
  command->callback([flags, op, name, effect, &exit_code] {
    json request{{"op", op}, {"volume", flags->volume}, {"force", flags->force}};
    auto reply = ask_agent(std::string("volume ") + name, flags->control, request);
    exit_code = reply ? 0 : 1;
    if (!reply) return;
    if (effect != TakesEffect::on_reply) {
      exit_code = wait_for_role_change(*flags, name, effect);
      return;
    }
    fmt::print("volume {}: {} done\n", flags->volume, name);
  });
}

}  // namespace

void register_volume_commands(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<VolumeFlags>();
  CLI::App* volume = app.add_subcommand("volume", "Mirrored volumes (see docs/volume.md)");
  volume->require_subcommand(1);

  CLI::App* create = volume->add_subcommand(
      "create",
      "Prepare this host's copy of a volume: create the backing file if it does not exist "
      "(all zeroes, its whole size reserved on the filesystem so that writes cannot later fail "
      "for lack of space) and write the metadata. Run it on both nodes before the agent serves "
      "the volume. Two new, empty copies start identical and need no initial sync; an existing "
      "backing file is taken as Inconsistent and gets a full sync from the other copy.");
  add_volume_argument(*create, *flags);
  create->add_option("--config", flags->create.config, "The cluster's config file")
      ->capture_default_str();
  create->add_option("--node", flags->create.node,
                     "This host's node name (default: [cluster] node, else the hostname)");
  create->add_flag("--force", flags->create.force,
                   "Overwrite existing metadata (this copy's history and bitmap are lost)");
  create->callback([flags, &exit_code] {
    flags->create.volume = flags->volume;
    exit_code = create_volume(flags->create);
  });

  CLI::App* status = volume->add_subcommand(
      "status",
      "Each volume on this host: role, disk state (UpToDate, Outdated, Inconsistent), the "
      "replication link, resync progress, rate and time left, out-of-sync bytes, verify results.");
  status->add_option("volume", flags->volume, "Only this volume");
  add_control_options(*status, flags->control);
  status->add_flag("--json", flags->json, "Print the agent's reply, one JSON object");
  status->callback([flags, &exit_code] {
    auto reply = ask_agent("volume status", flags->control,
                           json{{"op", "volume_status"}, {"volume", flags->volume}});
    exit_code = reply ? 0 : 1;
    if (!reply) return;
    if (!flags->volume.empty() && reply->value("volumes", json::array()).empty()) {
      fmt::print(stderr, "keel volume status: this host holds no volume named \"{}\"\n",
                 flags->volume);
      exit_code = 1;
      return;
    }
    if (flags->json) {
      fmt::print("{}\n", agent::to_line(*reply));
      return;
    }
    const json volumes = reply->value("volumes", json::array());
    if (volumes.empty()) fmt::print("no volumes on this host\n");
    for (const json& entry : volumes) print_volume(entry);
  });

  register_simple(*volume, flags, exit_code, "promote", "volume_promote",
                  "Make this host's copy the primary: it serves the NBD export. Refused for an "
                  "Outdated or Inconsistent copy, while the peer is primary, and without quorum. "
                  "Waits up to 10 s for the export to serve.",
                  TakesEffect::when_serving);
  register_simple(*volume, flags, exit_code, "demote", "volume_demote",
                  "Stop serving: finish in-flight writes, flush, become secondary. Waits up to "
                  "10 s for the copy to become secondary (exit 1 if it has not; the demote "
                  "goes on).",
                  TakesEffect::when_secondary);
  register_simple(*volume, flags, exit_code, "verify", "volume_verify",
                  "Compare both copies online by checksum (on the primary, while connected); "
                  "differing blocks are counted and resynced. `status` shows progress.");

  CLI::App* resolve = volume->add_subcommand(
      "resolve",
      "After a split brain (both copies written apart), throw one side's changes away: "
      "--discard-local on the node whose changes are to be lost. The next connection resyncs it "
      "from the other node.");
  add_volume_argument(*resolve, *flags);
  add_control_options(*resolve, flags->control);
  auto* local =
      resolve->add_flag("--discard-local", flags->discard_local, "Throw this node's changes away");
  auto* peer = resolve->add_flag("--discard-peer", flags->discard_peer,
                                 "Throw the other node's changes away (this node's win)");
  local->excludes(peer);
  resolve->callback([flags, &exit_code] {
    if (!flags->discard_local && !flags->discard_peer) {
      fmt::print(stderr,
                 "keel volume resolve: say which changes to throw away: "
                 "--discard-local or --discard-peer\n");
      exit_code = 2;
      return;
    }
    json request{{"op", "volume_resolve"},
                 {"volume", flags->volume},
                 {"discard", flags->discard_local ? "local" : "peer"}};
    auto reply = ask_agent("volume resolve", flags->control, request);
    exit_code = reply ? 0 : 1;
    if (reply)
      fmt::print("volume {}: resolving; `keel volume status` shows the resync\n", flags->volume);
  });
}

}  // namespace keel::cli
