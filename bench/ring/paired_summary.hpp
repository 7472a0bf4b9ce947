// Paired rounds: with --rounds N the ring bench measures keel and corosync N times, one after the
// other in each round, and compares each load's figures within a round (where the machine was in
// the same state for both) rather than across the whole session. Run-to-run noise on a small
// virtual machine is larger than the difference being looked for, so the summary gives every
// paired difference, their median, and on how many rounds keel came out ahead.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

namespace keel::bench {

// Given every row the benchmark printed (each with its "round"), one summary row per load that
// both tools completed in at least one round: for throughput loads the ratios keel / corosync,
// for latency loads keel's p50 and p99 minus corosync's, in µs.
std::vector<nlohmann::json> paired_summary(const std::vector<nlohmann::json>& rows);

}  // namespace keel::bench
