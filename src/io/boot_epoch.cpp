#include "io/boot_epoch.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
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

// The recorded epoch, 0 when there is none yet.
Result<std::uint64_t> read_record(const std::string& path) {
  std::error_code missing;
  if (!std::filesystem::exists(path, missing) && !missing) return std::uint64_t{0};
  std::ifstream file(path);
  if (!file) return Error{"cannot read " + path};
  std::stringstream text;
  text << file.rdbuf();
  std::string digits = text.str();
  while (!digits.empty() && (digits.back() == '\n' || digits.back() == ' ')) digits.pop_back();
  std::uint64_t epoch = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), epoch);
  if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size()) {
    return Error{path + " does not hold a boot epoch (a decimal number); remove it if the " +
                 "wall clock is right"};
  }
  return epoch;
}

}  // namespace

Result<std::uint64_t> next_boot_epoch(const std::string& state_dir, std::uint64_t now_us) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{"cannot create state directory " + state_dir + ": " + errno_text(errno)};
  }
  const std::string path = state_dir + "/" + kBootEpochFile;
  auto recorded = read_record(path);
  if (!recorded) return recorded.error();
  const std::uint64_t epoch = std::max(now_us, recorded.value() + 1);
  const std::string temporary = path + ".new";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << epoch << "\n";
    file.close();
    if (!file) return Error{"cannot write " + temporary};
  }
  if (auto synced = sync_path(temporary, O_RDONLY); !synced) return synced.error();
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error{"cannot rename " + temporary + " to " + path + ": " + errno_text(errno)};
  }
  if (auto synced = sync_path(state_dir, O_RDONLY | O_DIRECTORY); !synced) return synced.error();
  return epoch;
}

}  // namespace keel::io
