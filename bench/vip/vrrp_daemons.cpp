#include "vrrp_daemons.hpp"

#include <sys/stat.h>

#include <fstream>

#include "lab/names.hpp"
#include "lab/network.hpp"

namespace keel::bench {
namespace {

constexpr int kFirstRouterId = 10;  // virtual_router_id / vhid of address 0

// 0 for the address's first choice, 1 for the host after it, ...
int rank_of(int host, std::size_t address, int hosts) {
  const int first = static_cast<int>(address % static_cast<std::size_t>(hosts)) + 1;
  return (host - first + hosts) % hosts;
}

std::string keepalived_conf(const lab::Lab& lab, int index, const DaemonSettings& settings) {
  const int hosts = lab.host_count();
  std::string text = "# Written by keel_vip_bench for lab host h" + std::to_string(index) + ".\n";
  text += "global_defs {\n  router_id h" + std::to_string(index) + "\n";
  if (settings.vrrp_version != 2) {
    text += "  vrrp_version " + std::to_string(settings.vrrp_version) + "\n";
  }
  text += "}\n";
  std::string peers;
  for (int other = 1; other <= hosts; ++other) {
    if (other != index) peers += "    " + lab.host(other).address + "\n";
  }
  for (std::size_t i = 0; i < settings.addresses.size(); ++i) {
    const int router_id = kFirstRouterId + static_cast<int>(i);
    text += "vrrp_instance vip" + std::to_string(router_id) + " {\n";
    text += "  state BACKUP\n  interface eth0\n";
    text += "  virtual_router_id " + std::to_string(router_id) + "\n";
    text += "  priority " + std::to_string(200 - 10 * rank_of(index, i, hosts)) + "\n";
    text += "  advert_int " + settings.advert + "\n";
    text += "  unicast_src_ip " + lab.host(index).address + "\n";
    text += "  unicast_peer {\n" + peers + "  }\n";
    text += "  virtual_ipaddress {\n    " + settings.addresses[i] + "/" +
            std::to_string(lab::kPrefixLength) + " dev eth0\n  }\n}\n";
  }
  return text;
}

Result<Ok> write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) return Error{"cannot write " + path};
  out.close();
  if (::chmod(path.c_str(), mode) != 0) return Error{"cannot chmod " + path};
  return Ok{};
}

std::string ucarp_script(const char* verb) {
  // ucarp runs it as: SCRIPT interface address [xparam]
  return std::string("#!/bin/sh\nexec ip addr ") + verb + " \"$2/" +
         std::to_string(lab::kPrefixLength) + "\" dev \"$1\"\n";
}

std::string process_name(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

const char* daemon_name(DaemonKind kind) {
  return kind == DaemonKind::keepalived ? "keepalived" : "ucarp";
}

Result<Ok> write_daemon_files(const lab::Lab& lab, const DaemonSettings& settings) {
  for (int index = 1; index <= lab.host_count(); ++index) {
    const std::string& dir = lab.host(index).dir;
    if (settings.kind == DaemonKind::keepalived) {
      if (auto written =
              write_file(dir + "/keepalived.conf", keepalived_conf(lab, index, settings), 0644);
          !written) {
        return written.error();
      }
      continue;
    }
    if (auto written = write_file(dir + "/ucarp-up.sh", ucarp_script("add"), 0755); !written) {
      return written.error();
    }
    if (auto written = write_file(dir + "/ucarp-down.sh", ucarp_script("del"), 0755); !written) {
      return written.error();
    }
  }
  return Ok{};
}

Result<std::vector<lab::ProcessId>> start_daemon(lab::Lab& lab, int index,
                                                 const DaemonSettings& settings) {
  const auto& host = lab.host(index);
  std::vector<lab::ProcessId> started;
  if (settings.kind == DaemonKind::keepalived) {
    // -n: no daemon; -P: VRRP only; -l -D -G: detailed log to the console (the log file), none
    // to syslog; -d: the parsed configuration in the log (it shows the advert interval used);
    // private pid files, so that several instances on one machine do not collide.
    auto process = lab.start_in(
        index,
        {"keepalived", "-n", "-P", "-l", "-D", "-d", "-G", "-f", host.dir + "/keepalived.conf",
         "-p", host.dir + "/keepalived.pid", "-r", host.dir + "/keepalived-vrrp.pid"},
        host.dir + "/keepalived.log");
    if (!process) return process.error();
    started.push_back(process.value());
    return started;
  }
  for (std::size_t i = 0; i < settings.addresses.size(); ++i) {
    const int vhid = kFirstRouterId + static_cast<int>(i);
    const int skew = 20 * rank_of(index, i, lab.host_count());
    auto process = lab.start_in(
        index,
        {"ucarp", "--interface=eth0", "--srcip=" + host.address, "--vhid=" + std::to_string(vhid),
         "--pass=keel-bench", "--addr=" + settings.addresses[i], "--advbase=" + settings.advert,
         "--advskew=" + std::to_string(skew), "--preempt", "--shutdown", "--nomcast",
         "--mcast=" + std::string(lab::kBroadcastAddress), "--facility=none",
         "--upscript=" + host.dir + "/ucarp-up.sh", "--downscript=" + host.dir + "/ucarp-down.sh"},
        host.dir + "/ucarp-" + std::to_string(vhid) + ".log");
    if (!process) return process.error();
    started.push_back(process.value());
  }
  return started;
}

std::vector<lab::ProcessId> daemon_processes(const lab::Lab& lab, int index, DaemonKind kind) {
  std::vector<lab::ProcessId> found;
  for (const auto& process : lab::processes_in_namespace(lab.netns_of(index))) {
    if (process_name(process.pid) == daemon_name(kind)) found.push_back(process);
  }
  return found;
}

}  // namespace keel::bench
