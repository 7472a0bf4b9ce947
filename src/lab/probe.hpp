// The lab's view from outside the cluster, for floating IPs: a tiny HTTP responder on each host
// that says which host answered, and a prober on the client that connects to every floating
// address many times a second and logs what it got. The e2e tests, the demo and the benchmark
// read the same log (ProbeLog) to measure outages.
//
//   keel lab serve --port P --name hI     (in hI's namespace) answers every request with "hI\n"
//   keel lab probe --target A ... --out F (in the client namespace) appends one JSON line per probe
//
// A probe is: a TCP connect, "GET / HTTP/1.0", the answer read to its end, within --timeout-ms;
// each target is probed every --interval-ms (a slow probe delays the next one, never overlaps).
// Log lines: {"t":<realtime ms, float>,"target":"198.18.0.100","ok":true,"host":"h2","ms":0.4}
// or {"t":...,"target":...,"ok":false,"error":"connect: Connection refused","ms":...}.
//
// Thread-safety: run_* block their thread; ProbeLog is a plain value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/common/result.hpp"

namespace keel::lab {

struct ServeOptions {
  std::uint16_t port = 8080;
  std::string name;
};
// Serves until killed; an error only if it cannot listen.
Result<Ok> run_http_responder(const ServeOptions& options);

struct ProbeOptions {
  std::vector<std::string> targets;  // IP addresses
  std::uint16_t port = 8080;
  int interval_ms = 10;
  int timeout_ms = 200;
  // Probes of one target that may be in flight at once. 1: the next starts when the last ends
  // (at most every interval). More: one starts every interval while earlier ones wait, so an
  // outage's end is seen to within one interval even when failed probes time out.
  int in_flight = 1;
  std::string out;  // the log file (appended)
};
// Probes until killed.
Result<Ok> run_prober(const ProbeOptions& options);

struct ProbeResult {
  double t_ms = 0;
  std::string target;
  bool ok = false;
  std::string host;  // who answered (ok only)
  std::string error;
};

// What the client saw of one target over a time window.
struct TargetSummary {
  std::uint64_t probes = 0;
  std::uint64_t failures = 0;
  double longest_outage_ms = 0;  // the longest stretch from a failure's start to the next success
  std::string last_host;         // who answered the last successful probe
  std::map<std::string, std::uint64_t> answered_by;
};

class ProbeLog {
 public:
  // Reads the lines of `path` not read before (a partial last line waits for the next call).
  Result<Ok> read_more(const std::string& path);
  const std::vector<ProbeResult>& results() const { return results_; }
  // Over the results with from_ms <= t < to_ms, per target.
  std::map<std::string, TargetSummary> summarize(double from_ms, double to_ms) const;
  // The latest result per target at or after `since_ms`.
  std::map<std::string, ProbeResult> latest(double since_ms) const;

 private:
  std::vector<ProbeResult> results_;
  std::uint64_t offset_ = 0;
};

double realtime_ms();

}  // namespace keel::lab
