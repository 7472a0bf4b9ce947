// The measurements of the ring benchmark, one function per figure and tool. Each returns a JSON
// object (one row of bench/RESULTS.md) or an error saying what went wrong.
//
// keel's clients are threads of this process (keel_client.hpp) talking to the agents' control
// sockets; corosync's are cpg_bench processes inside each host's corosync namespaces. Both stamp
// messages with CLOCK_REALTIME, so latencies are measured the same way for both.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"

namespace keel::bench {

struct Load {
  std::size_t size = 100;       // bytes per message
  bool all_send = false;        // every host sends, or host 1 only
  std::uint64_t total = 10000;  // messages over all senders
  double rate = 0;              // per sender, messages/s; 0: flat out
  bool sample_memory = false;   // record the daemons' peak RSS during the run
};

struct Corosync {
  std::vector<lab::ProcessId> daemons;  // index i-1 runs on host i
  std::string cpg_bench;                // path of the client
};

// keel's clients use binary frames on the control socket (`binary`), or JSON lines.
Result<nlohmann::json> keel_traffic(const lab::Lab& lab, const Load& load, bool binary = true);
Result<nlohmann::json> corosync_traffic(lab::Lab& lab, const Corosync& corosync, const Load& load);

// Takes the last host's link down, times the new view on every survivor (the slowest one
// counts), brings the link back and waits until all hosts are together again.
Result<nlohmann::json> keel_failover(lab::Lab& lab, int repetitions);
Result<nlohmann::json> corosync_failover(lab::Lab& lab, const Corosync& corosync, int repetitions);

// Resident memory of a process in KiB (VmRSS), 0 if it is gone.
std::uint64_t rss_kib(int pid);
// CPU time (user + system) the processes have used so far, in seconds.
double cpu_seconds(const std::vector<int>& pids);
std::vector<int> keel_agent_pids(const lab::Lab& lab);

}  // namespace keel::bench
