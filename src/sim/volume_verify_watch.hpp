// VerifyWatch: the volume simulator's checks of online verify (Replica::start_verify).
//
// A verify compares the two copies chunk by chunk while the workload goes on. What it must get
// right, seen from the shell, which knows both disks:
//   - no false differences: a verify that started while the copies held the same content
//     (outside the blocks of writes in flight, none of which had failed on a disk yet) and
//     during which no write or zeroing failed on either disk (the only faults that change
//     content behind the replicas' backs) finds no differing block, whatever else failed (a
//     read, a flush);
//   - the differences it finds are repaired: once a verify that found some is followed by both
//     sides showing themselves in sync (connected, UpToDate, nothing out of sync), the copies
//     are equal outside the writes in flight.
// A verify stopped before its end (the link broke, the primary crashed) is not judged.
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sim/volume_model.hpp"
#include "sim/volume_world.hpp"

namespace keel::sim {

// The first block (described) where the two copies differ, outside the blocks of writes the
// model has in flight; nullopt when they are equal so, or a node is down.
std::optional<std::string> copies_differ(const VolumeWorld& world, const VolumeModel& model);

class VerifyWatch {
 public:
  // `node` started a verify just now.
  void started(VolumeWorld& world, const VolumeModel& model, int node);
  // After every event: a broken guarantee, described.
  std::optional<std::string> check(VolumeWorld& world, const VolumeModel& model);

 private:
  bool running_ = false;
  int node_ = 0;
  bool equal_at_start_ = false;
  std::uint64_t failed_writes_at_start_ = 0;
  std::uint64_t found_blocks_ = 0;  // a finished verify found these; not yet seen repaired
};

}  // namespace keel::sim
