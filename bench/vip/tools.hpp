// The tools the floating-IP benchmark compares, behind one interface: keel's agents with a given
// configuration, and keepalived or ucarp (vrrp_daemons.hpp). Each runs on every host of one lab,
// one tool at a time, and knows how to inject a fault on one host and undo it.
//
// Faults (the same for every tool where it applies):
//   link_down  the host's bridge port down (Lab::set_link), as if its cable were pulled
//   freeze     SIGSTOP of the daemon (keel's agent; every keepalived or ucarp process of the host)
//   stop       SIGTERM of the daemon: a clean shutdown
//   drain      keel only (`keel node drain`): the host hands its addresses over on purpose
// restore() undoes them: link up, SIGCONT, start again, `keel node undrain`.
//
// Thread-safety: none; the benchmark drives one tool at a time from one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"
#include "vrrp_daemons.hpp"

namespace keel::bench {

enum class Fault { link_down, freeze, stop, drain };
const char* fault_name(Fault fault);

class Tool {
 public:
  virtual ~Tool() = default;
  virtual std::string name() const = 0;    // "keel", "keepalived", "ucarp"
  virtual std::string config() const = 0;  // which configuration, for the report
  virtual std::vector<Fault> faults() const = 0;
  // Starts it on every host where it does not run yet (placement is left to settle).
  virtual Result<Ok> start() = 0;
  // Stops it everywhere, cleanly, so that it releases the addresses it holds.
  virtual Result<Ok> stop() = 0;
  virtual Result<Ok> inject(int host, Fault fault) = 0;
  virtual Result<Ok> restore(int host, Fault fault) = 0;
};

// keel's agents with `settings` written to every host's keel.toml before they start.
std::unique_ptr<Tool> make_keel_tool(lab::Lab& lab, std::string config,
                                     lab::HostConfigSettings settings);
std::unique_ptr<Tool> make_daemon_tool(lab::Lab& lab, std::string config, DaemonSettings settings);

}  // namespace keel::bench
