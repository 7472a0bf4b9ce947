#include "sim/network.hpp"

#include <algorithm>

#include "core/common/assert.hpp"

namespace keel::sim {

Network::Network(std::size_t hosts, NetworkOptions options, Rng rng)
    : hosts_(hosts),
      options_(options),
      rng_(rng),
      group_(hosts + 1, 0),
      cut_(hosts * hosts, false),
      isolated_(hosts + 1, false) {
  KEEL_ASSERT(hosts >= 1);
  set_loss(options.loss);
  set_duplicate(options.duplicate);
  set_delay(options.delay_min_us, options.delay_max_us);
}

std::size_t Network::index(NodeId from, NodeId to) const {
  KEEL_ASSERT(from >= 1 && from <= hosts_);
  KEEL_ASSERT(to >= 1 && to <= hosts_);
  return (from - 1) * hosts_ + (to - 1);
}

bool Network::reachable(NodeId from, NodeId to) const {
  if (group_[from] != group_[to]) return false;
  if (isolated_[from] || isolated_[to]) return false;
  return !cut_[index(from, to)];
}

TimeUs Network::delay() { return rng_.uniform(options_.delay_min_us, options_.delay_max_us); }

Arrivals Network::transmit(NodeId from, NodeId to, TimeUs now) {
  ++stats_.sent;
  Arrivals arrivals;
  if (!reachable(from, to)) {
    ++stats_.blocked;
    return arrivals;
  }
  if (rng_.chance(options_.loss)) {
    ++stats_.lost;
    return arrivals;
  }
  arrivals.at[arrivals.count++] = now + delay();
  if (rng_.chance(options_.duplicate)) {
    ++stats_.duplicated;
    arrivals.at[arrivals.count++] = now + delay();
  }
  return arrivals;
}

void Network::partition(const std::vector<std::vector<NodeId>>& groups) {
  // Group numbers: 1.. for the named groups, then a fresh number for every host named in none.
  std::fill(group_.begin(), group_.end(), 0);
  std::uint32_t next = 1;
  for (const auto& group : groups) {
    for (NodeId host : group) {
      KEEL_ASSERT(host >= 1 && host <= hosts_);
      KEEL_ASSERT(group_[host] == 0);  // a host is in at most one group
      group_[host] = next;
    }
    ++next;
  }
  for (std::size_t host = 1; host <= hosts_; ++host) {
    if (group_[host] == 0) group_[host] = next++;
  }
}

void Network::cut(NodeId from, NodeId to) { cut_[index(from, to)] = true; }
void Network::restore(NodeId from, NodeId to) { cut_[index(from, to)] = false; }

void Network::isolate(NodeId host) {
  KEEL_ASSERT(host >= 1 && host <= hosts_);
  isolated_[host] = true;
}

void Network::rejoin(NodeId host) {
  KEEL_ASSERT(host >= 1 && host <= hosts_);
  isolated_[host] = false;
}

void Network::heal_all() {
  std::fill(group_.begin(), group_.end(), 0);
  std::fill(cut_.begin(), cut_.end(), false);
  std::fill(isolated_.begin(), isolated_.end(), false);
}

bool Network::healed() const {
  const bool one_group = std::all_of(group_.begin() + 1, group_.end(),
                                     [&](std::uint32_t g) { return g == group_[1]; });
  const bool no_cut = std::none_of(cut_.begin(), cut_.end(), [](bool c) { return c; });
  const bool none_isolated =
      std::none_of(isolated_.begin(), isolated_.end(), [](bool i) { return i; });
  return one_group && no_cut && none_isolated;
}

void Network::set_loss(double loss) {
  KEEL_ASSERT(loss >= 0.0 && loss <= 1.0);
  options_.loss = loss;
}

void Network::set_duplicate(double duplicate) {
  KEEL_ASSERT(duplicate >= 0.0 && duplicate <= 1.0);
  options_.duplicate = duplicate;
}

void Network::set_delay(TimeUs min_us, TimeUs max_us) {
  KEEL_ASSERT(min_us <= max_us);
  options_.delay_min_us = min_us;
  options_.delay_max_us = max_us;
}

}  // namespace keel::sim
