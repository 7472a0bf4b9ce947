// NetworkFaults: the lab's current network faults (partition, one-way cuts, random loss) and the
// nftables ruleset that enforces them on the lab's bridge.
//
// Faults are state, not commands: every change rewrites the whole ruleset from this value and
// loads it in one nft transaction, so the rules always match what `keel lab status` shows and a
// heal is simply the empty value. The rules live in a bridge-family table named after the lab's
// prefix, in its forward hook, and match frames by the bridge ports they enter and leave (each
// host's veth). They drop IPv4 frames only: ARP keeps working, so a healed link carries traffic
// again at once instead of after neighbour entries are re-learnt.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/common/result.hpp"
#include "lab/names.hpp"

namespace keel::lab {

struct NetworkFaults {
  std::vector<std::vector<int>> partition;  // groups of hosts; empty: no partition
  std::vector<std::pair<int, int>> cuts;    // (from, to): frames from `from` to `to` dropped
  int loss_percent = 0;                     // 0..100, on frames entering from any host

  bool any() const { return !partition.empty() || !cuts.empty() || loss_percent > 0; }
  bool operator==(const NetworkFaults&) const = default;
};

// Every host 1..hosts in exactly one group, and at least two groups.
Result<Ok> validate_partition(const std::vector<std::vector<int>>& groups, int hosts);

// The text for `nft -f`: (re)creates the lab's table with one rule per fault. With no faults the
// table holds an empty chain.
std::string nft_ruleset(const LabNames& names, int hosts, const NetworkFaults& faults);

// "partition h1,h2 | h3,h4,h5; cut h1->h3; loss 10%", or "none".
std::string describe(const NetworkFaults& faults);

}  // namespace keel::lab
