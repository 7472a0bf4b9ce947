#include "lab/network_faults.hpp"

#include <algorithm>
#include <set>

namespace keel::lab {

namespace {

std::string port_set(const LabNames& names, const std::vector<int>& hosts) {
  std::string text = "{ ";
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i > 0) text += ", ";
    text += "\"" + names.veth(hosts[i]) + "\"";
  }
  return text + " }";
}

std::string host_list(const std::vector<int>& hosts) {
  std::string text;
  for (int host : hosts) text += (text.empty() ? "h" : ",h") + std::to_string(host);
  return text;
}

}  // namespace

Result<Ok> validate_partition(const std::vector<std::vector<int>>& groups, int hosts) {
  if (groups.size() < 2) return Error{"a partition needs at least two groups of hosts"};
  std::set<int> seen;
  for (const auto& group : groups) {
    if (group.empty()) return Error{"a partition group is empty"};
    for (int host : group) {
      if (host < 1 || host > hosts) {
        return Error{"no host h" + std::to_string(host) + " in a lab of " + std::to_string(hosts)};
      }
      if (!seen.insert(host).second) {
        return Error{"host h" + std::to_string(host) + " is in more than one group"};
      }
    }
  }
  for (int host = 1; host <= hosts; ++host) {
    if (seen.count(host) == 0) {
      return Error{"host h" + std::to_string(host) + " is in no group; name every host"};
    }
  }
  return Ok{};
}

std::string nft_ruleset(const LabNames& names, int hosts, const NetworkFaults& faults) {
  const std::string table = "bridge " + names.table();
  std::string text;
  // Declaring the table first makes the delete succeed whether or not it existed; the three
  // statements are one transaction.
  text += "table " + table + "\n";
  text += "delete table " + table + "\n";
  text += "table " + table + " {\n";
  text += "  chain forward {\n";
  text += "    type filter hook forward priority filter; policy accept;\n";
  // A partition separates hosts from hosts only: the client namespace (floating-IP labs) stays
  // reachable from every side, as a router connected to both halves would be.
  for (const auto& group : faults.partition) {
    std::vector<int> others;
    for (int host = 1; host <= hosts; ++host) {
      if (std::find(group.begin(), group.end(), host) == group.end()) others.push_back(host);
    }
    if (others.empty()) continue;
    text += "    ether type ip iifname " + port_set(names, group) + " oifname " +
            port_set(names, others) + " drop\n";
  }
  for (const auto& [from, to] : faults.cuts) {
    text += "    ether type ip iifname \"" + names.veth(from) + "\" oifname \"" + names.veth(to) +
            "\" drop\n";
  }
  if (faults.loss_percent > 0) {
    std::vector<int> all;
    for (int host = 1; host <= hosts; ++host) all.push_back(host);
    // numgen yields 0..99; "< 100" is out of its range, so total loss is a plain drop.
    const std::string chance = faults.loss_percent >= 100 ? ""
                                                          : " numgen random mod 100 < " +
                                                                std::to_string(faults.loss_percent);
    text += "    ether type ip iifname " + port_set(names, all) + chance + " drop\n";
  }
  text += "  }\n";
  text += "}\n";
  return text;
}

std::string describe(const NetworkFaults& faults) {
  std::string text;
  const auto add = [&text](const std::string& part) { text += (text.empty() ? "" : "; ") + part; };
  if (!faults.partition.empty()) {
    std::string groups;
    for (const auto& group : faults.partition) {
      groups += (groups.empty() ? "" : " | ") + host_list(group);
    }
    add("partition " + groups);
  }
  for (const auto& [from, to] : faults.cuts) {
    add("cut h" + std::to_string(from) + "->h" + std::to_string(to));
  }
  if (faults.loss_percent > 0) add("loss " + std::to_string(faults.loss_percent) + "%");
  return text.empty() ? "none" : text;
}

}  // namespace keel::lab
