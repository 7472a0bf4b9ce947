// The agent's boot epoch: the number its sealed packets carry (sealed_packet.hpp), which must
// exceed every earlier run's on this host, and the floor its ring ids start from. Peers keep the
// highest epoch they have seen from each host and drop anything older as a replay, so a restart
// that took a lower number (the wall clock set back, or not yet set after a reboot) would be shut
// out of the ring until every peer restarted.
//
// next_boot_epoch() therefore takes the wall-clock time but never less than one more than the
// epoch recorded in STATE_DIR/boot-epoch by the previous run, and records the new one (written
// to a temporary file, synced, renamed over the old, directory synced) before returning it. The
// directory is created (mode 0700) if missing.
#pragma once

#include <cstdint>
#include <string>

#include "core/common/result.hpp"

namespace keel::io {

constexpr const char* kBootEpochFile = "boot-epoch";

// `now_us`: the wall clock in microseconds. An unreadable or garbled record is an error, never
// silently replaced: the caller decides (the agent warns and uses `now_us`).
Result<std::uint64_t> next_boot_epoch(const std::string& state_dir, std::uint64_t now_us);

}  // namespace keel::io
