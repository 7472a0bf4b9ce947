#include "io/health_check.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/child_spawn.hpp"
#include "io/clock.hpp"
#include "io/errno_text.hpp"

namespace keel::io {

namespace {

constexpr std::size_t kMaxStatusLineBytes = 8192;
constexpr std::size_t kMaxCommandWords = 256;

std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

// "HTTP/1.1 200 OK\r\n" -> 200; nothing if the line is not a status line.
std::optional<int> status_code(std::string_view line) {
  if (line.substr(0, 5) != "HTTP/") return std::nullopt;
  const auto space = line.find(' ');
  if (space == std::string_view::npos || line.size() < space + 4) return std::nullopt;
  int code = 0;
  for (std::size_t i = space + 1; i < space + 4; ++i) {
    if (line[i] < '0' || line[i] > '9') return std::nullopt;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > space + 4 && line[space + 4] != ' ' && line[space + 4] != '\r') {
    return std::nullopt;
  }
  return code;
}

}  // namespace

// Members of HealthCheck::Runner, so not file-local: a class with linkage cannot hold one that
// has none.
namespace health_check_detail {

// A spawned exec check: its pid, and a pidfd that becomes readable when it exits.
struct ExecChild {
  ExecChild(asio::io_context& io, pid_t child_pid, int pidfd) : pid(child_pid), exited(io, pidfd) {}
  ExecChild(const ExecChild&) = delete;
  ExecChild& operator=(const ExecChild&) = delete;
  ~ExecChild() {
    // Only if the io_context dropped the reaping handler: end the child, reap it if it is gone.
    kill_group();
    reap();
  }

  // The child leads its own process group, so this reaches whatever it started too. Until the
  // child is reaped its pid (and so the group id) cannot belong to anyone else.
  void kill_group() const {
    if (!reaped) ::kill(-pid, SIGKILL);
  }
  // True once waitpid collected the child (status then holds its wait status).
  bool reap() {
    if (reaped) return true;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid || (got < 0 && errno == ECHILD)) {
      reaped = true;
      lost_status = got < 0;
    }
    return reaped;
  }

  pid_t pid;
  asio::posix::stream_descriptor exited;
  bool reaped = false;
  bool lost_status = false;  // SIGCHLD ignored: the kernel reaped it
  int status = 0;
};

struct Conversation {
  explicit Conversation(asio::io_context& io) : socket(io) {}
  asio::ip::tcp::socket socket;
  std::string request;
  std::string response;
};

}  // namespace health_check_detail

using health_check_detail::Conversation;
using health_check_detail::ExecChild;

std::string_view to_string(HealthCheckKind kind) {
  switch (kind) {
    case HealthCheckKind::kTcp:
      return "tcp";
    case HealthCheckKind::kHttp:
      return "http";
    case HealthCheckKind::kExec:
      return "exec";
  }
  return "?";
}

std::string_view to_string(HealthState state) {
  switch (state) {
    case HealthState::kUnknown:
      return "unknown";
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
  }
  return "?";
}

Result<Ok> validate(const HealthCheckConfig& config) {
  if (config.rise == 0) return Error{"health check: rise must be at least 1"};
  if (config.fall == 0) return Error{"health check: fall must be at least 1"};
  if (config.interval_ms == 0) return Error{"health check: interval must be positive"};
  if (config.timeout_ms == 0) return Error{"health check: timeout must be positive"};
  if (config.kind == HealthCheckKind::kExec) {
    if (config.command.empty() || config.command[0].empty()) {
      return Error{"health check: exec needs a command"};
    }
    return Ok{};
  }
  asio::error_code error;
  asio::ip::make_address(config.host, error);
  if (error) return Error{"health check: host '" + config.host + "' is not an IP address"};
  if (config.port == 0) return Error{"health check: port must be set"};
  if (config.kind == HealthCheckKind::kHttp) {
    if (config.path.empty() || config.path[0] != '/') {
      return Error{"health check: path '" + config.path + "' must start with '/'"};
    }
    if (config.path.find_first_of(" \r\n") != std::string::npos) {
      return Error{"health check: path '" + config.path + "' contains blanks or line breaks"};
    }
    if (config.expected_status < 100 || config.expected_status > 599) {
      return Error{"health check: expected status " + std::to_string(config.expected_status) +
                   " is not an HTTP status"};
    }
  }
  return Ok{};
}

