// ControlClient: a blocking client of the agent's control socket, for the CLI and the tests.
//
// One connection; write_line() sends a request line, read_line() returns the next reply or event
// line (at most kMaxReplyLineBytes). Errors are values with a message a person can act on
// ("no agent control socket at /run/keel/keel.sock (is `keel agent` running?)").
//
// Thread-safety: none; one thread per client.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/common/result.hpp"

namespace keel::agent {

class ControlClient {
 public:
  static Result<ControlClient> connect(const std::string& path);
  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&&) = delete;
  ~ControlClient();

  // Replies slower than this fail (0: wait forever, for listen streams).
  void set_timeout_ms(int timeout_ms);
  Result<Ok> write_line(const std::string& line);
  // Tells the agent that nothing more will be written (as `nc -N` does at the end of its input);
  // replies and events still come.
  Result<Ok> shut_down_writing();
  Result<std::string> read_line();
  // Whether the last read_line() failed only because the timeout passed (the line so far is
  // kept, and a later read_line() goes on with it).
  bool timed_out() const { return timed_out_; }
  // Sends one request and parses its one reply line.
  Result<nlohmann::json> request(const nlohmann::json& request);

 private:
  explicit ControlClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
  std::string buffer_;
  bool timed_out_ = false;
};

// The control socket to use: `socket_path` if given, else the one `config_path` names; with
// neither, the one in the default config file, or the default socket if there is no such file.
Result<std::string> control_socket_path(const std::optional<std::string>& config_path,
                                        const std::optional<std::string>& socket_path);

}  // namespace keel::agent
