// keepalived and ucarp on the lab's hosts, for the floating-IP benchmark (bench/RESULTS.md).
//
// Both are confined to the lab's 198.18.0.0/15: the testbed forbids traffic to other addresses.
//   keepalived: unicast VRRP (`unicast_src_ip` and a `unicast_peer` list of the other hosts), so
//     nothing goes to 224.0.0.18. One vrrp_instance per floating address.
//   ucarp: `--nomcast --mcast=198.18.0.255`: its advertisements are Ethernet broadcasts whose IP
//     destination is the lab's subnet broadcast (ucarp writes whole frames with pcap and puts the
//     --mcast address in the IP header; with --nomcast it joins no group). One process per
//     address, as ucarp manages one virtual address each; up/down scripts add and delete it.
// Every address has a different first choice, spread like keel spreads them: address i prefers
// host (i mod n) + 1, then the hosts after it (keepalived priorities 200, 190, ...; ucarp skews
// 0, 20, ... / 256 s). Both preempt (keepalived's default; ucarp --preempt), so a host that comes
// back takes its address back, as keel's rebalancing gives a returning host its share.
//
// Each host's files live in LAB/hI: keepalived.conf, its pid files and keepalived.log, or the
// ucarp scripts and ucarp-VHID.log (one per address). Processes are started with Lab::start_in, so
// the lab records them and `lab down` (or the cleanup guard) ends them; keepalived's forked VRRP
// child is not recorded, but lab down ends every process left in a lab namespace.
//
// Thread-safety: none; one caller drives one lab.
#pragma once

#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"

namespace keel::bench {

enum class DaemonKind { keepalived, ucarp };

struct DaemonSettings {
  DaemonKind kind = DaemonKind::keepalived;
  int vrrp_version = 2;      // keepalived only
  std::string advert = "1";  // keepalived advert_int (seconds, as written), ucarp --advbase
  std::vector<std::string> addresses;  // floating addresses, without prefix length
};

const char* daemon_name(DaemonKind kind);

// Writes every host's configuration (keepalived.conf; ucarp's up and down scripts).
Result<Ok> write_daemon_files(const lab::Lab& lab, const DaemonSettings& settings);

// Starts host `index`'s daemon: one keepalived, or one ucarp per address.
Result<std::vector<lab::ProcessId>> start_daemon(lab::Lab& lab, int index,
                                                 const DaemonSettings& settings);

// Every process of the daemon in host `index`'s namespace, forked children included.
std::vector<lab::ProcessId> daemon_processes(const lab::Lab& lab, int index, DaemonKind kind);

}  // namespace keel::bench