Result<std::vector<std::string>> split_command(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\') {
      if (++i == text.size()) return Error{"command ends in a lone backslash"};
      word += text[i];
    } else if (c == '\'') {
      const auto end = text.find('\'', i + 1);
      if (end == std::string::npos) return Error{"command has an unterminated ' quote"};
      word.append(text, i + 1, end - i - 1);
      i = end;
    } else if (c == '"') {
      for (++i;; ++i) {
        if (i == text.size()) return Error{"command has an unterminated \" quote"};
        if (text[i] == '"') break;
        if (text[i] == '\\' && i + 1 < text.size() &&
            std::string_view("\"\\$`").find(text[i + 1]) != std::string_view::npos) {
          ++i;
        }
        word += text[i];
      }
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) return Error{"command is empty"};
  if (words.size() > kMaxCommandWords) return Error{"command has too many words"};
  return words;
}

HealthCounter::HealthCounter(std::uint32_t rise, std::uint32_t fall) : rise_(rise), fall_(fall) {
  KEEL_ASSERT(rise_ > 0 && fall_ > 0);
}

bool HealthCounter::record(bool success, const std::string& error, TimeUs now) {
  HealthStatus& s = status_;
  ++s.checks;
  s.last_result = success;
  s.last_check_us = now;
  HealthState next = s.state;
  if (success) {
    ++s.consecutive_successes;
    s.consecutive_failures = 0;
    if (s.consecutive_successes >= rise_) next = HealthState::kHealthy;
  } else {
    ++s.consecutive_failures;
    s.consecutive_successes = 0;
    s.last_error = error;
    if (s.consecutive_failures >= fall_) next = HealthState::kUnhealthy;
  }
  if (next == s.state) return false;
  s.state = next;
  s.last_change_us = now;
  return true;
}

class HealthCheck::Runner : public std::enable_shared_from_this<HealthCheck::Runner> {
 public:
  Runner(asio::io_context& io, HealthCheckConfig config, StateChanged on_change)
      : config_(std::move(config)),
        counter_(config_.rise, config_.fall),
        io_(io),
        on_change_(std::move(on_change)),
        interval_timer_(io),
        timeout_timer_(io) {}

  void start() {
    if (running_) return;
    running_ = true;
    begin_check();
  }

  void stop() {
    running_ = false;
    interval_timer_.cancel();
    abandon(check_);
  }

  const HealthCheckConfig& config() const { return config_; }
  const HealthStatus& status() const { return counter_.status(); }

 private:
  void begin_check() {
    if (!running_ || in_flight_) return;
    in_flight_ = true;
    const std::uint64_t check = ++check_;
    started_us_ = monotonic_now_us();
    timeout_timer_.expires_after(std::chrono::milliseconds(config_.timeout_ms));
    timeout_timer_.async_wait([self = shared_from_this(), check](const asio::error_code& error) {
      if (error) return;
      self->finish(check, false,
                   "timed out after " + std::to_string(self->config_.timeout_ms) + " ms");
    });
    if (config_.kind == HealthCheckKind::kExec) {
      start_exec(check);
    } else {
      start_connection(check);
    }
  }

  // Ends check `check` if it is the one in flight: closes its socket or kills its child.
  bool abandon(std::uint64_t check) {
    if (!in_flight_ || check != check_) return false;
    in_flight_ = false;
    timeout_timer_.cancel();
    if (conversation_) {
      asio::error_code ignored;
      conversation_->socket.close(ignored);
      conversation_.reset();
    }
    if (child_) {
      child_->kill_group();  // its reaping handler is still pending and collects it
      child_.reset();
    }
    return true;
  }

  void finish(std::uint64_t check, bool success, std::string error) {
    if (!running_ || !abandon(check)) return;
    const TimeUs now = monotonic_now_us();
    const bool changed = counter_.record(success, error, now);
    const TimeUs next = std::max(now, started_us_ + ms_to_us(config_.interval_ms));
    interval_timer_.expires_at(monotonic_time_point(next));
    interval_timer_.async_wait([self = shared_from_this()](const asio::error_code& wait_error) {
      if (!wait_error) self->begin_check();
    });
    // Last: the callback may stop or destroy the HealthCheck; this runner lives on through self.
    if (changed && on_change_) {
      const auto self = shared_from_this();
      on_change_(counter_.status());
    }
  }

  // Reports a failure found before anything was started, from a fresh handler so that the
  // callback never runs inside start().
  void fail_soon(std::uint64_t check, std::string error) {
    asio::post(io_, [self = shared_from_this(), check, error = std::move(error)]() mutable {
      self->finish(check, false, std::move(error));
    });
  }

  std::string target() const {
    const auto address = asio::ip::make_address(config_.host);
    return (address.is_v6() ? "[" + config_.host + "]" : config_.host) + ":" +
           std::to_string(config_.port);
  }

