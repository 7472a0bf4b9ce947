// Corosync on the lab's hosts, for the side-by-side ring benchmark.
//
// Several corosync instances can share one machine only if each has its own view of the paths it
// assumes are private: its IPC (libqb: abstract Unix sockets, which are per network namespace,
// and files in /dev/shm), /run, /etc/corosync and /var/lib/corosync. So each host's corosync is
// started as `ip netns exec PREFIX-hI keel_ring_bench corosync-host LAB/hI/corosync`, and that
// mode (run_corosync_host) makes a private mount namespace with fresh tmpfs on /run and /dev/shm
// and the host's own directories bound over /etc/corosync and /var/lib/corosync, then execs
// `corosync -f`: the pid the lab records is corosync's own. CPG clients join the same namespaces
// with nsenter.
//
// Configuration: knet over UDP, the lab's addresses in a nodelist, authenticated and encrypted
// (aes256/sha256, as keel always seals its packets), no quorum provider (keel's ring has none).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"

namespace keel::bench {

struct CorosyncSettings {
  // Totem token timeout; nothing: corosync's defaults (token 3000 ms plus token_coefficient
  // 650 ms for each node beyond two).
  std::optional<int> token_ms;
  // "knet" (corosync 3's default: encrypted and authenticated like keel), "udpu" (plain UDP
  // unicast, no crypto) or "udp" (plain UDP, broadcast to the lab's subnet, no crypto).
  std::string transport = "knet";
};

// Writes every host's corosync.conf and authkey under LAB/hI/corosync/{etc,var}.
Result<Ok> write_corosync_configs(const lab::Lab& lab, const CorosyncSettings& settings);

// Starts corosync on `index` and records it with the lab (so `keel lab down` ends it).
Result<lab::ProcessId> start_corosync(lab::Lab& lab, int index, const std::string& self_binary);

// The argument vector that runs `argv` inside corosync `process`'s namespaces.
std::vector<std::string> in_corosync_namespaces(const lab::ProcessId& process,
                                                std::vector<std::string> argv);

// `keel_ring_bench corosync-host DIR`: never returns on success (execs corosync).
int run_corosync_host(const std::string& dir);

}  // namespace keel::bench
