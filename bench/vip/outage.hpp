// What the client saw of one fault, read from the prober's log (lab/probe.hpp).
//
// The outage of an address is the time from the fault to the start of the first successful probe
// after the last failed one in the window; an address that never failed had no outage. A probe
// is stamped with its start, so the figure is exact to one probe interval when failures are
// refusals and to one probe timeout when they are timeouts (a probe that started just before
// the address came back still waits out its timeout).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lab/probe.hpp"

namespace keel::bench {

struct AddressOutage {
  double outage_ms = 0;        // 0: no failed probe
  std::uint64_t failures = 0;  // failed probes of this address in the window
  bool recovered = true;       // false: still failing at the window's end (outage runs to it)
};

// Per target, over the probes started in [from_ms, to_ms).
std::map<std::string, AddressOutage> outages(const lab::ProbeLog& log, double from_ms,
                                             double to_ms);

struct Spread {
  double median = 0;
  double max = 0;
  std::size_t count = 0;
};
Spread spread(std::vector<double> values);

}  // namespace keel::bench
