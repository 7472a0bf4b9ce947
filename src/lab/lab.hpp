// Lab: a keel cluster of n hosts on one machine, as network namespaces on a Linux bridge, with
// the faults the e2e tests, the demo and the benchmarks inject. `keel lab` is a thin CLI over it.
//
// up() builds, in order: the lab directory and its state file (lab.json), the bridge, each host's
// namespace and veth, the cluster key, each host's keel.toml, the (empty) nft table; then starts
// every agent as `ip netns exec PREFIX-hI keel agent --config hI/keel.toml`, detached into its
// own session with its output in hI/agent.log, and waits until every agent reports one
// operational view of all n hosts. Names and addresses: names.hpp; the state file: state.hpp.
//
// down() ends the recorded processes (SIGTERM, SIGKILL after a grace period), then removes every
// kernel object carrying the prefix (network.hpp). It is idempotent and also finishes a lab that
// was only half built. A failed up() tears down what it built and keeps the directory's logs.
//
// Every change is saved to lab.json at once, so another process can open() the lab and go on.
// Thread-safety: none; one Lab object (or one process) changes a lab at a time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/common/result.hpp"
#include "lab/agent_status.hpp"
#include "lab/host_config.hpp"
#include "lab/state.hpp"

namespace keel::lab {

struct LabOptions {
  int hosts = 3;
  std::string prefix;       // empty: generated ("kl" + 4 hex digits), unused by any other lab
  std::string dir;          // empty: /tmp/keel-lab-PREFIX
  std::string keel_binary;  // empty: this executable
  // Run this in each namespace instead of `keel agent` (tests of the plumbing; no view wait).
  std::vector<std::string> stand_in;
  HostConfigSettings config;
  bool client = false;  // also build the client namespace (names.hpp), for probing from outside
  Milliseconds formation_timeout{20000};
  std::function<void(const std::string&)> progress;  // one line per step; may be empty
  // Called once the directory is claimed and saved, before any kernel object is made, with the
  // directory and the keel binary: the place to arm a CleanupGuard. May be empty.
  std::function<void(const std::string& dir, const std::string& keel_binary)> on_claimed;
  // Called once every host's directory and keel.toml exist, before any agent starts (e.g. to
  // run `keel volume create` on the hosts that hold a volume). An error stops the build.
  std::function<Result<Ok>(const LabState& state)> before_agents;
};

// What wait_for_view saw: the common view, and how long it took.
struct CommonView {
  std::string ring;
  std::vector<int> members;
  Milliseconds waited{0};
};

class Lab {
 public:
  static Result<Lab> up(const LabOptions& options);
  static Result<Lab> open(const std::string& dir);
  // Which lab directory a command means: `dir` if given; else /tmp/keel-lab-PREFIX for a given
  // prefix; else the only /tmp/keel-lab-* directory holding a lab (an error if none or several).
  static Result<std::string> locate(const std::string& dir, const std::string& prefix);

  // Ends processes and removes the network; the directory is removed too if `remove_dir`, else
  // kept (with its logs) and the state marked down.
  Result<Ok> down(bool remove_dir);

  const LabState& state() const { return state_; }
  int host_count() const { return state_.host_count(); }
  const HostState& host(int index) const { return state_.host(index); }
  const std::string& dir() const { return state_.dir; }
  const std::string& keel_binary() const { return state_.keel_binary; }
  // Hosts whose agent runs (frozen or not).
  std::vector<int> running_hosts() const;

  // Agent faults. kill = SIGKILL, stop = SIGTERM (a clean leave); both wait until it is gone.
  Result<Ok> start_agent(int index);
  Result<Ok> kill_agent(int index);
  Result<Ok> stop_agent(int index);
  Result<Ok> restart_agent(int index);  // kills a running agent first
  Result<Ok> freeze(int index);         // SIGSTOP
  Result<Ok> thaw(int index);           // SIGCONT
  Result<Ok> set_link(int index, bool up);

  // Network faults (network_faults.hpp); each rewrites the whole ruleset.
  Result<Ok> partition(const std::vector<std::vector<int>>& groups);
  Result<Ok> cut(int from, int to);
  Result<Ok> loss(int percent);
  Result<Ok> heal();

  // Records a process (a listener) for down() to end.
  Result<Ok> adopt(const ProcessId& helper);
  // The namespace of host `index`, or of the client for kClient.
  static constexpr int kClient = 0;
  std::string netns_of(int index) const;
  // Starts `argv` inside that namespace, output appended to `log`, recorded for down() to end.
  Result<ProcessId> start_in(int index, const std::vector<std::string>& argv,
                             const std::string& log);
  // The IPv4 addresses (without prefix length) on eth0 in that namespace, as the kernel has them.
  Result<std::vector<std::string>> addresses(int index) const;

  Result<AgentView> agent_view(int index) const;
  // Waits until every host in `hosts` reports one operational view whose members are exactly
  // `hosts`. The error describes what each host reported last.
  Result<CommonView> wait_for_view(const std::vector<int>& hosts, Milliseconds timeout) const;

 private:
  explicit Lab(LabState state) : state_(std::move(state)) {}
  Result<Ok> save() const { return save_state(state_); }
  Result<Ok> build(const LabOptions& options);
  Result<Ok> build_hosts(const LabOptions& options);  // network, key and configs
  Result<Ok> apply_faults(const NetworkFaults& faults);
  Result<Ok> end_agent(int index, int signal);
  std::vector<std::string> agent_command(int index) const;

  LabState state_;
};

}  // namespace keel::lab
