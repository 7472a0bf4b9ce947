// What the volume benchmark measures, behind one interface:
//   keel    a lab of 3 hosts (h1, h2 backends, h3 witness) with volume "data" in sync mode, its
//           two copies on files in the hosts' lab directories, exported on h1's Unix socket with
//           h1 primary (KeelTarget also drives the disconnect, resync and failover scenarios);
//   nbdkit  `nbdkit -f -U SOCK file FILE` on a file of the same size (one copy, no mirroring),
//           with nbdkit's default thread count, run and stopped by its pid;
//   raw     the file itself (fio psync/libaio, nbdcopy from/to the file, a loop device for ext4).
// Every file starts with its space reserved (fallocate), as `keel volume create` makes the
// backing. stop() (and the
// destructor) undo everything the target started.
//
// Thread-safety: none; one thread drives a target (rss of its pid may be read from another).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lab/cleanup_guard.hpp"
#include "lab/lab.hpp"
#include "options.hpp"

namespace keel::bench {

class Target {
 public:
  virtual ~Target() = default;
  virtual std::string name() const = 0;      // "keel", "nbdkit", "raw"
  virtual std::string describe() const = 0;  // for the report
  virtual Result<Ok> start() = 0;
  virtual void stop() = 0;
  // The export, for NBD clients: a URI and its Unix socket; empty for the raw file.
  virtual std::string uri() const = 0;
  virtual std::string socket() const = 0;
  // The raw target's file; empty for the others.
  virtual std::string file() const = 0;
  // The server process whose memory is reported; 0 when there is none.
  virtual int server_pid() const = 0;
  // The processes whose CPU time is reported (keel: the primary's and the secondary's agents).
  virtual std::vector<std::pair<std::string, int>> cpu_pids() const {
    if (server_pid() == 0) return {};
    return {{name(), server_pid()}};
  }
};

std::unique_ptr<Target> make_nbdkit_target(const Options& options);
std::unique_ptr<Target> make_raw_target(const Options& options);

class KeelTarget final : public Target {
 public:
  static constexpr const char* kVolume = "data";
  explicit KeelTarget(const Options& options) : options_(options) {}
  ~KeelTarget() override { stop(); }

  std::string name() const override { return "keel"; }
  std::string describe() const override;
  Result<Ok> start() override;
  void stop() override;
  std::string uri() const override { return uri_of(primary_); }
  std::string socket() const override { return socket_of(primary_); }
  std::string file() const override { return ""; }
  int server_pid() const override;
  std::vector<std::pair<std::string, int>> cpu_pids() const override;

  // Keep the lab directory (minus the backing files) at stop, for its logs.
  void keep_logs() { keep_logs_ = true; }
  lab::Lab& lab() { return *lab_; }
  int primary() const { return primary_; }
  void set_primary(int host) { primary_ = host; }
  std::string uri_of(int host) const;
  std::string socket_of(int host) const;
  std::string backing_of(int host) const;

  // `keel volume ARGS --socket hI/keel.sock`: stdout, or the exit code and stderr.
  Result<std::string> volume_command(int host, std::vector<std::string> args,
                                     Milliseconds timeout = Milliseconds{15000});
  // The volume's object from `keel volume status data --json`; empty on any failure.
  nlohmann::json status(int host);
  // Polls status(host) every `every` until `predicate` holds: the status that did, or an Error
  // with the last one seen.
  Result<nlohmann::json> wait_status(int host,
                                     const std::function<bool(const nlohmann::json&)>& predicate,
                                     const std::string& what, Milliseconds timeout,
                                     Milliseconds every = Milliseconds{50});
  // h1 primary, h2 secondary, connected, both UpToDate and nothing out of sync.
  Result<Ok> wait_in_sync(int primary, int secondary, Milliseconds timeout);

 private:
  const Options& options_;
  std::optional<lab::CleanupGuard> guard_;
  std::optional<lab::Lab> lab_;
  int primary_ = 1;
  bool keep_logs_ = false;
};

bool in_sync_primary(const nlohmann::json& status);

}  // namespace keel::bench
