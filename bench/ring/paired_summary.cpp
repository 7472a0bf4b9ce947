#include "paired_summary.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "core/common/median.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

// The load a row measured: hosts, message size, one or all senders, and the rate per sender
// (0 for a flat-out throughput run).
using LoadKey = std::tuple<int, std::uint64_t, std::string, double>;

struct Pair {
  std::optional<json> keel;
  std::optional<json> corosync;
};

}  // namespace

std::vector<json> paired_summary(const std::vector<json>& rows) {
  std::map<LoadKey, std::map<int, Pair>> loads;  // load -> round -> both tools' rows
  for (const json& row : rows) {
    if (!row.contains("senders") || row.contains("error") || !row.contains("round")) continue;
    const LoadKey key{row.value("hosts", 0), row.value("size", std::uint64_t{0}),
                      row.value("senders", ""), row.value("rate_per_sender", 0.0)};
    Pair& pair = loads[key][row["round"].get<int>()];
    (row.value("tool", "") == "keel" ? pair.keel : pair.corosync) = row;
  }
  std::vector<json> out;
  for (const auto& [key, rounds] : loads) {
    const auto& [hosts, size, senders, rate] = key;
    const bool latency = rate > 0;
    std::vector<double> ratios, p50_diffs, p99_diffs;  // throughput, or latency, per round
    int keel_ahead = 0;
    for (const auto& [round, pair] : rounds) {
      if (!pair.keel || !pair.corosync) continue;
      const json& keel = *pair.keel;
      const json& corosync = *pair.corosync;
      if (latency) {
        p50_diffs.push_back(keel["latency_p50_us"].get<double>() -
                            corosync["latency_p50_us"].get<double>());
        p99_diffs.push_back(keel["latency_p99_us"].get<double>() -
                            corosync["latency_p99_us"].get<double>());
        if (p50_diffs.back() < 0) ++keel_ahead;
      } else {
        ratios.push_back(keel["msgs_per_s"].get<double>() / corosync["msgs_per_s"].get<double>());
        if (ratios.back() > 1) ++keel_ahead;
      }
    }
    const std::size_t paired = latency ? p50_diffs.size() : ratios.size();
    if (paired == 0) continue;
    json summary{{"summary", latency ? "latency" : "throughput"},
                 {"hosts", hosts},
                 {"size", size},
                 {"senders", senders},
                 {"rate_per_sender", rate},
                 {"paired_rounds", paired},
                 {"keel_ahead_in", keel_ahead}};
    if (latency) {
      summary["p50_diff_us"] = p50_diffs;
      summary["p50_diff_median_us"] = median(p50_diffs);
      summary["p99_diff_us"] = p99_diffs;
      summary["p99_diff_median_us"] = median(p99_diffs);
    } else {
      summary["ratios"] = ratios;
      summary["ratio_median"] = median(ratios);
    }
    out.push_back(std::move(summary));
  }
  return out;
}

}  // namespace keel::bench
