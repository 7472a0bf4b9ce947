#include "corosync_host.hpp"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "lab/process.hpp"

namespace keel::bench {
namespace {

namespace fs = std::filesystem;

std::string corosync_dir(const lab::Lab& lab, int index) {
  return lab.host(index).dir + "/corosync";
}

std::string config_text(const lab::Lab& lab, const CorosyncSettings& settings) {
  std::string text = "# Written by keel_ring_bench for one lab host.\n";
  text += "totem {\n  version: 2\n  cluster_name: " + lab.state().prefix + "\n";
  if (settings.transport == "knet") {
    text += "  transport: knet\n  crypto_cipher: aes256\n  crypto_hash: sha256\n";
  } else if (settings.transport == "udp") {
    // Totem's own UDP transport, each packet for all sent once to the subnet's broadcast address
    // (the bridge copies it), as keel's broadcast mode does. Plain, like udpu.
    text += "  transport: udp\n  broadcast: yes\n";
  } else {
    text += "  transport: " + settings.transport + "\n";
  }
  if (settings.token_ms) {
    text += "  token: " + std::to_string(*settings.token_ms) + "\n  token_coefficient: 0\n";
  }
  text += "}\nnodelist {\n";
  for (int index = 1; index <= lab.host_count(); ++index) {
    const auto& host = lab.host(index);
    text += "  node {\n    ring0_addr: " + host.address + "\n    nodeid: " + std::to_string(index) +
            "\n    name: " + host.name + "\n  }\n";
  }
  text += "}\nlogging {\n  to_stderr: yes\n  to_logfile: no\n  to_syslog: no\n  timestamp: on\n}\n";
  return text;
}

Result<Ok> write_file(const std::string& path, const std::string& content, mode_t mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out.flush()) return Error{"cannot write " + path};
  out.close();
  if (::chmod(path.c_str(), mode) != 0) return Error{"cannot chmod " + path};
  return Ok{};
}

}  // namespace

Result<Ok> write_corosync_configs(const lab::Lab& lab, const CorosyncSettings& settings) {
  // One authkey for the whole cluster, as corosync-keygen would make.
  std::random_device random;
  std::string key(256, '\0');
  for (char& byte : key) byte = static_cast<char>(random() & 0xff);
  for (int index = 1; index <= lab.host_count(); ++index) {
    const std::string dir = corosync_dir(lab, index);
    std::error_code error;
    fs::create_directories(dir + "/etc", error);
    fs::create_directories(dir + "/var", error);
    if (error) return Error{"cannot make " + dir + ": " + error.message()};
    if (auto written = write_file(dir + "/etc/corosync.conf", config_text(lab, settings), 0644);
        !written) {
      return written.error();
    }
    if (auto written = write_file(dir + "/etc/authkey", key, 0400); !written) {
      return written.error();
    }
  }
  return Ok{};
}

Result<lab::ProcessId> start_corosync(lab::Lab& lab, int index, const std::string& self_binary) {
  const auto& host = lab.host(index);
  lab::SpawnOptions options;
  options.output_path = corosync_dir(lab, index) + "/corosync.log";
  auto process = lab::spawn(
      {"ip", "netns", "exec", host.netns, self_binary, "corosync-host", corosync_dir(lab, index)},
      options);
  if (!process) return process.error();
  if (auto adopted = lab.adopt(process.value()); !adopted) return adopted.error();
  // Clients enter this process's namespaces, so it must have made its own mount namespace
  // first: wait until it has become corosync (run_corosync_host execs it after the mounts).
  const std::string comm_path = "/proc/" + std::to_string(process.value().pid) + "/comm";
  for (int waited_ms = 0; waited_ms < 10'000; waited_ms += 5) {
    std::ifstream comm(comm_path);
    std::string name;
    if (!(comm >> name)) return Error{"corosync on " + host.name + " exited at start"};
    if (name == "corosync") return process.value();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Error{"corosync on " + host.name + " did not start"};
}

std::vector<std::string> in_corosync_namespaces(const lab::ProcessId& process,
                                                std::vector<std::string> argv) {
  std::vector<std::string> full = {"nsenter", "--target", std::to_string(process.pid),
                                   "--mount", "--net",    "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

int run_corosync_host(const std::string& dir) {
  auto fail = [](const std::string& what) {
    std::cerr << "corosync-host: " << what << ": " << std::strerror(errno) << "\n";
    return 1;
  };
  if (::unshare(CLONE_NEWNS) != 0) return fail("unshare(CLONE_NEWNS)");
  // Nothing mounted here may leak back to the machine's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail("mount /");
  if (::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") != 0) return fail("tmpfs on /run");
  if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777") != 0) return fail("tmpfs on /dev/shm");
  const std::string etc = dir + "/etc", var = dir + "/var";
  if (::mount(etc.c_str(), "/etc/corosync", nullptr, MS_BIND, nullptr) != 0) {
    return fail("bind " + etc);
  }
  if (::mount(var.c_str(), "/var/lib/corosync", nullptr, MS_BIND, nullptr) != 0) {
    return fail("bind " + var);
  }
  ::execlp("corosync", "corosync", "-f", static_cast<char*>(nullptr));
  return fail("exec corosync");
}

}  // namespace keel::bench
