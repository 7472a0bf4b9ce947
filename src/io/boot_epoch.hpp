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
//
// The other side of that check survives a restart too: peer_epochs records the highest epoch seen
// from each other host (STATE_DIR/peer-epochs), and a restarted agent starts its replay windows
// from it, so that packets captured from a peer's earlier run cannot be replayed into it while
// its windows are new. That record is written when a peer's epoch rises (a peer restarted, which
// is rare enough for the sync on the ring's thread not to matter), as the boot epoch is: without
// the sync, a power loss soon after could leave the renamed file empty and every floor lost. An
// empty file, or one whose last line is cut short, is therefore garbled, never "no floors".
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::io {

constexpr const char* kBootEpochFile = "boot-epoch";

// `now_us`: the wall clock in microseconds. An unreadable or garbled record is an error, never
// silently replaced: the caller decides (the agent warns and uses `now_us`).
Result<std::uint64_t> next_boot_epoch(const std::string& state_dir, std::uint64_t now_us);

constexpr const char* kPeerEpochsFile = "peer-epochs";
using PeerEpochs = std::map<NodeId, std::uint64_t>;

// The record, empty when there is none; an error (naming the file, and the line if one is at
// fault) when it is garbled, empty included: the caller decides (the agent warns and starts
// without floors).
Result<PeerEpochs> read_peer_epochs(const std::string& state_dir);
// Replaces the record durably, one "NODE EPOCH" line per peer; `epochs` is not empty. The state
// directory must exist.
Result<Ok> write_peer_epochs(const std::string& state_dir, const PeerEpochs& epochs);

}  // namespace keel::io
