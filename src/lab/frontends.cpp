#include "lab/frontends.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

namespace keel::lab {

std::vector<std::string> floating_addresses(int count) {
  std::vector<std::string> addresses;
  for (int i = 0; i < count; ++i) {
    addresses.push_back(std::string(kAddressBase) + std::to_string(kFirstFloatingOctet + i));
  }
  return addresses;
}

std::string web_pool_toml(const std::vector<std::string>& addresses, std::uint16_t port,
                          int prefix_length) {
  std::string list;
  for (const auto& address : addresses) {
    list += fmt::format("{}\"{}/{}\"", list.empty() ? "" : ", ", address, prefix_length);
  }
  return fmt::format(
      "[[vip.pool]]\n"
      "name = \"web\"\n"
      "addresses = [{}]\n"
      "interface = \"{}\"\n"
      "announce_count = 3\n"
      "announce_interval_ms = 50\n"
      "[vip.pool.health]\n"
      "kind = \"tcp\"\n"
      "port = {}\n"
      "interval_ms = 100\n"
      "timeout_ms = 100\n"
      "rise = 2\n"
      "fall = 2\n",
      list, kInnerInterface, port);
}

Result<Holders> floating_holders(const Lab& lab, const std::vector<std::string>& addresses) {
  Holders holders;
  for (const auto& address : addresses) holders[address];
  for (int host = 1; host <= lab.host_count(); ++host) {
    auto found = lab.addresses(host);
    if (!found) return found.error();
    for (const auto& address : found.value()) {
      if (auto it = holders.find(address); it != holders.end()) it->second.push_back(host);
    }
  }
  return holders;
}

bool placement_settled(const Holders& holders, const std::vector<int>& live) {
  std::map<int, int> counts;
  for (int host : live) counts[host] = 0;
  for (const auto& [address, hosts] : holders) {
    int on_live = 0;
    for (int host : hosts) {
      if (auto it = counts.find(host); it != counts.end()) {
        ++on_live;
        ++it->second;
      }
    }
    if (on_live != 1) return false;
  }
  int low = static_cast<int>(holders.size()), high = 0;
  for (const auto& [host, count] : counts) {
    low = std::min(low, count);
    high = std::max(high, count);
  }
  return high - low <= 1;
}

Result<ProcessId> start_nginx(Lab& lab, int index, std::uint16_t port) {
  const HostState& host = lab.host(index);
  const std::string dir = host.dir + "/nginx";
  ::mkdir(dir.c_str(), 0755);
  const std::string conf = dir + "/nginx.conf";
  std::ofstream out(conf, std::ios::trunc);
  // Everything nginx writes stays in this host's directory, so several run side by side.
  out << fmt::format(
      "worker_processes 1;\n"
      "pid {0}/nginx.pid;\n"
      "error_log {0}/error.log;\n"
      "events {{ worker_connections 256; }}\n"
      "http {{\n"
      "  access_log off;\n"
      "  client_body_temp_path {0}/body;\n"
      "  proxy_temp_path {0}/proxy;\n"
      "  fastcgi_temp_path {0}/fastcgi;\n"
      "  uwsgi_temp_path {0}/uwsgi;\n"
      "  scgi_temp_path {0}/scgi;\n"
      "  default_type text/plain;\n"
      "  server {{\n"
      "    listen {1};\n"
      "    location / {{ return 200 \"{2}\\n\"; }}\n"
      "  }}\n"
      "}}\n",
      dir, port, host.name);
  if (!out.flush()) return Error{"cannot write " + conf};
  return lab.start_in(index, {"nginx", "-c", conf, "-g", "daemon off;"}, dir + "/nginx.out");
}

Result<ProcessId> start_responder(Lab& lab, int index, std::uint16_t port) {
  const HostState& host = lab.host(index);
  return lab.start_in(
      index,
      {lab.keel_binary(), "lab", "serve", "--port", std::to_string(port), "--name", host.name},
      host.dir + "/serve.log");
}

Result<std::string> start_prober(Lab& lab, const std::vector<std::string>& addresses,
                                 std::uint16_t port, int interval_ms) {
  const std::string log = lab.dir() + "/probe.jsonl";
  std::vector<std::string> argv = {lab.keel_binary(),
                                   "lab",
                                   "probe",
                                   "--port",
                                   std::to_string(port),
                                   "--interval-ms",
                                   std::to_string(interval_ms),
                                   "--timeout-ms",
                                   "100",
                                   "--out",
                                   log};
  for (const auto& address : addresses) {
    argv.push_back("--target");
    argv.push_back(address);
  }
  auto started = lab.start_in(Lab::kClient, argv, lab.dir() + "/probe.err");
  if (!started) return started.error();
  return log;
}

}  // namespace keel::lab
