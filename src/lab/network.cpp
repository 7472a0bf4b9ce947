#include "lab/network.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace keel::lab {

namespace {

constexpr Milliseconds kToolTimeout{15000};

Result<Ok> run(const std::vector<std::string>& argv) {
  auto result = run_checked(argv, kToolTimeout);
  if (!result) return result.error();
  return Ok{};
}

// Runs a removal; a failure whose message contains `absent` (the tool's "no such object") is
// success: the object is already gone.
Result<Ok> run_unless_absent(const std::vector<std::string>& argv, const std::string& absent) {
  auto done = run(argv);
  if (!done && done.error().message.find(absent) != std::string::npos) return Ok{};
  return done;
}

bool ipv6_present() {
  struct stat info {};
  return ::stat("/proc/sys/net/ipv6", &info) == 0;
}

// Root-namespace interfaces: the sysctl file is written directly.
Result<Ok> disable_ipv6_on(const std::string& interface) {
  if (!ipv6_present()) return Ok{};
  const std::string path = "/proc/sys/net/ipv6/conf/" + interface + "/disable_ipv6";
  std::ofstream file(path);
  file << "1\n";
  file.close();
  if (!file) return Error{"cannot switch off IPv6 on " + interface + " (" + path + ")"};
  return Ok{};
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

Result<std::vector<std::string>> list_links(const LabNames& names) {
  auto out = run_checked({"ip", "-j", "link", "show"}, kToolTimeout);
  if (!out) return out.error();
  std::vector<std::string> links;
  try {
    for (const auto& link : nlohmann::json::parse(out.value())) {
      const auto name = link.at("ifname").get<std::string>();
      if (names.owns(name)) links.push_back(name);
    }
  } catch (const std::exception& error) {
    return Error{std::string("cannot read `ip -j link show`: ") + error.what()};
  }
  return links;
}

std::vector<std::string> list_namespaces(const LabNames& names) {
  std::vector<std::string> found;
  std::error_code error;
  std::filesystem::directory_iterator entries("/run/netns", error);
  for (; !error && entries != std::filesystem::directory_iterator(); entries.increment(error)) {
    const std::string name = entries->path().filename().string();
    if (names.owns(name)) found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

Result<bool> table_exists(const LabNames& names) {
  auto out = run_checked({"nft", "list", "tables", "bridge"}, kToolTimeout);
  if (!out) return out.error();
  std::istringstream lines(out.value());
  std::string line;
  while (std::getline(lines, line)) {
    if (line == "table bridge " + names.table()) return true;
  }
  return false;
}

// Collects the first error and goes on: removal does as much as it can.
struct Errors {
  std::string text;
  void add(const Result<Ok>& result) {
    if (!result.ok()) text += (text.empty() ? "" : "; ") + result.error().message;
  }
};

}  // namespace

std::optional<std::string> lab_unavailable_reason() {
  if (!running_as_root()) return "not root: the lab creates network namespaces (run as root)";
  for (const auto& probe : std::vector<std::vector<std::string>>{
           {"ip", "netns", "list"}, {"nft", "--version"}, {"sysctl", "--version"}}) {
    auto result = run_checked(probe, kToolTimeout);
    if (!result) return "cannot use " + probe[0] + ": " + result.error().message;
  }
  struct stat info {};
  if (::stat("/proc/self/ns/net", &info) != 0) return "this kernel has no network namespaces";
  return std::nullopt;
}

Result<Ok> create_bridge(const LabNames& names) {
  if (auto made = run({"ip", "link", "add", names.bridge(), "type", "bridge"}); !made) return made;
  if (auto off = disable_ipv6_on(names.bridge()); !off) return off;
  return run({"ip", "link", "set", names.bridge(), "up"});
}

namespace {

// A namespace `netns` joined to the bridge by veth `veth`, with `address` on its eth0.
Result<Ok> create_namespace_network(const LabNames& names, const std::string& netns,
                                    const std::string& veth, const std::string& address) {
  std::vector<std::vector<std::string>> steps;
  steps.push_back({"ip", "netns", "add", netns});
  if (ipv6_present()) {
    // `default` covers interfaces created or moved into the namespace later; `all` those there.
    steps.push_back({"ip", "netns", "exec", netns, "sysctl", "-q", "-w",
                     "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"});
  }
  steps.push_back(
      {"ip", "link", "add", veth, "type", "veth", "peer", "name", kInnerInterface, "netns", netns});
  for (const auto& step : steps) {
    if (auto done = run(step); !done) return done;
  }
  if (auto off = disable_ipv6_on(veth); !off) return off;
  steps = {{"ip", "link", "set", veth, "master", names.bridge(), "up"},
           {"ip", "-n", netns, "addr", "add", address, "dev", kInnerInterface},
           {"ip", "-n", netns, "link", "set", kInnerInterface, "up"},
           {"ip", "-n", netns, "link", "set", "lo", "up"}};
  for (const auto& step : steps) {
    if (auto done = run(step); !done) return done;
  }
  return Ok{};
}

}  // namespace

Result<Ok> create_host_network(const LabNames& names, int index) {
  return create_namespace_network(names, names.netns(index), names.veth(index),
                                  LabNames::address(index) + "/" + std::to_string(kPrefixLength));
}

Result<Ok> create_client_network(const LabNames& names) {
  return create_namespace_network(
      names, names.client_netns(), names.client_netns(),
      std::string(kClientAddress) + "/" + std::to_string(kPrefixLength));
}

Result<Ok> set_link(const std::string& veth, bool up) {
  return run({"ip", "link", "set", veth, up ? "up" : "down"});
}

Result<Ok> load_ruleset(const std::string& path) { return run({"nft", "-f", path}); }

Result<LabObjects> find_lab_objects(const LabNames& names) {
  LabObjects objects;
  auto links = list_links(names);
  if (!links) return links.error();
  objects.links = std::move(links.value());
  objects.namespaces = list_namespaces(names);
  auto table = table_exists(names);
  if (!table) return table.error();
  objects.table = table.value();
  return objects;
}

std::vector<ProcessId> processes_in_namespace(const std::string& netns) {
  std::vector<ProcessId> processes;
  auto out = run_checked({"ip", "netns", "pids", netns}, kToolTimeout);
  if (!out) return processes;
  std::istringstream pids(out.value());
  int pid = 0;
  while (pids >> pid) {
    if (auto start = process_start_time(pid)) processes.push_back(ProcessId{pid, *start});
  }
  return processes;
}

Result<Ok> remove_lab_network(const LabNames& names, Milliseconds grace) {
  // Each listing may fail on its own (a tool that hangs or is missing): the namespaces, which
  // need no tool to find, and whatever else can be found still go, so that one broken tool
  // leaves as little as possible behind. What could not be listed is removed by name, "not
  // there" counting as done.
  Errors errors;
  const std::vector<std::string> namespaces = list_namespaces(names);
  auto links = list_links(names);
  auto table = table_exists(names);
  std::vector<ProcessId> leftovers;
  for (const auto& netns : namespaces) {
    for (const auto& process : processes_in_namespace(netns)) leftovers.push_back(process);
  }
  terminate_all(leftovers, grace);

  // Veths first: deleting a namespace frees its interfaces asynchronously, deleting the root end
  // of a pair removes both ends at once.
  if (links) {
    for (const auto& link : links.value()) {
      if (link != names.bridge()) errors.add(run({"ip", "link", "del", link}));
    }
  }
  for (const auto& netns : namespaces) errors.add(run({"ip", "netns", "del", netns}));
  if (!links) {
    errors.add(links.error());
    errors.add(run_unless_absent({"ip", "link", "del", names.bridge()}, "Cannot find device"));
  } else if (contains(links.value(), names.bridge())) {
    errors.add(run({"ip", "link", "del", names.bridge()}));
  }
  if (!table) {
    errors.add(table.error());
    errors.add(run_unless_absent({"nft", "delete", "table", "bridge", names.table()},
                                 "No such file or directory"));
  } else if (table.value()) {
    errors.add(run({"nft", "delete", "table", "bridge", names.table()}));
  }
  auto left = find_lab_objects(names);
  if (!errors.text.empty()) {
    // A veth may vanish on its own while its namespace goes; only what is still there counts.
    if (left && left.value().empty()) return Ok{};
    return Error{"could not remove everything of lab " + names.prefix() + ": " + errors.text};
  }
  if (!left) return left.error();
  if (!left.value().empty()) {
    return Error{"lab " + names.prefix() + " still has objects after removal"};
  }
  return Ok{};
}

}  // namespace keel::lab
