#include "sim/volume_verify_watch.hpp"

namespace keel::sim {

namespace {

bool in_sync(const volume::ReplicaStatus& s) {
  return s.link == volume::LinkState::Connected && s.disk == volume::DiskState::UpToDate &&
         s.out_of_sync_bytes == 0 && (!s.peer_disk || *s.peer_disk == volume::DiskState::UpToDate);
}

}  // namespace

std::optional<std::string> copies_differ(const VolumeWorld& world, const VolumeModel& model) {
  if (!world.up(0) || !world.up(1)) return std::nullopt;
  const std::vector<BlockTag>& first = world.disk(0).view();
  const std::vector<BlockTag>& second = world.disk(1).view();
  for (std::uint64_t block = 0; block < first.size(); ++block) {
    if (first[block] == second[block] || model.in_flight(block, 1)) continue;
    return "block " + std::to_string(block) + " (tags " + std::to_string(first[block]) + " and " +
           std::to_string(second[block]) + ")";
  }
  return std::nullopt;
}

void VerifyWatch::started(VolumeWorld& world, const VolumeModel& model, int node) {
  hit(world.coverage(), VolumeMark::verify_started);
  running_ = true;
  node_ = node;
  const std::optional<std::string> difference = copies_differ(world, model);
  // copies_differ() skips the blocks of writes in flight; one of those that failed on either
  // disk already may have left its blocks different for good.
  const std::optional<TimeUs> oldest = model.oldest_pending_issued_at();
  const std::optional<TimeUs> failed = world.last_write_failure_at();
  const bool failed_in_flight = oldest && failed && *failed >= *oldest;
  equal_at_start_ = !difference && !failed_in_flight;
  failed_writes_at_start_ = world.failed_writes();
  world.note(node, "verify starts on copies that " +
                       (difference ? "differ at " + *difference : std::string("are equal")));
}

std::optional<std::string> VerifyWatch::check(VolumeWorld& world, const VolumeModel& model) {
  if (running_) {
    if (!world.up(node_)) {
      running_ = false;
    } else if (const volume::ReplicaStatus s = world.replica(node_).status(); !s.verify_running) {
      running_ = false;
      // Stopped before its end (the link broke; a restart resets the counts): not judged.
      if (s.verify_done_bytes < world.options().volume_bytes) return std::nullopt;
      const std::uint64_t mismatched = s.verify_mismatched_blocks;
      const bool clean_run = equal_at_start_ && world.failed_writes() == failed_writes_at_start_;
      if (clean_run && mismatched > 0) {
        return "verify on node " + std::to_string(node_ + 1) + " reported " +
               std::to_string(mismatched) +
               " mismatched blocks on copies that were equal (a false difference)";
      }
      if (mismatched > 0) {
        hit(world.coverage(), VolumeMark::verify_found);
        found_blocks_ = mismatched;
      } else if (clean_run) {
        hit(world.coverage(), VolumeMark::verify_clean);
      }
    }
  }
  if (found_blocks_ == 0 || !world.up(0) || !world.up(1)) return std::nullopt;
  if (!in_sync(world.replica(0).status()) || !in_sync(world.replica(1).status())) {
    return std::nullopt;
  }
  const std::uint64_t found = found_blocks_;
  found_blocks_ = 0;
  if (const std::optional<std::string> difference = copies_differ(world, model)) {
    return "a verify found " + std::to_string(found) +
           " differing blocks, and both sides show themselves in sync again, yet the copies " +
           "differ at " + *difference;
  }
  return std::nullopt;
}

}  // namespace keel::sim
