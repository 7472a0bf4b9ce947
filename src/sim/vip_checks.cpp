#include "sim/vip_checks.hpp"

#include <algorithm>
#include <map>

namespace keel::sim {

namespace {

std::string address_text(const VipCluster& cluster, std::uint32_t a) {
  const auto& index = cluster.index();
  const auto& pool = cluster.config().pools[index.pool_of[a]];
  return pool.addresses[a - index.first_of[index.pool_of[a]]] + " (pool " + pool.name + ")";
}

std::string host_text(NodeId host) {
  return host == kNoNode ? std::string("nobody") : "host " + std::to_string(host);
}

bool equal_weights(const vip::PoolConfig& pool) {
  return std::all_of(pool.weights.begin(), pool.weights.end(), [&](const auto& entry) {
    return entry.second == pool.weights.begin()->second;
  });
}

std::optional<std::string> check_balance(const VipCluster& cluster, const std::vector<NodeId>& side,
                                         const std::vector<NodeId>& holder, std::uint32_t p) {
  const auto& pool = cluster.config().pools[p];
  std::uint64_t total_weight = 0;
  for (NodeId host : side) total_weight += cluster.eligible(host, p) ? pool.weight(host) : 0;
  if (total_weight == 0) return std::nullopt;
  const std::uint64_t count = pool.addresses.size();
  for (NodeId host : side) {
    if (!cluster.eligible(host, p)) continue;
    std::uint64_t held = 0;
    for (std::uint32_t i = 0; i < count; ++i)
      held += holder[cluster.index().first_of[p] + i] == host;
    const std::uint64_t share = count * pool.weight(host);
    const std::uint64_t low = share / total_weight;
    const std::uint64_t high = low + (share % total_weight != 0);
    if (held < low || held > high) {
      return "pool " + pool.name + ": host " + std::to_string(host) + " holds " +
             std::to_string(held) + " of " + std::to_string(count) + " addresses, its share is " +
             std::to_string(low) + ".." + std::to_string(high) + " (weight " +
             std::to_string(pool.weight(host)) + " of " + std::to_string(total_weight) + ")";
    }
  }
  return std::nullopt;
}

}  // namespace

const char* vip_step_name(VipStep step) {
  switch (step) {
    case VipStep::crash:
      return "crash";
    case VipStep::join:
      return "join";
    case VipStep::unhealthy:
      return "unhealthy";
    case VipStep::healthy:
      return "healthy";
    case VipStep::drain:
      return "drain";
    case VipStep::undrain:
      return "undrain";
    case VipStep::merge:
      return "merge";
    case VipStep::restart:
      return "agent restart";
  }
  return "?";
}

std::vector<NodeId> holders_in(const VipCluster& cluster, const std::vector<NodeId>& side) {
  std::vector<NodeId> out(cluster.index().size(), kNoNode);
  for (std::uint32_t a = 0; a < out.size(); ++a) {
    for (NodeId host : cluster.holders()[a]) {
      if (std::binary_search(side.begin(), side.end(), host)) out[a] = host;
    }
  }
  return out;
}

std::optional<std::string> check_converged(const VipCluster& cluster,
                                           const std::vector<NodeId>& side) {
  const auto& index = cluster.index();
  for (std::uint32_t a = 0; a < index.size(); ++a) {
    const std::uint32_t p = index.pool_of[a];
    std::vector<NodeId> held_by;
    for (NodeId host : cluster.holders()[a]) {
      if (std::binary_search(side.begin(), side.end(), host)) held_by.push_back(host);
    }
    const bool any_eligible = std::any_of(side.begin(), side.end(),
                                          [&](NodeId host) { return cluster.eligible(host, p); });
    const std::string what = address_text(cluster, a) + " in component " + members_text(side);
    if (held_by.size() > 1) return what + " is held by " + members_text(held_by);
    if (any_eligible && held_by.empty()) return what + " is held by nobody";
    if (held_by.empty()) continue;
    const NodeId holder = held_by.front();
    if (any_eligible && !cluster.eligible(holder, p)) {
      return what + " is held by host " + std::to_string(holder) + ", which is not eligible";
    }
    if (!any_eligible && !(cluster.drained(holder) && cluster.healthy(holder, p))) {
      return what + " has no eligible host but host " + std::to_string(holder) + " holds it";
    }
  }
  const std::vector<NodeId> holder = holders_in(cluster, side);
  for (std::uint32_t p = 0; p < cluster.config().pools.size(); ++p) {
    if (auto problem = check_balance(cluster, side, holder, p)) return problem;
  }
  return std::nullopt;
}

bool ring_detoured(const std::vector<std::pair<NodeId, std::vector<NodeId>>>& views,
                   const std::vector<NodeId>& stayed, NodeId except) {
  const auto in = [](const std::vector<NodeId>& hosts, NodeId host) {
    return std::find(hosts.begin(), hosts.end(), host) != hosts.end();
  };
  for (const auto& [host, members] : views) {
    if (host == except || !in(stayed, host)) continue;
    for (NodeId other : stayed) {
      if (other != except && !in(members, other)) return true;
    }
  }
  return false;
}

std::optional<std::string> check_moves(const VipCluster& cluster, const MoveCheck& check) {
  const auto& index = cluster.index();
  const std::string step =
      std::string(vip_step_name(check.step)) + " of host " + std::to_string(check.host);
  std::map<std::uint32_t, int> acquires;
  std::vector<std::size_t> holding(index.size(), 0);
  for (std::uint32_t a = 0; a < index.size(); ++a) holding[a] = check.before[a] != kNoNode;
  for (const VipEvent& event : check.events) {
    const bool weighted = !equal_weights(cluster.config().pools[index.pool_of[event.address]]);
    if (check.step == VipStep::restart &&
        (check.before[event.address] == check.host || !weighted)) {
      return address_text(cluster, event.address) + (event.acquire ? " acquired" : " released") +
             " by host " + std::to_string(event.host) + " after the " + step +
             ": a quick restart moves nothing";
    }
    if (event.acquire && ++acquires[event.address] > 1) {
      return address_text(cluster, event.address) + " moved twice after one " + step;
    }
    holding[event.address] += event.acquire ? 1 : 0;
    if (!event.acquire && holding[event.address] > 0) --holding[event.address];
    if (check.step == VipStep::drain && holding[event.address] == 0 &&
        check.before[event.address] == check.host && check.after[event.address] != kNoNode) {
      return address_text(cluster, event.address) + " had no holder during the " + step +
             " (the new holder must acquire before the old one releases)";
    }
  }
  if (check.detour && check.step != VipStep::restart) return std::nullopt;
  for (std::uint32_t a = 0; a < index.size(); ++a) {
    const NodeId before = check.before[a];
    const NodeId after = check.after[a];
    if (before == after) continue;
    const std::uint32_t p = index.pool_of[a];
    const bool pool_hit =
        check.step == VipStep::crash || check.step == VipStep::drain || check.pool == p;
    const std::string moved = address_text(cluster, a) + " moved from " + host_text(before) +
                              " to " + host_text(after) + " after the " + step;
    switch (check.step) {
      case VipStep::crash:
      case VipStep::unhealthy:
      case VipStep::drain:
        if ((before != check.host || !pool_hit) && equal_weights(cluster.config().pools[p])) {
          return moved + ": only its addresses may move";
        }
        break;
      case VipStep::join:
      case VipStep::healthy:
      case VipStep::undrain:
        if (after != check.host && equal_weights(cluster.config().pools[p])) {
          return moved + ": only the arriving host may take addresses";
        }
        break;
      case VipStep::merge:
      case VipStep::restart:  // every event that may not happen failed above
        break;
    }
  }
  return std::nullopt;
}

}  // namespace keel::sim
