// Placement: which eligible node should hold each address of a pool, as a pure function.
//
// Every member of a view calls it with the same input (the replicated table of vip_node.hpp) and
// so gets the same answer. The answer is balanced and moves as little as possible:
//
//   Balance. With A addresses and eligible nodes of weights w_i (sum W), node i gets either
//   floor(A * w_i / W) or ceil(A * w_i / W) addresses (its quota), and every address gets a node.
//   With equal weights this is "counts differ by at most one". (When A * w_i / W is a whole
//   number, node i gets exactly that.)
//
//   Minimal movement. An address whose current holder is eligible keeps it unless that holder is
//   over its quota; of all balanced answers, one that keeps the most current holders is chosen.
//   So a failure moves only the failed node's addresses (survivors stay within their quotas),
//   and a join moves only what the joining node must take.
//
//   Where it has a choice it decides, in this order: an address held by the node it prefers is
//   kept before others; an over-quota node sheds first addresses that prefer another eligible
//   node; when more nodes hold one address above their floor than the remainder allows, the
//   highest node ids give theirs up; a homeless address goes to its preferred node if that node
//   is under quota, else to the node with the lowest (count + 1) / weight, lowest id on a tie.
//   Preferences never cause a move on their own.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "core/common/types.hpp"

namespace keel::vip {

struct Candidate {
  NodeId node = kNoNode;
  std::uint32_t weight = 1;  // >= 1
};

struct Quota {
  std::uint32_t low = 0;   // floor(A * w / W)
  std::uint32_t high = 0;  // ceil(A * w / W)
};

// The quotas of `candidates` (any order) for `addresses` addresses, in the same order.
std::vector<Quota> weighted_quotas(std::size_t addresses, const std::vector<Candidate>& candidates);

struct PoolInput {
  std::vector<Candidate> candidates;  // the eligible nodes, sorted by node id, unique
  std::vector<NodeId> current;        // per address: its holder now, kNoNode if none (any node)
  std::vector<NodeId> preferred;      // per address: its preferred node, kNoNode; or empty
};

// Per address: the node that should hold it, or kNoNode when there is no candidate.
std::vector<NodeId> place_pool(const PoolInput& input);

}  // namespace keel::vip
