#include "disk_copy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/volume/types.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kCopyRounds = 2;
constexpr std::size_t kCopyPieceBytes = 1u << 20;
static_assert(kCopyPieceBytes >= volume::kPageAlignedFromBytes);
constexpr std::size_t kCopyAlignment = 4096;
// One writer per copy, and as many as keel's I/O threads per copy (nbdkit's file plugin writes
// with more still).
constexpr int kCopyWriters[] = {1, 4};

// A new file of `bytes` reserved up front (as `keel volume create` and the bench's other targets
// make them), removed on destruction.
class CopyFile {
 public:
  // Reserved through a plain descriptor, written through one opened with O_DIRECT if `direct`
  // (posix_fallocate may fall back to writes that O_DIRECT refuses).
  CopyFile(std::string path, std::uint64_t bytes, bool direct) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    if (const int reserved = ::posix_fallocate(fd_, 0, static_cast<off_t>(bytes)); reserved != 0) {
      error_ = reserved;
    } else if (direct) {
      const int unbuffered = ::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
      if (unbuffered < 0) error_ = errno;
      ::close(std::exchange(fd_, unbuffered));
      return;
    }
    if (error_ != 0) ::close(std::exchange(fd_, -1));
  }
  ~CopyFile() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  CopyFile(const CopyFile&) = delete;
  CopyFile& operator=(const CopyFile&) = delete;

  // Copies `bytes` of `source` into this file with `writers` threads, each writing every
  // `writers`-th piece (so that the writes are spread over the file at once, as a client's
  // queued requests are), then makes it durable.
  Result<Ok> copy_from(int source, std::uint64_t bytes, int writers) {
    if (fd_ < 0) return Error{"cannot create " + path_ + ": " + std::strerror(error_)};
    std::vector<Result<Ok>> outcomes(static_cast<std::size_t>(writers), Ok{});
    {
      std::vector<std::jthread> threads;
      for (int writer = 0; writer < writers; ++writer) {
        threads.emplace_back([&, writer] {
          outcomes[static_cast<std::size_t>(writer)] = copy_pieces(source, bytes, writer, writers);
        });
      }
    }
    for (auto& outcome : outcomes)
      if (!outcome) return outcome;
    if (::fdatasync(fd_) != 0) return Error{path_ + ": fdatasync: " + std::strerror(errno)};
    return Ok{};
  }

 private:
  Result<Ok> copy_pieces(int source, std::uint64_t bytes, int first, int stride) const {
    volume::Bytes piece(kCopyPieceBytes);  // page-aligned, as O_DIRECT wants
    const std::uint64_t step = kCopyPieceBytes * static_cast<std::uint64_t>(stride);
    for (std::uint64_t done = kCopyPieceBytes * static_cast<std::uint64_t>(first); done < bytes;
         done += step) {
      const auto want =
          static_cast<std::size_t>(std::min<std::uint64_t>(bytes - done, kCopyPieceBytes));
      const off_t at = static_cast<off_t>(done);
      if (const ssize_t got = ::pread(source, piece.data(), want, at);
          got != static_cast<ssize_t>(want)) {
        return Error{"reading the source: " +
                     std::string(got < 0 ? std::strerror(errno) : "it is shorter than --size")};
      }
      if (::pwrite(fd_, piece.data(), want, at) != static_cast<ssize_t>(want)) {
        return Error{path_ + ": write: " + std::strerror(errno)};
      }
    }
    return Ok{};
  }

  std::string path_;
  int fd_ = -1;
  int error_ = 0;  // why the file could not be made
};

double copy_seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The best of kCopyRounds alternating rounds of one copy against two at once, `writers` threads
// per copy.
Result<Ok> disk_copy_pair(Context& context, int source, int writers) {
  const std::uint64_t bytes = context.options.size;
  const std::string dir = context.options.work_dir;
  double one_best = 0, two_best = 0;
  Result<Ok> outcome = Ok{};
  // Alternating, so that both see the same state of the disk and of the host behind it.
  for (int round = 0; round < kCopyRounds && outcome; ++round) {
    {
      CopyFile only(dir + "/copy-one.img", bytes, false);
      const auto start = Clock::now();
      outcome = only.copy_from(source, bytes, writers);
      if (outcome)
        one_best = std::max(one_best, static_cast<double>(bytes) / copy_seconds_since(start));
    }
    if (!outcome) break;
    CopyFile cached(dir + "/copy-cached.img", bytes, false);
    CopyFile direct(dir + "/copy-direct.img", bytes, true);
    const auto start = Clock::now();
    Result<Ok> beside = Ok{};
    std::thread other([&] { beside = direct.copy_from(source, bytes, writers); });
    outcome = cached.copy_from(source, bytes, writers);
    other.join();
    if (outcome) outcome = beside;
    if (outcome)
      two_best = std::max(two_best, static_cast<double>(bytes) / copy_seconds_since(start));
  }
  if (!outcome) return outcome;
  context.report.add(json{{"test", "disk_copy_pairs"},
                          {"rounds", kCopyRounds},
                          {"bytes", bytes},
                          {"writers_per_copy", writers},
                          {"one_copy_mb_s", one_best / 1e6},
                          {"two_copies_mb_s", two_best / 1e6},
                          {"two_over_one", two_best / one_best}});
  std::cerr << "keel_volume_bench: durable copy of " << bytes << " bytes on this machine, "
            << writers << " writer(s) per copy: one file " << std::lround(one_best / 1e6)
            << " MB/s, two at once (one O_DIRECT) " << std::lround(two_best / 1e6)
            << " MB/s (best of " << kCopyRounds << ")\n";
  return Ok{};
}

}  // namespace

Result<Ok> disk_copy_pairs(Context& context) {
  if (context.options.size % kCopyAlignment != 0)
    return Error{"the size is not a multiple of 4096 (O_DIRECT)"};
  const int source = ::open(context.source.c_str(), O_RDONLY | O_CLOEXEC);
  if (source < 0) return Error{"cannot open " + context.source + ": " + std::strerror(errno)};
  Result<Ok> outcome = Ok{};
  for (const int writers : kCopyWriters) {
    outcome = disk_copy_pair(context, source, writers);
    if (!outcome) break;
  }
  ::close(source);
  return outcome;
}

}  // namespace keel::bench
