#include "agent/control_client.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/control_protocol.hpp"
#include "config/config.hpp"

namespace keel::agent {

namespace {

std::string connect_error(const std::string& path, int error) {
  switch (error) {
    case ENOENT:
      return "no agent control socket at " + path + " (is `keel agent` running?)";
    case ECONNREFUSED:
      return "nothing listens on " + path + " (the agent is not running)";
    case EACCES:
    case EPERM:
      return "permission denied on " + path + " (the control socket is for its owner; root?)";
    default:
      return "cannot connect to " + path + ": " + std::strerror(error);
  }
}

}  // namespace

Result<ControlClient> ControlClient::connect(const std::string& path) {
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Error{"control socket path '" + path + "' is too long or empty"};
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket(): ") + std::strerror(errno)};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    ::close(fd);
    return Error{connect_error(path, error)};
  }
  return ControlClient(fd, path);
}

ControlClient::ControlClient(ControlClient&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)), buffer_(std::move(other.buffer_)) {
  other.fd_ = -1;
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

void ControlClient::set_timeout_ms(int timeout_ms) {
  timeval timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

Result<Ok> ControlClient::write_line(const std::string& line) {
  const std::string data = line + '\n';
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t sent = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return Error{"writing to " + path_ + ": " + std::strerror(errno)};
    done += static_cast<std::size_t>(sent);
  }
  return Ok{};
}

Result<Ok> ControlClient::shut_down_writing() {
  if (::shutdown(fd_, SHUT_WR) != 0) {
    return Error{"shutting down writing to " + path_ + ": " + std::strerror(errno)};
  }
  return Ok{};
}

Result<std::string> ControlClient::read_line() {
  timed_out_ = false;
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > kMaxReplyLineBytes) return Error{"reply line too long from " + path_};
    char chunk[65536];
    const ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      timed_out_ = true;
      return Error{"the agent did not answer in time on " + path_};
    }
    if (got < 0) return Error{"reading from " + path_ + ": " + std::strerror(errno)};
    if (got == 0) return Error{"the agent closed the connection"};
    buffer_.append(chunk, static_cast<std::size_t>(got));
  }
}

Result<nlohmann::json> ControlClient::request(const nlohmann::json& request) {
  if (auto written = write_line(to_line(request)); !written.ok()) return written.error();
  auto line = read_line();
  if (!line.ok()) return line.error();
  auto reply = nlohmann::json::parse(line.value(), nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) {
    return Error{"the agent sent a reply that is not a JSON object"};
  }
  return reply;
}

Result<std::string> control_socket_path(const std::optional<std::string>& config_path,
                                        const std::optional<std::string>& socket_path) {
  if (socket_path) return *socket_path;
  const std::string path = config_path.value_or(config::kDefaultConfigPath);
  struct stat info {};
  if (!config_path && ::stat(path.c_str(), &info) != 0 && errno == ENOENT) {
    return std::string(config::kDefaultControlSocket);
  }
  auto config = config::load_config(path);
  if (!config.ok()) return config.error();
  return config.value().agent.control_socket;
}

}  // namespace keel::agent
