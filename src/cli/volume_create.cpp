#include "cli/volume_create.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/volume_identity.hpp"
#include "agent/volume_unsaved_metadata.hpp"
#include "cli/hostname.hpp"
#include "config/config.hpp"
#include "io/block_file.hpp"
#include "io/durable_file.hpp"
#include "io/volume_metadata.hpp"

namespace keel::cli {

namespace {

int fail(const std::string& message) {
  fmt::print(stderr, "keel volume create: {}\n", message);
  return 1;
}

}  // namespace

int create_volume(const VolumeCreateOptions& options) {
  auto config = config::load_config(options.config);
  if (!config.ok()) return fail(config.error().message);
  if (!options.node.empty()) config.value().this_node = options.node;
  auto self = config::resolve_this_node(config.value(), hostname());
  if (!self.ok()) return fail(self.error().message);
  const config::VolumeConfig* volume = config.value().volume_by_name(options.volume);
  if (!volume) return fail("no [[volume]] named \"" + options.volume + "\" in " + options.config);
  const NodeId id = self.value().id;
  if (volume->nodes[0] != id && volume->nodes[1] != id) {
    return fail("volume " + volume->name + " is not on this node (" + self.value().name + ")");
  }
  const std::string backing = volume->backing_for(id);
  const std::string metadata_path = volume->metadata_for(id);
  // Nothing is written until every check that can refuse has passed, and a failure part way
  // takes back what this command made: a retry must see the same files as the first attempt
  // (a backing file left behind would make a new copy look like existing data).
  if (auto replaceable = io::VolumeMetadataFile::check_replaceable(metadata_path, options.force);
      !replaceable.ok()) {
    return fail(replaceable.error().message);
  }
  struct stat info {};
  const bool fresh = ::stat(backing.c_str(), &info) != 0;
  io::BlockFile::Created made_file = io::BlockFile::Created::no;
  {
    // Creating or checking the size of the backing file, the way the agent opens it.
    asio::io_context io;
    io::BlockFileOptions disk;
    disk.path = backing;
    disk.size_bytes = volume->size_bytes;
    disk.create = true;
    disk.threads = 1;
    auto made = io::BlockFile::open(io, disk);
    if (!made.ok()) return fail(made.error().message);
    made_file = made.value()->created();
  }
  // Updates the old metadata's last run could not write (agent/volume_unsaved_metadata.hpp)
  // must not be applied to the new one: gone before it exists. Put back if the new one cannot
  // be made (--force): the old metadata is still there, and without them it could be older than
  // what its copy holds.
  const std::string unsaved =
      agent::unsaved_metadata_path(config.value().agent.state_dir, volume->name);
  auto journal = io::read_state_file(unsaved);
  const auto undo = [&](const std::string& message, bool metadata_made) {
    if (metadata_made) ::unlink(metadata_path.c_str());
    if (made_file != io::BlockFile::Created::no) ::unlink(backing.c_str());
    if (journal.ok() && journal.value()) {
      if (auto restored = io::replace_file(unsaved, *journal.value(), true); !restored.ok()) {
        return fail(message + "; and the metadata journal " + unsaved +
                    " could not be put back: " + restored.error().message);
      }
    }
    return fail(message);
  };
  if (!journal.ok()) return undo(journal.error().message, false);
  if (auto removed = io::remove_file_durably(unsaved); !removed.ok()) {
    return undo(removed.error().message, false);
  }
  auto created = io::VolumeMetadataFile::create(
      metadata_path, agent::volume_metadata_header(*volume, id), options.force);
  if (!created.ok()) return undo(created.error().message, false);
  volume::PersistentState state;
  state.disk = fresh ? volume::DiskState::UpToDate : volume::DiskState::Inconsistent;
  state.generations.current = fresh ? agent::empty_generation(*volume) : 0;
  state.blank = fresh;
  if (auto written = created.value().write_state(state, {}); !written.ok()) {
    return undo(written.error().message, true);
  }
  const char* file_note = "";
  if (made_file == io::BlockFile::Created::reserved) {
    file_note = " (created, its space reserved)";
  } else if (made_file == io::BlockFile::Created::sparse) {
    file_note =
        " (created sparse: this filesystem cannot reserve space, so writes can fail if it fills)";
  }
  fmt::print("volume {} on {}: {} bytes at {}{}, metadata {}; this copy is {}\n", volume->name,
             self.value().name, volume->size_bytes, backing, file_note, metadata_path,
             fresh ? "UpToDate (new and empty: no initial sync needed if the other copy is new "
                     "too)"
                   : "Inconsistent (existing data: the other copy will be synced over it; if "
                     "the other copy holds existing data too, run `keel volume promote --force` "
                     "on the node whose data is to be kept, see docs/volume.md)");
  return 0;
}

}  // namespace keel::cli
