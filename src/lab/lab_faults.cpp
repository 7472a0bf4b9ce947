// The lab's agents and faults (lab.hpp): starting and ending agents, signals, links, nft rules.
#include <unistd.h>

#include <csignal>

#include "lab/lab.hpp"
#include "lab/network.hpp"

namespace keel::lab {

namespace {

constexpr Milliseconds kAgentStopGrace{5000};
constexpr Milliseconds kKillWait{5000};
constexpr Milliseconds kStartTimeout{10000};

Result<Ok> check_index(const LabState& state, int index) {
  if (index < 1 || index > state.host_count()) {
    return Error{"no host h" + std::to_string(index) + ": this lab has h1 .. h" +
                 std::to_string(state.host_count())};
  }
  return Ok{};
}

Result<Ok> check_host(const LabState& state, int index) {
  if (state.phase != LabPhase::up) {
    return Error{"lab " + state.prefix + " is " + phase_name(state.phase) + ", not up"};
  }
  return check_index(state, index);
}

Result<Ok> not_running(const HostState& host) {
  return Error{"the agent of " + host.name + " is not running"};
}

}  // namespace

std::vector<std::string> Lab::agent_command(int index) const {
  const HostState& host = state_.host(index);
  std::vector<std::string> argv = {"ip", "netns", "exec", host.netns};
  if (!state_.stand_in.empty()) {
    argv.insert(argv.end(), state_.stand_in.begin(), state_.stand_in.end());
  } else {
    argv.insert(argv.end(), {state_.keel_binary, "agent", "--config", host.config});
  }
  return argv;
}

Result<Ok> Lab::start_agent(int index) {
  if (auto checked = check_index(state_, index); !checked) return checked;
  HostState& host = state_.host(index);
  if (is_running(host.agent)) return Error{"the agent of " + host.name + " is already running"};
  // A killed agent leaves its socket file behind; the new one binds the same path.
  ::unlink(host.socket.c_str());
  auto started = spawn(agent_command(index), SpawnOptions{host.log, -1, true});
  if (!started) return started.error();
  host.agent = started.value();
  host.frozen = false;
  if (auto saved = save(); !saved) return saved;
  if (!state_.stand_in.empty()) return Ok{};
  // Started means answering on its control socket, so listeners can connect at once.
  if (auto ready = wait_for_control_socket(host.socket, host.agent, kStartTimeout); !ready) {
    return Error{host.name + ": " + ready.error().message + " (see " + host.log + ")"};
  }
  return Ok{};
}

Result<Ok> Lab::end_agent(int index, int signal) {
  if (auto checked = check_host(state_, index); !checked) return checked;
  HostState& host = state_.host(index);
  if (!is_running(host.agent)) return not_running(host);
  send_signal(host.agent, signal);
  if (signal == SIGTERM && host.frozen) send_signal(host.agent, SIGCONT);
  const bool gone = wait_gone(host.agent, signal == SIGKILL ? kKillWait : kAgentStopGrace);
  if (!gone) {
    if (signal == SIGKILL) return Error{"the agent of " + host.name + " survived SIGKILL"};
    terminate_all({host.agent}, Milliseconds{0});
  }
  host.agent = ProcessId{};
  host.frozen = false;
  return save();
}

Result<Ok> Lab::kill_agent(int index) { return end_agent(index, SIGKILL); }

Result<Ok> Lab::stop_agent(int index) { return end_agent(index, SIGTERM); }

Result<Ok> Lab::restart_agent(int index) {
  if (auto checked = check_host(state_, index); !checked) return checked;
  if (is_running(state_.host(index).agent)) {
    if (auto killed = kill_agent(index); !killed) return killed;
  }
  return start_agent(index);
}

Result<Ok> Lab::freeze(int index) {
  if (auto checked = check_host(state_, index); !checked) return checked;
  HostState& host = state_.host(index);
  if (!send_signal(host.agent, SIGSTOP)) return not_running(host);
  host.frozen = true;
  return save();
}

Result<Ok> Lab::thaw(int index) {
  if (auto checked = check_host(state_, index); !checked) return checked;
  HostState& host = state_.host(index);
  if (!send_signal(host.agent, SIGCONT)) return not_running(host);
  host.frozen = false;
  return save();
}

Result<Ok> Lab::set_link(int index, bool up) {
  if (auto checked = check_host(state_, index); !checked) return checked;
  HostState& host = state_.host(index);
  if (auto done = lab::set_link(host.veth, up); !done) return done;
  host.link_up = up;
  return save();
}

Result<Ok> Lab::apply_faults(const NetworkFaults& faults) {
  const std::string path = state_.dir + "/faults.nft";
  const std::string rules = nft_ruleset(state_.names(), host_count(), faults);
  if (auto written = write_file_atomically(path, rules, 0644); !written) return written;
  if (auto loaded = load_ruleset(path); !loaded) return loaded;
  state_.faults = faults;
  return save();
}

Result<Ok> Lab::partition(const std::vector<std::vector<int>>& groups) {
  if (auto checked = check_host(state_, 1); !checked) return checked;
  if (auto valid = validate_partition(groups, host_count()); !valid) return valid;
  NetworkFaults faults = state_.faults;
  faults.partition = groups;
  return apply_faults(faults);
}

Result<Ok> Lab::cut(int from, int to) {
  if (auto checked = check_host(state_, from); !checked) return checked;
  if (auto checked = check_host(state_, to); !checked) return checked;
  if (from == to) return Error{"a cut needs two different hosts"};
  NetworkFaults faults = state_.faults;
  faults.cuts.emplace_back(from, to);
  return apply_faults(faults);
}

Result<Ok> Lab::loss(int percent) {
  if (auto checked = check_host(state_, 1); !checked) return checked;
  if (percent < 0 || percent > 100) return Error{"loss is a percentage, 0 to 100"};
  NetworkFaults faults = state_.faults;
  faults.loss_percent = percent;
  return apply_faults(faults);
}

Result<Ok> Lab::heal() {
  if (auto checked = check_host(state_, 1); !checked) return checked;
  return apply_faults(NetworkFaults{});
}

Result<Ok> Lab::adopt(const ProcessId& helper) {
  KEEL_ASSERT(helper.valid());
  std::erase_if(state_.helpers, [](const ProcessId& old) { return !is_running(old); });
  state_.helpers.push_back(helper);
  return save();
}

}  // namespace keel::lab
