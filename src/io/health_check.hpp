// HealthCheck: a periodic check of a local service, run on the agent's io_context without ever
// blocking it, whose state gates whether this host may hold a pool's floating IPs.
//
// Kinds:
// - tcp: a connection to host:port is accepted.
// - http: an HTTP/1.0 GET of `path` from host:port answers with `expected_status`.
// - exec: a command exits with status 0. The command is an argument vector, run with posix_spawn
//   (argv[0] looked up in PATH), never through a shell; split_command() turns a configured string
//   into one. Whoever wants a shell asks for it: "sh -c 'test -e /run/ready'". The child runs in
//   its own process group with stdin, stdout and stderr on /dev/null and no other descriptor of
//   the agent's; on timeout the whole group is killed (SIGKILL). The exit is awaited through a
//   pidfd that Asio polls, so no SIGCHLD handler is involved; the agent must not set SIGCHLD to
//   SIG_IGN (the kernel would then reap the child itself and its status would be lost).
//
// A check starts every `interval_ms`, measured from the start of the previous one, and is
// abandoned (counted as failed) after `timeout_ms`; checks never overlap. The state begins as
// kUnknown, becomes kHealthy after `rise` consecutive successes and kUnhealthy after `fall`
// consecutive failures (HealthCounter). The agent should treat kUnknown as not eligible.
// The callback runs on a state change only; status() may be read at any time for `keel status`.
//
// Thread-safety: none. Construct, start(), stop(), status() and the callback all belong to the
// io_context's one thread (or happen before it runs). The callback may call stop(), and may
// destroy the HealthCheck.
#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::io {

enum class HealthCheckKind { kTcp, kHttp, kExec };
enum class HealthState { kUnknown, kHealthy, kUnhealthy };

std::string_view to_string(HealthCheckKind kind);
std::string_view to_string(HealthState state);

struct HealthCheckConfig {
  HealthCheckKind kind = HealthCheckKind::kTcp;
  std::string host;                  // tcp, http: an IP address literal (no name lookup)
  std::uint16_t port = 0;            // tcp, http
  std::string path = "/";            // http
  int expected_status = 200;         // http
  std::vector<std::string> command;  // exec: argument vector
  std::uint32_t interval_ms = 2000;
  std::uint32_t timeout_ms = 1000;
  std::uint32_t rise = 2;
  std::uint32_t fall = 3;
};

// Checks a configuration; the error names the field.
Result<Ok> validate(const HealthCheckConfig& config);

// Splits a command line into words the way sh would (blanks separate words; '...' is literal;
// "..." allows \" \\ \$ \`; a backslash outside quotes escapes the next character) but performs no
// expansion of any kind. An unterminated quote or an empty line is an error.
Result<std::vector<std::string>> split_command(const std::string& text);

// What `keel status` shows for one check. Times are monotonic microseconds (io/clock.hpp).
struct HealthStatus {
  HealthState state = HealthState::kUnknown;
  std::optional<bool> last_result;  // the latest finished check passed; nothing before the first
  std::string last_error;           // why the latest failed check failed (kept after successes)
  std::uint32_t consecutive_successes = 0;
  std::uint32_t consecutive_failures = 0;
  std::uint64_t checks = 0;  // finished checks
  std::optional<TimeUs> last_check_us;
  std::optional<TimeUs> last_change_us;  // when `state` last changed
};

// The rise/fall counting, apart from any I/O.
class HealthCounter {
 public:
  HealthCounter(std::uint32_t rise, std::uint32_t fall);

  // Records one finished check; true if that changed the state.
  bool record(bool success, const std::string& error, TimeUs now);
  const HealthStatus& status() const { return status_; }

 private:
  std::uint32_t rise_;
  std::uint32_t fall_;
  HealthStatus status_;
};

class HealthCheck {
 public:
  using StateChanged = std::function<void(const HealthStatus& status)>;

  // Validates `config`; `on_change` is called on every state change while started.
  static Result<std::unique_ptr<HealthCheck>> create(asio::io_context& io, HealthCheckConfig config,
                                                     StateChanged on_change);
  ~HealthCheck();  // stop()
  HealthCheck(const HealthCheck&) = delete;
  HealthCheck& operator=(const HealthCheck&) = delete;

  // Runs the first check at once, then one every interval.
  void start();
  // Abandons a running check (killing an exec child) and schedules no more; idempotent. A killed
  // child is reaped by a handler left on the io_context, so run it a little longer if the process
  // goes on (the agent does); a zombie otherwise lasts until the agent exits.
  void stop();

  const HealthStatus& status() const;
  const HealthCheckConfig& config() const;

  class Runner;  // the state shared with pending handlers

 private:
  explicit HealthCheck(std::shared_ptr<Runner> runner);
  std::shared_ptr<Runner> runner_;
};

}  // namespace keel::io
