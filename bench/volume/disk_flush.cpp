#include "disk_flush.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

namespace keel::bench {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kRounds = 2000;
constexpr std::size_t kBlockBytes = 4096;
constexpr std::size_t kFileBlocks = 1024;  // 4 MiB each, allocated before the rounds

// A file of kFileBlocks written blocks, removed on destruction.
class FlushFile {
 public:
  explicit FlushFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  }
  ~FlushFile() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  FlushFile(const FlushFile&) = delete;
  FlushFile& operator=(const FlushFile&) = delete;

  Result<Ok> fill() {
    if (fd_ < 0) return Error{"cannot create " + path_ + ": " + std::strerror(errno)};
    for (std::size_t block = 0; block < kFileBlocks; ++block) {
      if (auto written = write_block(block); !written) return written;
    }
    return ::fsync(fd_) == 0 ? Result<Ok>{Ok{}} : Error{path_ + ": fsync: " + std::strerror(errno)};
  }

  // One block rewritten (so that the flush has data to write) and made durable.
  Result<Ok> write_and_sync(std::size_t block) {
    if (auto written = write_block(block); !written) return written;
    if (::fdatasync(fd_) != 0) return Error{path_ + ": fdatasync: " + std::strerror(errno)};
    return Ok{};
  }

 private:
  Result<Ok> write_block(std::size_t block) {
    const ssize_t put = ::pwrite(fd_, bytes_.data(), bytes_.size(),
                                 static_cast<off_t>(block % kFileBlocks * kBlockBytes));
    if (put != static_cast<ssize_t>(bytes_.size())) {
      return Error{path_ + ": write: " + std::strerror(errno)};
    }
    return Ok{};
  }

  std::string path_;
  int fd_ = -1;
  std::array<char, kBlockBytes> bytes_{};
};

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(fraction * static_cast<double>(values.size() - 1))];
}

}  // namespace

Result<Ok> disk_flush_pairs(Context& context) {
  FlushFile first(context.options.work_dir + "/flush-a.img");
  FlushFile second(context.options.work_dir + "/flush-b.img");
  if (auto filled = first.fill(); !filled) return filled;
  if (auto filled = second.fill(); !filled) return filled;
  std::vector<double> one, two;
  one.reserve(kRounds);
  two.reserve(kRounds);
  // Alternating, so that both see the same state of the disk and of the host behind it.
  for (int round = 0; round < kRounds; ++round) {
    const std::size_t block = static_cast<std::size_t>(round) * 7;
    auto start = Clock::now();
    if (auto done = first.write_and_sync(block); !done) return done;
    one.push_back(micros_since(start));
    start = Clock::now();
    Result<Ok> beside = Ok{};
    std::thread other([&] { beside = second.write_and_sync(block); });
    auto done = first.write_and_sync(block + 1);
    other.join();
    two.push_back(micros_since(start));
    if (!done) return done;
    if (!beside) return beside;
  }
  const double one_p50 = percentile(one, 0.5), two_p50 = percentile(two, 0.5);
  context.report.add(json{{"test", "disk_flush_pairs"},
                          {"rounds", kRounds},
                          {"one_file_p50_us", one_p50},
                          {"one_file_p99_us", percentile(one, 0.99)},
                          {"two_files_p50_us", two_p50},
                          {"two_files_p99_us", percentile(two, 0.99)},
                          {"one_over_two", one_p50 / two_p50}});
  std::cerr << "keel_volume_bench: 4 KiB write + fdatasync on this disk: one file "
            << std::lround(one_p50) << " µs, two files at once " << std::lround(two_p50)
            << " µs (p50)\n";
  return Ok{};
}

}  // namespace keel::bench
