// `keel sim --figures`: simulated figures for the default tunables on a quiet LAN (delay
// 50..200 us, no loss), for 3, 5 and 16 hosts:
//   failover: simulated time from a host's crash to the new regular view on every survivor
//             (median and worst over several seeds);
//   saturation: messages delivered per token rotation and per simulated second while every host
//             keeps its send queue full of 100-byte messages.
#include <algorithm>
#include <cstdio>

#include "sim/cluster.hpp"
#include "sim/runner.hpp"

namespace keel::sim {

namespace {

constexpr int kFailoverSeeds = 9;
constexpr TimeUs kBoundUs = 20'000'000;
constexpr TimeUs kSaturationUs = 2'000'000;
constexpr std::size_t kQueueTarget = 200;
constexpr std::size_t kFillerBytes = 100 - kMessageHeaderBytes;

ClusterOptions lan(std::size_t hosts, std::uint64_t seed) {
  ClusterOptions options;
  options.hosts = hosts;
  options.seed = seed;
  options.network = NetworkOptions{0.0, 0.0, 50, 200};
  return options;
}

// Crash to new view on every survivor, or nothing if it did not happen within the bound.
std::optional<TimeUs> failover_once(std::size_t hosts, std::uint64_t seed) {
  SimCluster cluster(lan(hosts, seed));
  if (!cluster.run_until([&] { return cluster.converged(); }, kBoundUs)) return std::nullopt;
  cluster.run_for(1'000'000 + seed * 7919 % 300'000);  // crash at a varied point of the rotation
  const NodeId victim = static_cast<NodeId>(1 + seed % hosts);
  cluster.crash(victim);
  const TimeUs crashed_at = cluster.now();
  const auto done = [&] {
    for (NodeId h = 1; h <= hosts; ++h) {
      if (h == victim) continue;
      const auto view = cluster.view(h);
      if (!view || view->members.size() != hosts - 1) return false;
    }
    return true;
  };
  if (!cluster.run_until(done, crashed_at + kBoundUs) || cluster.checker().failed()) {
    return std::nullopt;
  }
  return cluster.now() - crashed_at;
}

struct Saturation {
  double per_rotation = 0;
  double per_second = 0;
  bool ok = false;
};

Saturation saturate(std::size_t hosts) {
  SimCluster cluster(lan(hosts, 1));
  Saturation result;
  if (!cluster.run_until([&] { return cluster.converged(); }, kBoundUs)) return result;
  const auto top_up = [&] {
    for (NodeId h = 1; h <= hosts; ++h) {
      while (cluster.ring(h)->send_queue_length() < kQueueTarget) {
        if (!cluster.submit(h, kFillerBytes, ring::DeliveryKind::agreed)) break;
      }
    }
  };
  top_up();
  cluster.run_for(200'000);  // reach a steady state first
  const ring::RingStats start = cluster.ring_stats();
  const TimeUs end = cluster.now() + kSaturationUs;
  while (cluster.now() < end && !cluster.checker().failed()) {
    top_up();
    cluster.run_for(1000);
  }
  const ring::RingStats stop = cluster.ring_stats();
  const double delivered = static_cast<double>(stop.messages_delivered - start.messages_delivered);
  const double tokens = static_cast<double>(stop.tokens_received - start.tokens_received);
  result.per_rotation = tokens > 0 ? delivered / tokens : 0;
  result.per_second = delivered / static_cast<double>(hosts) / (kSaturationUs / 1e6);
  result.ok = !cluster.checker().failed() && cluster.converged();
  return result;
}

std::string ms(TimeUs us) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f ms", static_cast<double>(us) / 1000.0);
  return buffer;
}

}  // namespace

int run_figures(std::ostream& out) {
  const ring::RingTunables tunables;
  out << "keel sim --figures: default tunables (token timeout " << tunables.token_timeout_ms
      << " ms, consensus " << tunables.consensus_timeout_ms << " ms, window "
      << tunables.window_size << ", max per visit " << tunables.max_messages_per_visit
      << "), LAN delay 50..200 us, no loss\n\n";
  int code = 0;
  for (std::size_t hosts : {3, 5, 16}) {
    std::vector<TimeUs> times;
    for (int seed = 1; seed <= kFailoverSeeds; ++seed) {
      if (auto t = failover_once(hosts, static_cast<std::uint64_t>(seed))) times.push_back(*t);
    }
    std::sort(times.begin(), times.end());
    out << hosts << " hosts: crash -> new view on all survivors: ";
    if (times.empty()) {
      out << "never (within " << ms(kBoundUs) << ")\n";
      code = 1;
    } else {
      out << "median " << ms(times[times.size() / 2]) << ", min " << ms(times.front()) << ", max "
          << ms(times.back()) << " (" << times.size() << "/" << kFailoverSeeds << " seeds)\n";
    }
    const Saturation s = saturate(hosts);
    char line[160];
    std::snprintf(line, sizeof line,
                  "%zu hosts: saturation: %.1f messages delivered per token rotation, %.0f "
                  "messages/s (100-byte messages, simulated time)%s\n",
                  hosts, s.per_rotation, s.per_second, s.ok ? "" : " [run not clean]");
    out << line;
    if (!s.ok) code = 1;
  }
  return code;
}

}  // namespace keel::sim
