// What the floating-IP benchmark watches: where the kernel has each floating address (`ip addr`
// in every host's namespace) and what the client's prober saw (lab/probe.hpp).
//
// Thread-safety: none; used from the benchmark's one thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"
#include "lab/probe.hpp"

namespace keel::bench {

using Holders = std::map<std::string, std::vector<int>>;  // address -> hosts that have it

class Observer {
 public:
  Observer(const lab::Lab& lab, std::vector<std::string> addresses, std::string probe_log)
      : lab_(lab), addresses_(std::move(addresses)), probe_log_(std::move(probe_log)) {}

  const std::vector<std::string>& addresses() const { return addresses_; }
  const lab::ProbeLog& probes() const { return probes_; }
  Result<Ok> read_probes() { return probes_.read_more(probe_log_); }

  Holders holders() const;
  static std::string describe(const Holders& holders);

  // Waits until, for `hold` without a break: every address is on exactly one host, the hosts'
  // counts differ by at most one, and the client's latest probe of every address succeeded,
  // answered by that host. Returns the holders.
  Result<Holders> wait_settled(lab::Milliseconds hold, lab::Milliseconds timeout);

  // Waits until the client's latest probe of every address, started after `since_ms`, succeeded
  // and was answered by a host other than `victim`.
  Result<Ok> wait_served_without(int victim, double since_ms, lab::Milliseconds timeout);

 private:
  bool settled(const Holders& holders);

  const lab::Lab& lab_;
  std::vector<std::string> addresses_;
  std::string probe_log_;
  lab::ProbeLog probes_;
};

}  // namespace keel::bench
