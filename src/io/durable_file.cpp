#include "io/durable_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/errno_text.hpp"

namespace keel::io {

namespace {

Result<Ok> sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Error{"cannot open " + path + ": " + errno_text(errno)};
  const int synced = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (synced != 0) return Error{"cannot sync " + path + ": " + errno_text(error)};
  return Ok{};
}

Result<Ok> sync_directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return sync_path(dir, O_RDONLY | O_DIRECTORY);
}

}  // namespace

Result<std::optional<std::string>> read_state_file(const std::string& path) {
  std::error_code missing;
  if (!std::filesystem::exists(path, missing) && !missing) return std::optional<std::string>{};
  std::ifstream file(path);
  if (!file) return Error{"cannot read " + path};
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) return Error{"cannot read " + path};
  return std::optional<std::string>{text.str()};
}

Result<Ok> replace_file(const std::string& path, const std::string& text, bool sync) {
  const std::string temporary = path + ".new";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << text;
    file.close();
    if (!file) return Error{"cannot write " + temporary};
  }
  if (sync) {
    if (auto synced = sync_path(temporary, O_RDONLY); !synced) return synced.error();
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error{"cannot rename " + temporary + " to " + path + ": " + errno_text(errno)};
  }
  if (sync) return sync_directory_of(path);
  return Ok{};
}

Result<Ok> remove_file_durably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Ok{};
    return Error{"cannot remove " + path + ": " + errno_text(errno)};
  }
  return sync_directory_of(path);
}

}  // namespace keel::io
