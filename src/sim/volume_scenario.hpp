// The volume simulation: one 64-bit seed turned into two replicas of a small volume and a witness
// (volume_world.hpp), a workload on the primary, a phase of random faults, a heal, and the checks
// of the volume's guarantees. `keel sim --volume` runs it.
//
// plan_volume_scenario() draws from the seed: the volume size (64..1024 blocks: 256 KiB..4 MiB),
// the resync rate (unlimited or 16..64 MiB/s), disk, link and ring delays, the workload (issue
// interval, queue depth, share of zeroing, FUA writes and flushes), a fault phase of 1..5 s with
// 2..10 faults (link breaks, witness partitions, a replica cut off from the others, process crashes
// and power losses of either replica with a restart), and on a fifth of the seeds a forced
// promotion of the secondary while it is cut off, to provoke a split brain on purpose. From a
// stream of its own (so the draws above stay what they were for every seed): on a tenth of the
// seeds, 1..3 bursts of disk errors (5..300 ms on either node, failing 5..50% of its disk
// operations with EIO; a failed flush drops some of the cached writes it covered, as Linux
// does, see SimDisk; a metadata update's flush of the data fails too, and is retried a second
// later, as the agent does), and on a quarter, 1..2 online verifies started on the primary.
//
// While it runs: the workload writes (mostly not overlapping its writes in flight, sometimes on
// purpose), zeroes, FUA-writes and flushes on the primary; when the primary is down the other
// replica is promoted (not forced) if it is quorate. Checked after every event:
//   - never two primaries while connected;
//   - an application write whose local disk write failed is never acknowledged with success
//     (a failed write carries no promise; the model never counts it as acknowledged);
//   - a verify that ran on equal copies (no write failed during it) reports no difference, and
//     once one that found differences is followed by the copies in sync again, they are equal
//     (volume_verify_watch.hpp);
//   - a replica promoted without force holds every acknowledged write (volume_model.hpp);
//   - a flush the primary reports done has every write acknowledged before it on its disk (and
//     on the peer's when the peer stands in), except after a failed flush on a primary without
//     a peer in sync, whose copy may lose, as a local disk would, the writes it covered;
//   - two sides that both acknowledged writes apart are refused as SplitBrain at connect, never
//     resynced; and a split brain is only ever seen after a forced promotion;
//   - every message between the replicas survives the wire codec: it decodes, as the real link
//     decodes it, and re-encodes to the bytes sent (volume_world.hpp).
// After the fault phase everything heals (a split brain is resolved by discarding the forced
// side), the workload stops, and within kVolumeSettleBoundUs both copies must be connected,
// UpToDate and byte-identical, and satisfy the model.
//
// A run is a pure function of the seed: the same seed prints the same bytes.
// Thread-safety: plain functions; a run owns its world.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "sim/volume_coverage.hpp"
#include "sim/volume_world.hpp"

namespace keel::sim {

constexpr TimeUs kVolumeSettleBoundUs = 60'000'000;  // heal -> converged, simulated time

enum class VolumeFaultKind : std::uint8_t {
  link_break,
  witness_partition,
  isolate,
  process_crash,
  power_loss,
  forced_split,
  switchover,    // the operator demotes the primary under load; the other node is promoted
  disk_errors,   // a burst of EIO on one node's disk
  verify,        // the operator starts an online verify on the primary
  witness_crash  // the witness's agent crashes and restarts (its records from its file)
};

struct VolumeFault {
  TimeUs at = 0;
  VolumeFaultKind kind = VolumeFaultKind::link_break;
  int node = 0;         // isolate, crashes: the replica (0 or 1); forced_split: the one forced
  TimeUs duration = 0;  // until it ends (crash: until the restart)
  double share = 0;     // disk_errors: the chance that each disk operation fails
};

struct VolumePlan {
  std::uint64_t seed = 0;
  VolumeWorldOptions world;
  TimeUs issue_min_us = 0;
  TimeUs issue_max_us = 0;
  std::size_t queue_depth = 1;
  double zero_share = 0;
  double fua_share = 0;
  double flush_share = 0;
  double overlap_share = 0;
  TimeUs fault_phase_us = 0;
  std::vector<VolumeFault> faults;  // by time
};

// Faults that change the plans of the seeds they apply to, so they are asked for by name: the
// seeds of a sweep without them (and the regression seeds) keep the runs they always had.
struct VolumePlanOptions {
  bool large_volumes = false;  // some volumes larger than the activity log (--large-volumes)
  bool witness_crashes =
      false;  // a fifth of the runs crash the witness's agent (--witness-crashes)
};
VolumePlan plan_volume_scenario(std::uint64_t seed, VolumePlanOptions options = {});
std::string describe(const VolumeFault& fault);

struct VolumeRunResult {
  std::uint64_t seed = 0;
  std::optional<std::string> violation;
  std::uint64_t steps = 0;
  std::uint64_t messages = 0;
  std::uint64_t acked_writes = 0;
  TimeUs simulated_us = 0;
  VolumeCoverage coverage{};
  std::vector<std::string> trace_tail;
  bool ok() const { return !violation; }
};

VolumeRunResult run_volume_scenario(const VolumePlan& plan, std::ostream* trace_out);

struct VolumeCommandOptions {
  std::optional<std::uint64_t> seed;
  std::optional<std::uint64_t> seeds_begin;
  std::optional<std::uint64_t> seeds_end;
  bool trace = false;
  VolumePlanOptions plan;
};

// `keel sim --volume`: one seed (plan, result, the trace's tail on failure) or a sweep (a line
// per seed, totals and coverage); 0 when every check held, 1 otherwise.
int run_volume_command(const VolumeCommandOptions& options, std::ostream& out);

}  // namespace keel::sim
