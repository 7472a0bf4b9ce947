// LabState: everything a lab consists of, saved as JSON in its directory (lab.json) so that any
// later process (`keel lab fault`, `keel lab down`, a test's cleanup guard) can act on it.
//
// Invariants checked on load, so that a damaged or hand-edited file can never make the lab touch
// objects that are not its own: the prefix is valid, hosts are numbered 1..n (n <= 28) and each
// host's namespace, veth and address are the ones LabNames derives from the prefix.
//
// The file is rewritten whole (write then rename) after every change, and before each step of
// building a lab, so that a lab interrupted half-way can still be torn down.
//
// Thread-safety: plain values; saving is atomic for readers, but two writers must not race.
#pragma once

#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/names.hpp"
#include "lab/network_faults.hpp"
#include "lab/process.hpp"

namespace keel::lab {

struct HostState {
  int index = 0;        // 1..n
  std::string name;     // hI, also the keel node name; node id = index
  std::string netns;    // PREFIX-hI
  std::string veth;     // PREFIX-hI, the bridge port
  std::string address;  // 198.18.0.(10+I)
  std::string dir;      // LAB/hI
  std::string config;   // LAB/hI/keel.toml
  std::string socket;   // LAB/hI/keel.sock, the agent's control socket
  std::string log;      // LAB/hI/agent.log, the agent's stdout and stderr
  ProcessId agent;      // pid 0 when no agent runs
  bool link_up = true;
  bool frozen = false;
};

enum class LabPhase { building, up, down };

struct LabState {
  static constexpr int kVersion = 1;
  std::string prefix;
  std::string dir;
  std::string keel_binary;            // the keel that runs the agents
  std::vector<std::string> stand_in;  // if set, run instead of `keel agent` (plumbing tests)
  LabPhase phase = LabPhase::building;
  std::vector<HostState> hosts;
  bool client = false;  // the client namespace (names.hpp) exists
  NetworkFaults faults;
  std::vector<ProcessId> helpers;  // listeners and the like, ended by teardown

  LabNames names() const { return LabNames(prefix); }
  int host_count() const { return static_cast<int>(hosts.size()); }
  HostState& host(int index);
  const HostState& host(int index) const;
};

// A host record with every derived field filled in for lab `prefix` in `dir`.
HostState make_host_state(const LabNames& names, const std::string& dir, int index);

std::string phase_name(LabPhase phase);
std::string state_path(const std::string& dir);  // DIR/lab.json

std::string to_json(const LabState& state);
Result<LabState> parse_state(const std::string& text, const std::string& source);

Result<Ok> save_state(const LabState& state);
Result<LabState> load_state(const std::string& dir);

// Writes `text` to `path` through a temporary file and a rename, with the given mode.
Result<Ok> write_file_atomically(const std::string& path, const std::string& text, int mode);
Result<std::string> read_file(const std::string& path);

}  // namespace keel::lab
