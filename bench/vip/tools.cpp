#include "tools.hpp"

#include <signal.h>

#include <algorithm>
#include <map>

#include "lab/process.hpp"
#include "lab/state.hpp"

namespace keel::bench {
namespace {

constexpr lab::Milliseconds kStopGrace{5000};
constexpr lab::Milliseconds kFormationTimeout{20000};

std::vector<int> all_hosts(const lab::Lab& lab) {
  std::vector<int> hosts;
  for (int index = 1; index <= lab.host_count(); ++index) hosts.push_back(index);
  return hosts;
}

class KeelTool final : public Tool {
 public:
  KeelTool(lab::Lab& lab, std::string config, lab::HostConfigSettings settings)
      : lab_(lab), config_(std::move(config)), settings_(std::move(settings)) {}

  std::string name() const override { return "keel"; }
  std::string config() const override { return config_; }
  std::vector<Fault> faults() const override {
    return {Fault::link_down, Fault::freeze, Fault::stop, Fault::drain};
  }

  Result<Ok> start() override {
    for (int index = 1; index <= lab_.host_count(); ++index) {
      if (lab::is_running(lab_.host(index).agent)) continue;
      const std::string text = lab::host_config_toml(lab_.state(), index, settings_);
      if (auto written = lab::write_file_atomically(lab_.host(index).config, text, 0644);
          !written) {
        return written;
      }
      if (auto started = lab_.start_agent(index); !started) return started;
    }
    auto view = lab_.wait_for_view(all_hosts(lab_), kFormationTimeout);
    if (!view) return view.error();
    return Ok{};
  }

  Result<Ok> stop() override {
    for (int index = 1; index <= lab_.host_count(); ++index) {
      if (!lab::is_running(lab_.host(index).agent)) continue;
      if (auto stopped = lab_.stop_agent(index); !stopped) return stopped;
    }
    return Ok{};
  }

  Result<Ok> inject(int host, Fault fault) override {
    switch (fault) {
      case Fault::link_down:
        return lab_.set_link(host, false);
      case Fault::freeze:
        return lab_.freeze(host);
      case Fault::stop:
        return lab_.stop_agent(host);
      case Fault::drain:
        return node_command(host, "drain");
    }
    return Error{"unknown fault"};
  }

  Result<Ok> restore(int host, Fault fault) override {
    switch (fault) {
      case Fault::link_down:
        return lab_.set_link(host, true);
      case Fault::freeze:
        return lab_.thaw(host);
      case Fault::stop:
        return lab_.start_agent(host);
      case Fault::drain:
        return node_command(host, "undrain");
    }
    return Error{"unknown fault"};
  }

 private:
  Result<Ok> node_command(int host, const std::string& op) {
    auto ran =
        lab::run_checked({lab_.keel_binary(), "node", op, "--socket", lab_.host(host).socket},
                         lab::Milliseconds{10000});
    if (!ran) return ran.error();
    return Ok{};
  }

  lab::Lab& lab_;
  std::string config_;
  lab::HostConfigSettings settings_;
};

class DaemonTool final : public Tool {
 public:
  DaemonTool(lab::Lab& lab, std::string config, DaemonSettings settings)
      : lab_(lab), config_(std::move(config)), settings_(std::move(settings)) {}

  std::string name() const override { return daemon_name(settings_.kind); }
  std::string config() const override { return config_; }
  std::vector<Fault> faults() const override {
    return {Fault::link_down, Fault::freeze, Fault::stop};
  }

  Result<Ok> start() override {
    if (auto written = write_daemon_files(lab_, settings_); !written) return written;
    for (int index = 1; index <= lab_.host_count(); ++index) {
      if (auto started = start_host(index); !started) return started;
    }
    return Ok{};
  }

  Result<Ok> stop() override {
    for (int index = 1; index <= lab_.host_count(); ++index) {
      if (auto stopped = stop_host(index); !stopped) return stopped;
    }
    return Ok{};
  }

  Result<Ok> inject(int host, Fault fault) override {
    switch (fault) {
      case Fault::link_down:
        return lab_.set_link(host, false);
      case Fault::freeze:
        return signal_all(host, SIGSTOP);
      case Fault::stop:
        return stop_host(host);
      case Fault::drain:
        return Error{name() + " has no drain"};
    }
    return Error{"unknown fault"};
  }

  Result<Ok> restore(int host, Fault fault) override {
    switch (fault) {
      case Fault::link_down:
        return lab_.set_link(host, true);
      case Fault::freeze:
        return signal_all(host, SIGCONT);
      case Fault::stop:
        return start_host(host);
      case Fault::drain:
        return Error{name() + " has no drain"};
    }
    return Error{"unknown fault"};
  }

 private:
  Result<Ok> start_host(int index) {
    if (!running_[index].empty()) return Ok{};
    auto started = start_daemon(lab_, index, settings_);
    if (!started) return started.error();
    running_[index] = started.value();
    return Ok{};
  }

  // SIGTERM to the processes this tool started (keepalived's parent ends its own child), then
  // waits until every daemon process of the host is gone.
  Result<Ok> stop_host(int index) {
    for (const auto& process : running_[index]) lab::send_signal(process, SIGTERM);
    for (const auto& process : running_[index]) {
      if (!lab::wait_gone(process, kStopGrace)) {
        lab::send_signal(process, SIGKILL);
        (void)lab::wait_gone(process, kStopGrace);
      }
    }
    running_[index].clear();
    for (const auto& left : daemon_processes(lab_, index, settings_.kind)) {
      if (!lab::wait_gone(left, kStopGrace)) {
        return Error{name() + " on h" + std::to_string(index) + " did not stop"};
      }
    }
    return Ok{};
  }

  Result<Ok> signal_all(int index, int signal) {
    const auto processes = daemon_processes(lab_, index, settings_.kind);
    if (processes.empty()) return Error{"no " + name() + " runs on h" + std::to_string(index)};
    for (const auto& process : processes) lab::send_signal(process, signal);
    return Ok{};
  }

  lab::Lab& lab_;
  std::string config_;
  DaemonSettings settings_;
  std::map<int, std::vector<lab::ProcessId>> running_;  // host -> what start_daemon returned
};

}  // namespace

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::link_down:
      return "link_down";
    case Fault::freeze:
      return "freeze";
    case Fault::stop:
      return "stop";
    case Fault::drain:
      return "drain";
  }
  return "?";
}

std::unique_ptr<Tool> make_keel_tool(lab::Lab& lab, std::string config,
                                     lab::HostConfigSettings settings) {
  return std::make_unique<KeelTool>(lab, std::move(config), std::move(settings));
}

std::unique_ptr<Tool> make_daemon_tool(lab::Lab& lab, std::string config, DaemonSettings settings) {
  return std::make_unique<DaemonTool>(lab, std::move(config), std::move(settings));
}

}  // namespace keel::bench
