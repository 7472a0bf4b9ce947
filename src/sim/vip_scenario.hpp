// The vip simulation: one 64-bit seed turned into a cluster of hosts running ring + groups + vip
// node, a pool configuration, a phase of random faults, a heal, and a script of single faults
// from settled states, every guarantee of vip_checks.hpp checked. `keel sim --vip` runs it.
//
// plan_vip_scenario() draws from the seed: 2..7 hosts; 1..3 pools of 1..12 addresses, each
// allowed on a random non-empty subset of the hosts, with preferences on some pools and weights
// 1..4 on some; the settle time (1..2 s, longer than the ring takes to merge a restarted
// host, as docs/vip.md asks of it); loss (none, or up to 5%) and delay; a fault phase of
// 1..4 s with 2..12 faults (partitions, one-way cuts, crashes of hosts or of agents alone, with
// restarts, health losses and recoveries, drains and undrains, short health flaps); what stays
// after the heal (one host drained, one pool unhealthy on one host, each on 30% of seeds). The
// run then heals (loss capped at 2%), waits until the whole cluster is settled
// (kVipSettleBoundUs) and checks convergence; then plays kVipScriptSteps single faults, each
// chosen from the state it finds (crash, join, an agent's quick restart, health loss, health
// recovery, drain, undrain, a partition into two sides and its merge), and after each, once
// settled, checks convergence and movement.
//
// A run is a pure function of the seed and the options: the same seed prints the same bytes.
// Thread-safety: plain functions; a run owns its cluster.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/vip/pools.hpp"
#include "sim/network.hpp"

namespace keel::sim {

constexpr TimeUs kVipSettleBoundUs = 20'000'000;  // heal or step -> settled, simulated time
constexpr int kVipScriptSteps = 4;

enum class VipFaultKind : std::uint8_t { partition, cut, crash, unhealthy, flap, drain };

struct VipFault {
  TimeUs at = 0;
  VipFaultKind kind = VipFaultKind::crash;
  NodeId host = kNoNode;
  NodeId peer = kNoNode;  // cut: to
  std::uint32_t pool = 0;
  std::vector<std::vector<NodeId>> groups;  // partition
  TimeUs duration = 0;                      // until it ends (flap: the period)
  std::uint32_t count = 0;                  // flap: toggles
};

// A crash that kills only the agent: the host and the addresses on it live on, and the restart
// adopts them. Every fault draws a count, so deciding by its parity takes nothing more from the
// seed: half the crashes are of this kind.
inline bool agent_only(const VipFault& fault) {
  return fault.kind == VipFaultKind::crash && fault.count % 2 == 1;
}

struct VipPlan {
  std::uint64_t seed = 0;
  std::size_t hosts = 0;
  NetworkOptions network;
  vip::VipConfig config;
  TimeUs fault_phase_us = 0;
  std::vector<VipFault> faults;  // by time
  NodeId stay_drained = kNoNode;
  NodeId stay_unhealthy_host = kNoNode;
  std::uint32_t stay_unhealthy_pool = 0;
};

struct VipOptions {
  std::optional<std::size_t> hosts;
  bool trace = false;
};

VipPlan plan_vip_scenario(std::uint64_t seed, const VipOptions& options);
std::string describe(const VipFault& fault);

struct VipRunResult {
  std::uint64_t seed = 0;
  std::optional<std::string> violation;
  std::vector<std::string> script;  // what each step did
  std::uint64_t steps = 0;
  std::uint64_t acquires = 0;
  std::uint64_t releases = 0;
  TimeUs simulated_us = 0;
  std::vector<std::string> trace_tail;
  bool ok() const { return !violation; }
};

VipRunResult run_vip_scenario(const VipPlan& plan, std::ostream* trace_out);

struct VipCommandOptions {
  std::optional<std::uint64_t> seed;
  std::optional<std::uint64_t> seeds_begin;
  std::optional<std::uint64_t> seeds_end;
  VipOptions vip;
};

// `keel sim --vip`: one seed (plan, result) or a sweep (a line per seed, totals); 0 when every
// check held, 1 otherwise.
int run_vip_command(const VipCommandOptions& options, std::ostream& out);

}  // namespace keel::sim
