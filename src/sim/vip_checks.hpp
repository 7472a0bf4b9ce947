// The vip layer's guarantees, checked on a VipCluster (docs/vip.md, "Guarantees"):
//
//   Safety, on every acquire (VipCluster::on_acquire): the host is eligible (allowed, healthy or,
//   before a restarted agent's first check, presumed so by its adopted addresses; not drained), and
//   no other host that is in the same regular view holds the address, unless it is the drained host
//   handing it over. On every health loss: the host holds nothing of the pool afterwards.
//   Convergence (check_converged, once a component is settled): each address is held by exactly
//   one eligible host of the component when the component has one (else by nobody, or by one
//   drained host that keeps it); each eligible host holds floor(A*w/W) or ceil(A*w/W) of its
//   pool's A addresses (weights w, total W of the eligible hosts).
//   Movement (check_moves, from one settled state through one fault to the next settled state):
//   every address is acquired at most once; in pools with equal weights, a crash or health loss
//   moves only the addresses of the failed host (of that pool), a join, health recovery or
//   undrain moves addresses only to the host that came, and a drain moves only the drained host's
//   addresses (with weights, a survivor's floor can rise and force one more move: see
//   docs/vip.md); during a drain each of the drained host's addresses always has a holder (the
//   new holder acquires before the old one releases); an agent restart quicker than the token
//   timeout acquires and releases nothing (the new agent adopts what the old one held), except
//   in a weighted pool the host held nothing of: until its first health check it is not eligible
//   for that pool, and the others' shares of it may change.
//
// Each check returns a description of the first breach, or nothing.
// Thread-safety: pure functions over a cluster the caller owns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sim/vip_cluster.hpp"

namespace keel::sim {

enum class VipStep : std::uint8_t {
  crash,
  join,
  unhealthy,
  healthy,
  drain,
  undrain,
  merge,
  restart
};
const char* vip_step_name(VipStep step);

// The single holder of every address among `side` (kNoNode: none); assumes settled.
std::vector<NodeId> holders_in(const VipCluster& cluster, const std::vector<NodeId>& side);

std::optional<std::string> check_converged(const VipCluster& cluster,
                                           const std::vector<NodeId>& side);

struct MoveCheck {
  VipStep step = VipStep::crash;
  NodeId host = kNoNode;   // the host the step acted on (not for merge)
  std::uint32_t pool = 0;  // unhealthy, healthy
  std::vector<NodeId> before;
  std::vector<NodeId> after;
  std::vector<VipEvent> events;  // acquires and releases from the step to the settled state
  // The ring passed through a view that parted two hosts up before and after the step (a
  // transient split while it took in a joiner, say): the step was then a split and a merge too,
  // and only the merge's rules apply. Set by the caller (ring_detoured()).
  bool detour = false;
};

// Whether any of `views` (host, members), installed during a step, was at a host of `stayed` and
// lacked another host of `stayed`; `except` (the step's host) counts in neither role.
bool ring_detoured(const std::vector<std::pair<NodeId, std::vector<NodeId>>>& views,
                   const std::vector<NodeId>& stayed, NodeId except);

std::optional<std::string> check_moves(const VipCluster& cluster, const MoveCheck& check);

}  // namespace keel::sim
