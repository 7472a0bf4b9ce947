#include "agent/vip_leftovers.hpp"

#include <spdlog/spdlog.h>

namespace keel::agent {

void delete_stale_addresses(io::NetlinkAddresses& netlink,
                            const std::vector<io::InterfaceAddress>& present,
                            const std::function<bool(const io::InterfaceAddress&)>& keep) {
  for (const auto& found : present) {
    if (!found.keel_owned() || keep(found)) continue;
    auto name = netlink.interface_name(found.interface_index);
    const std::string interface =
        name ? name.value() : "interface " + std::to_string(found.interface_index);
    spdlog::warn(
        "vip {}: left on {} by an earlier run, and no pool of this host has it there: "
        "deleting",
        io::to_string(found.prefix), interface);
    if (auto removed = netlink.remove(found.interface_index, found.prefix); !removed) {
      spdlog::error("vip {}: cannot delete it from {}: {}", io::to_string(found.prefix), interface,
                    removed.error().message);
    }
  }
}

void remove_handover_tables(io::HandoverRules& rules, bool handover_wanted,
                            const std::set<std::string>& keep) {
  auto removed = rules.remove_leftovers(keep);
  if (!removed) {
    const auto level = handover_wanted ? spdlog::level::warn : spdlog::level::debug;
    spdlog::log(level, "vip: cannot look for handover rules an earlier run left: {}",
                removed.error().message);
    return;
  }
  for (const auto& table : removed.value()) {
    spdlog::info("vip: removed the nftables table {}, left by an earlier run's handover", table);
  }
}

void clear_vip_leftovers() {
  if (auto netlink = io::NetlinkAddresses::open()) {
    if (auto present = netlink.value()->list_all()) {
      delete_stale_addresses(*netlink.value(), present.value(),
                             [](const io::InterfaceAddress&) { return false; });
    } else {
      spdlog::debug("vip: cannot list addresses to look for leftovers: {}",
                    present.error().message);
    }
  } else {
    spdlog::debug("vip: cannot look for leftover addresses: {}", netlink.error().message);
  }
  if (auto rules = io::HandoverRules::open()) {
    remove_handover_tables(*rules.value(), false);
  } else {
    spdlog::debug("vip: cannot look for leftover handover rules: {}", rules.error().message);
  }
}

}  // namespace keel::agent
