// The lab's kernel plumbing: the bridge, one network namespace and veth pair per host, the nft
// table; built and removed with ip(8), nft(8) and sysctl(8), each run from an argument vector.
//
// IPv6 is switched off on every interface the lab creates (bridge, veths, and everything inside
// the namespaces) before it comes up, so the lab sends no router solicitations, neighbour
// discovery or MLD: the only traffic is IPv4 between the hosts' 198.18.0.0/15 addresses.
//
// Removal works from the prefix alone: it lists the interfaces, namespaces and nft table whose
// names carry the prefix and deletes those, so it also finishes a lab that was half built or
// whose state file is lost, and it is idempotent.
//
// Thread-safety: functions of the kernel's state; callers serialise changes to one lab.
#pragma once

#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/names.hpp"
#include "lab/process.hpp"

namespace keel::lab {

// Why the lab cannot run here (not root, no ip/nft, no network namespaces), or nothing.
std::optional<std::string> lab_unavailable_reason();

Result<Ok> create_bridge(const LabNames& names);
// Namespace, veth pair on the bridge, address and loopback for host `index`.
Result<Ok> create_host_network(const LabNames& names, int index);
// The same for the lab's client (names.hpp): no agent runs there.
Result<Ok> create_client_network(const LabNames& names);

Result<Ok> set_link(const std::string& veth, bool up);
// Loads an nft ruleset file (see network_faults.hpp) in one transaction.
Result<Ok> load_ruleset(const std::string& path);

struct LabObjects {
  std::vector<std::string> links;       // root-namespace interfaces named PREFIX-*
  std::vector<std::string> namespaces;  // network namespaces named PREFIX-*
  bool table = false;                   // bridge-family nft table PREFIX

  bool empty() const { return links.empty() && namespaces.empty() && !table; }
};

// What of the lab exists in the kernel now.
Result<LabObjects> find_lab_objects(const LabNames& names);

// The processes inside a namespace (`ip netns pids`).
std::vector<ProcessId> processes_in_namespace(const std::string& netns);

// Ends every process left in the lab's namespaces, then deletes the veths, namespaces, bridge and
// nft table; checks that nothing with the prefix is left. Errors name what could not be removed.
Result<Ok> remove_lab_network(const LabNames& names, Milliseconds grace);

}  // namespace keel::lab
