// Network: the simulated network between hosts 1..N, deciding the fate of every packet.
//
// A packet from A to B is blocked when B is unreachable from A (a partition puts them in different
// groups, a one-way cut blocks A->B, or either host is isolated), else lost with probability
// `loss`, else delivered after a delay uniform in [delay_min_us, delay_max_us] (so packets
// reorder), and duplicated with probability `duplicate` (the copy has its own delay).
// Reachability is decided when the packet is sent: a packet already in flight still arrives.
// All randomness comes from the Rng handed in, so a seed replays every decision.
//
// The three reachability layers (partition groups, one-way cuts, isolation) are independent, so
// a flapping host can be isolated and rejoined without undoing a partition; heal_all() clears all.
// Thread-safety: none.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/common/types.hpp"
#include "sim/random.hpp"

namespace keel::sim {

struct NetworkOptions {
  double loss = 0.0;       // per packet, in [0, 1]
  double duplicate = 0.0;  // per delivered packet, in [0, 1]
  TimeUs delay_min_us = 50;
  TimeUs delay_max_us = 2000;
};

struct NetworkStats {
  std::uint64_t sent = 0;        // packets handed to the network (per destination)
  std::uint64_t blocked = 0;     // dropped because the destination was unreachable
  std::uint64_t lost = 0;        // dropped at random
  std::uint64_t duplicated = 0;  // extra copies made
};

// What became of one packet: the arrival times of its copies (zero, one or two).
struct Arrivals {
  std::size_t count = 0;
  std::array<TimeUs, 2> at{};
};

class Network {
 public:
  Network(std::size_t hosts, NetworkOptions options, Rng rng);

  Arrivals transmit(NodeId from, NodeId to, TimeUs now);
  bool reachable(NodeId from, NodeId to) const;

  // Splits the hosts into groups; hosts reach only hosts of their own group. A host named in no
  // group is alone. Replaces any earlier partition; cuts and isolation stay.
  void partition(const std::vector<std::vector<NodeId>>& groups);
  void cut(NodeId from, NodeId to);      // blocks from->to only
  void restore(NodeId from, NodeId to);  // undoes cut(from, to)
  void isolate(NodeId host);             // blocks every packet to and from host
  void rejoin(NodeId host);              // undoes isolate(host)
  void heal_all();
  bool healed() const;

  void set_loss(double loss);
  void set_duplicate(double duplicate);
  void set_delay(TimeUs min_us, TimeUs max_us);

  std::size_t hosts() const { return hosts_; }
  const NetworkOptions& options() const { return options_; }
  const NetworkStats& stats() const { return stats_; }

 private:
  std::size_t index(NodeId from, NodeId to) const;
  TimeUs delay();

  std::size_t hosts_;
  NetworkOptions options_;
  Rng rng_;
  std::vector<std::uint32_t> group_;  // by node id; index 0 unused
  std::vector<bool> cut_;             // (from - 1) * hosts + (to - 1)
  std::vector<bool> isolated_;        // by node id
  NetworkStats stats_;
};

// Hosts 1..hosts: one group, as partition() takes it to heal a split.
inline std::vector<NodeId> all_hosts(std::size_t hosts) {
  std::vector<NodeId> all;
  for (NodeId id = 1; id <= hosts; ++id) all.push_back(id);
  return all;
}

}  // namespace keel::sim
