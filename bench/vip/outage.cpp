#include "outage.hpp"

#include <algorithm>

#include "core/common/median.hpp"

namespace keel::bench {

std::map<std::string, AddressOutage> outages(const lab::ProbeLog& log, double from_ms,
                                             double to_ms) {
  std::map<std::string, double> last_failure;
  std::map<std::string, AddressOutage> out;
  for (const auto& probe : log.results()) {
    if (probe.t_ms < from_ms || probe.t_ms >= to_ms || probe.ok) continue;
    ++out[probe.target].failures;
    last_failure[probe.target] = std::max(last_failure[probe.target], probe.t_ms);
  }
  for (const auto& [target, failed_at] : last_failure) {
    AddressOutage& outage = out[target];
    outage.recovered = false;
    outage.outage_ms = to_ms - from_ms;
    for (const auto& probe : log.results()) {
      if (probe.target != target || !probe.ok || probe.t_ms <= failed_at || probe.t_ms >= to_ms) {
        continue;
      }
      outage.recovered = true;
      outage.outage_ms = probe.t_ms - from_ms;
      break;
    }
  }
  return out;
}

Spread spread(std::vector<double> values) {
  Spread result;
  result.count = values.size();
  if (values.empty()) return result;
  result.median = median(values);
  result.max = *std::max_element(values.begin(), values.end());
  return result;
}

}  // namespace keel::bench
