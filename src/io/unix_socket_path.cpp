#include "io/unix_socket_path.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/errno_text.hpp"

namespace keel::io {

Result<bool> someone_listens(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return Error{"socket path too long: " + path};
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{"socket(): " + errno_text()};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int error = errno;
  ::close(fd);
  if (connected == 0) return true;
  if (error == ECONNREFUSED) return false;
  return Error{"cannot check whether a server listens on " + path + ": " + std::strerror(error)};
}

Result<Ok> clear_socket_path(const std::string& path, const std::string& what,
                             const std::string& in_use_hint, const std::string& not_socket_hint) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return Ok{};
    return Error{"cannot inspect " + path + ": " + errno_text()};
  }
  if (!S_ISSOCK(info.st_mode)) return Error{path + " exists and is not a socket" + not_socket_hint};
  auto listening = someone_listens(path);
  if (!listening.ok()) return listening.error();
  if (listening.value()) return Error{"another process" + in_use_hint + " listens on " + path};
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error{"cannot remove the stale socket " + path + ": " + errno_text()};
  }
  spdlog::info("removed a stale {} at {}", what, path);
  return Ok{};
}

}  // namespace keel::io