  void start_connection(std::uint64_t check) {
    auto conversation = std::make_shared<Conversation>(io_);
    conversation_ = conversation;
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(config_.host), config_.port);
    conversation->socket.async_connect(endpoint, [self = shared_from_this(), check,
                                                  conversation](const asio::error_code& error) {
      if (error) {
        self->finish(check, false, "cannot connect to " + self->target() + ": " + error.message());
      } else if (self->config_.kind == HealthCheckKind::kTcp) {
        self->finish(check, true, {});
      } else {
        self->send_request(check, conversation);
      }
    });
  }

  void send_request(std::uint64_t check, const std::shared_ptr<Conversation>& conversation) {
    conversation->request = "GET " + config_.path + " HTTP/1.0\r\nHost: " + target() +
                            "\r\nUser-Agent: keel-health-check\r\nConnection: close\r\n\r\n";
    asio::async_write(
        conversation->socket, asio::buffer(conversation->request),
        [self = shared_from_this(), check, conversation](const asio::error_code& error,
                                                         std::size_t) {
          if (error) {
            self->finish(check, false,
                         "cannot send the request to " + self->target() + ": " + error.message());
            return;
          }
          self->read_status(check, conversation);
        });
  }

  void read_status(std::uint64_t check, const std::shared_ptr<Conversation>& conversation) {
    asio::async_read_until(
        conversation->socket, asio::dynamic_buffer(conversation->response, kMaxStatusLineBytes),
        "\r\n",
        [self = shared_from_this(), check, conversation](const asio::error_code& error,
                                                         std::size_t size) {
          if (error) {
            self->finish(check, false,
                         "no HTTP status line from " + self->target() + ": " + error.message());
            return;
          }
          const std::string_view line(conversation->response.data(), size);
          const auto code = status_code(line);
          if (!code) {
            self->finish(check, false, "not an HTTP status line from " + self->target());
          } else if (*code != self->config_.expected_status) {
            self->finish(check, false,
                         "GET " + self->config_.path + " on " + self->target() + " answered " +
                             std::to_string(*code) + ", expected " +
                             std::to_string(self->config_.expected_status));
          } else {
            self->finish(check, true, {});
          }
        });
  }

  void start_exec(std::uint64_t check) {
    // Streams on /dev/null; a group of its own, so that an overrun kills its children too.
    ChildSpawn setup({.null_standard_streams = true, .own_process_group = true});
    auto spawned = setup.spawn(config_.command);
    if (!spawned) {
      fail_soon(check, spawned.error().message);
      return;
    }
    const pid_t pid = spawned.value();
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      const int error = errno;
      ::kill(-pid, SIGKILL);
      int ignored = 0;
      ::waitpid(pid, &ignored, 0);  // SIGKILLed: collected at once
      fail_soon(check, "cannot watch the check's process (pidfd_open): " + errno_text(error));
      return;
    }
    auto child = std::make_shared<ExecChild>(io_, pid, pidfd);
    child_ = child;
    wait_for_exit(check, child);
  }

  void wait_for_exit(std::uint64_t check, const std::shared_ptr<ExecChild>& child) {
    child->exited.async_wait(
        asio::posix::stream_descriptor::wait_read,
        [self = shared_from_this(), check, child](const asio::error_code& error) {
          if (!child->reap()) {
            if (!error) self->wait_for_exit(check, child);  // woken early: wait again
            return;
          }
          if (child->lost_status) {
            self->finish(check, false, "the check's exit status was lost (SIGCHLD ignored?)");
          } else if (WIFEXITED(child->status) && WEXITSTATUS(child->status) == 0) {
            self->finish(check, true, {});
          } else {
            self->finish(check, false, self->config_.command[0] + " " + exit_text(child->status));
          }
        });
  }

  HealthCheckConfig config_;
  HealthCounter counter_;
  asio::io_context& io_;
  StateChanged on_change_;
  asio::steady_timer interval_timer_;
  asio::steady_timer timeout_timer_;
  bool running_ = false;
  bool in_flight_ = false;
  std::uint64_t check_ = 0;  // the number of the latest check started
  TimeUs started_us_ = 0;
  std::shared_ptr<Conversation> conversation_;  // tcp and http, while in flight
  std::shared_ptr<ExecChild> child_;            // exec, while in flight
};

Result<std::unique_ptr<HealthCheck>> HealthCheck::create(asio::io_context& io,
                                                         HealthCheckConfig config,
                                                         StateChanged on_change) {
  if (auto valid = validate(config); !valid) return valid.error();
  auto runner = std::make_shared<Runner>(io, std::move(config), std::move(on_change));
  return std::unique_ptr<HealthCheck>(new HealthCheck(std::move(runner)));
}

HealthCheck::HealthCheck(std::shared_ptr<Runner> runner) : runner_(std::move(runner)) {}

HealthCheck::~HealthCheck() { runner_->stop(); }

void HealthCheck::start() { runner_->start(); }
void HealthCheck::stop() { runner_->stop(); }
const HealthStatus& HealthCheck::status() const { return runner_->status(); }
const HealthCheckConfig& HealthCheck::config() const { return runner_->config(); }

}  // namespace keel::io
