// What a killed or crashed agent can leave behind for floating IPs, and its removal when the next
// agent starts in the same network namespace, whatever that agent's config says now:
//   - addresses carrying keel's mark (io::kKeelAddressProtocol) on any interface: those the new
//     config gives this host on that interface are adopted (VipService), every other one is
//     deleted, even on an interface no pool uses any more or when no pool is left;
//   - the nftables tables of a drain's connection handover (io::HandoverRules::made_by_keel),
//     even when the new config turns the handover off.
// Nothing unmarked, and no table keel does not name, is ever touched. Netlink and nftables see
// only the caller's network namespace, so agents in other namespaces are never affected; one
// agent per namespace is assumed (a second would take the first's addresses for leftovers).
//
// Thread-safety: functions of the objects given; one thread at a time.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "io/handover_rules.hpp"
#include "io/netlink_addresses.hpp"

namespace keel::agent {

// Deletes every address of `present` (a dump of the namespace) that carries keel's mark and that
// `keep` refuses, logging each with its interface.
void delete_stale_addresses(io::NetlinkAddresses& netlink,
                            const std::vector<io::InterfaceAddress>& present,
                            const std::function<bool(const io::InterfaceAddress&)>& keep);

// Deletes every handover table an earlier agent left but those `keep` names, logging each. A
// failure is logged as a warning when `handover_wanted` (this agent will need nftables too), else
// at debug level: a host without nftables has no leftover tables either.
void remove_handover_tables(io::HandoverRules& rules, bool handover_wanted,
                            const std::set<std::string>& keep = {});

// Both, with nothing kept: for an agent whose config has no floating IPs (left) at all.
void clear_vip_leftovers();

}  // namespace keel::agent
