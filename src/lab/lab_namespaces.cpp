// Lab: running helpers inside the lab's namespaces and reading their addresses (lab.hpp).
#include <nlohmann/json.hpp>

#include "lab/lab.hpp"

namespace keel::lab {

std::string Lab::netns_of(int index) const {
  return index == kClient ? state_.names().client_netns() : state_.host(index).netns;
}

Result<ProcessId> Lab::start_in(int index, const std::vector<std::string>& argv,
                                const std::string& log) {
  if (index == kClient && !state_.client) return Error{"this lab has no client namespace"};
  if (index != kClient && (index < 1 || index > host_count())) {
    return Error{"no host " + std::to_string(index) + " in this lab"};
  }
  std::vector<std::string> full = {"ip", "netns", "exec", netns_of(index)};
  full.insert(full.end(), argv.begin(), argv.end());
  auto started = spawn(full, SpawnOptions{log, -1, true});
  if (!started) return started.error();
  if (auto adopted = adopt(started.value()); !adopted) return adopted.error();
  return started.value();
}

Result<std::vector<std::string>> Lab::addresses(int index) const {
  auto out = run_checked(
      {"ip", "-n", netns_of(index), "-j", "-4", "addr", "show", "dev", kInnerInterface});
  if (!out) return out.error();
  auto parsed = nlohmann::json::parse(out.value(), nullptr, false);
  if (!parsed.is_array()) return Error{"ip -j addr: unexpected output"};
  std::vector<std::string> found;
  for (const auto& link : parsed) {
    for (const auto& address : link.value("addr_info", nlohmann::json::array())) {
      found.push_back(address.value("local", ""));
    }
  }
  return found;
}

}  // namespace keel::lab
