// Coverage marks of the volume simulator: counters on the rare paths a run went through, seen
// from the shell (the volume core has no marks of its own). A sweep sums them over its seeds and
// prints them; a mark no seed reaches is a fault the simulator does not provoke.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace keel::sim {

enum class VolumeMark : std::uint8_t {
  suspended,                       // a primary held I/O for want of its peer
  outdate_recorded_after_suspend,  // ... and was released by the ring's record
  told_outdated,                   // the ring told a node its copy is outdated
  own_record_repeated,             // a merge brought a recorder's dropped record back to it
  resync_completed,                // a copy became UpToDate through a resync
  resync_interrupted,              // the link broke during a resync
  primary_crash_al,                // a node restarted after crashing as primary, with AL extents
  power_loss,                      // a node lost power
  cached_write_lost,               // ... and a completed, unflushed write with it
  process_crash,                   // a node's process crashed
  failover,                        // the surviving node was promoted (not forced)
  failover_refused,                // ... or refused (outdated, inconsistent)
  forced_promotion,                // a forced promotion (split brain on purpose)
  split_brain_detected,            // a connection refused as SplitBrain
  split_brain_resolved,            // discard-local and a resync after it
  split_brain_unforced,   // refused as split brain with no forced promotion (a checker failure)
  overlapping_writes,     // the workload had overlapping writes in flight
  fua_write,              // an acknowledged FUA write
  flush_acked,            // an acknowledged flush
  write_failed,           // a write completed with an error (not ESHUTDOWN)
  switchover,             // the primary was demoted under load (a planned switchover)
  disk_error,             // a disk operation failed with EIO (a burst of disk errors)
  flush_lost_writes,      // a failed flush dropped cached writes it covered (never written back)
  data_flush_failed,      // a metadata update's flush of the data failed (the update is retried)
  metadata_write_failed,  // a metadata update's own write failed, maybe after some bitmap pages
  crash_with_partial_metadata,  // ... and the node crashed with some of those pages on disk
  unsaved_metadata_recovered,   // a node restarted with updates its journal held
  verify_started,               // an online verify started on the primary
  verify_clean,                 // ... finished on copies that were equal, finding no difference
  verify_found,                 // ... finished finding differing blocks
  witness_restart,              // the witness's agent crashed and restarted from its records file
  count_                        // not a mark
};

constexpr std::size_t kVolumeMarkCount = static_cast<std::size_t>(VolumeMark::count_);

constexpr std::string_view volume_mark_name(VolumeMark mark) {
  constexpr std::array<std::string_view, kVolumeMarkCount> names = {
      "suspended",
      "outdate_recorded_after_suspend",
      "told_outdated",
      "own_record_repeated",
      "resync_completed",
      "resync_interrupted",
      "primary_crash_al",
      "power_loss",
      "cached_write_lost",
      "process_crash",
      "failover",
      "failover_refused",
      "forced_promotion",
      "split_brain_detected",
      "split_brain_resolved",
      "split_brain_unforced",
      "overlapping_writes",
      "fua_write",
      "flush_acked",
      "write_failed",
      "switchover",
      "disk_error",
      "flush_lost_writes",
      "data_flush_failed",
      "metadata_write_failed",
      "crash_with_partial_metadata",
      "unsaved_metadata_recovered",
      "verify_started",
      "verify_clean",
      "verify_found",
      "witness_restart",
  };
  return names[static_cast<std::size_t>(mark)];
}

using VolumeCoverage = std::array<std::uint64_t, kVolumeMarkCount>;

inline void hit(VolumeCoverage& coverage, VolumeMark mark) {
  ++coverage[static_cast<std::size_t>(mark)];
}

}  // namespace keel::sim
