#include "io/block_file.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#include "core/common/assert.hpp"
#include "io/errno_text.hpp"

namespace keel::io {
namespace {

constexpr std::size_t kZeroChunkBytes = 1u << 20;  // the buffer the zero-writing fallback uses
constexpr mode_t kCreateMode = 0600;

// The zeroes written where the kernel cannot zero a range itself; shared, never written to.
const std::vector<std::byte>& zero_chunk() {
  static const std::vector<std::byte> zeroes(kZeroChunkBytes);
  return zeroes;
}

// Opens `options.path`, creating a missing regular file when asked; sets `created`.
Result<int> open_descriptor(const BlockFileOptions& options, bool& created) {
  const int access = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  created = false;
  if (options.create && !options.read_only) {
    const int fd = ::open(options.path.c_str(), access | O_CREAT | O_EXCL, kCreateMode);
    if (fd >= 0) {
      created = true;
      return fd;
    }
    if (errno != EEXIST) return Error{"cannot create " + options.path + ": " + errno_text(errno)};
  }
  const int fd = ::open(options.path.c_str(), access);
  if (fd < 0) return Error{"cannot open " + options.path + ": " + errno_text(errno)};
  return fd;
}

// Gives a file this open() created its size, reserving the space (see the header); sets
// `reserved`. On failure the caller removes the file.
Result<Ok> size_new_file(int fd, const BlockFileOptions& options, bool& reserved) {
  const std::string wanted = std::to_string(options.size_bytes) + " bytes";
  const auto bytes = static_cast<off_t>(options.size_bytes);
  if (::fallocate(fd, 0, 0, bytes) == 0) {
    reserved = true;
    return Ok{};
  }
  const int error = errno;
  if (error != EOPNOTSUPP && error != ENOSYS) {
    std::string message =
        "cannot reserve " + wanted + " for " + options.path + ": " + errno_text(error);
    struct statvfs space {};
    if (error == ENOSPC && ::fstatvfs(fd, &space) == 0) {
      message += " (the filesystem has " +
                 std::to_string(std::uint64_t{space.f_bavail} * space.f_frsize) +
                 " bytes free for it)";
    }
    return Error{message};
  }
  if (::ftruncate(fd, bytes) != 0) {
    return Error{"cannot size " + options.path + " to " + wanted + ": " + errno_text(errno)};
  }
  return Ok{};
}

// Checks the store's size against the configuration (see the header); true for a block device.
Result<bool> check_size(int fd, const BlockFileOptions& options, bool created, bool& reserved) {
  struct stat info {};
  if (::fstat(fd, &info) != 0)
    return Error{"cannot stat " + options.path + ": " + errno_text(errno)};
  const std::string wanted = std::to_string(options.size_bytes) + " bytes";
  if (S_ISBLK(info.st_mode)) {
    std::uint64_t device_bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &device_bytes) != 0) {
      return Error{"cannot read the size of " + options.path + ": " + errno_text(errno)};
    }
    if (device_bytes < options.size_bytes) {
      return Error{"block device " + options.path + " holds " + std::to_string(device_bytes) +
                   " bytes, less than the volume's configured size of " + wanted};
    }
    return true;
  }
  if (!S_ISREG(info.st_mode)) {
    return Error{options.path + " is neither a regular file nor a block device"};
  }
  if (created) {
    auto sized = size_new_file(fd, options, reserved);
    if (!sized.ok()) return sized.error();
    return false;
  }
  const auto file_bytes = static_cast<std::uint64_t>(info.st_size);
  if (file_bytes != options.size_bytes) {
    return Error{options.path + " is " + std::to_string(file_bytes) +
                 " bytes, but the volume is configured with " + wanted +
                 "; a file backing a volume must have exactly the volume's size"};
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<BlockFile>> BlockFile::open(asio::io_context& io, BlockFileOptions options) {
  if (options.path.empty()) return Error{"no path given for the volume's data"};
  if (options.size_bytes == 0) return Error{"the volume's size must be more than 0 bytes"};
  if (options.size_bytes > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
    return Error{"the volume's size is beyond what files can hold"};
  }
  if (options.threads == 0 || options.threads > kMaxBlockFileThreads) {
    return Error{"I/O threads must be 1 to " + std::to_string(kMaxBlockFileThreads)};
  }
  bool created = false;
  bool reserved = false;
  auto fd = open_descriptor(options, created);
  if (!fd.ok()) return fd.error();
  auto block_device = check_size(fd.value(), options, created, reserved);
  if (!block_device.ok()) {
    ::close(fd.value());
    if (created) ::unlink(options.path.c_str());
    return block_device.error();
  }
  auto file =
      std::unique_ptr<BlockFile>(new BlockFile(io, fd.value(), options, block_device.value()));
  if (created) file->created_ = reserved ? Created::reserved : Created::sparse;
  if (!options.read_only) {
    // Optional: a filesystem without O_DIRECT (EINVAL) leaves every write in the page cache.
    file->direct_fd_ = ::open(options.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  }
  return file;
}

BlockFile::BlockFile(asio::io_context& io, int fd, const BlockFileOptions& options,
                     bool block_device)
    : io_(io),
      fd_(fd),
      path_(options.path),
      size_bytes_(options.size_bytes),
      read_only_(options.read_only),
      block_device_(block_device) {
  KEEL_ASSERT(fd_ >= 0);
  threads_.reserve(options.threads);
  for (std::size_t i = 0; i < options.threads; ++i) threads_.emplace_back([this] { run_worker(); });
}

BlockFile::~BlockFile() { close(); }

void BlockFile::close() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
}

BlockFileStats BlockFile::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void BlockFile::check_range(std::uint64_t offset, std::uint64_t length) const {
  // Callers check ranges against the volume's size (a request past it is a client's error,
  // answered before it gets here), so one reaching this far is a bug.
  KEEL_ASSERT(offset <= size_bytes_ && length <= size_bytes_ - offset);
}

void BlockFile::submit(std::function<int()> work, Done done) {
  KEEL_ASSERT(done);
  int refused = 0;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      refused = ESHUTDOWN;
    } else if (queue_.size() >= kMaxQueuedBlockJobs) {
      refused = EAGAIN;
    } else {
      queue_.push_back(Job{std::move(work), std::move(done), asio::make_work_guard(io_)});
    }
  }
  if (refused != 0) {
    asio::post(io_, [done = std::move(done), refused] { done(refused); });
    return;
  }
  wake_.notify_one();
}

void BlockFile::run_worker() {
  // The agent runs at real-time priority so that a busy machine cannot delay the ring's token;
  // bulk copying into the page cache must not share that priority, or heavy I/O would delay it.
  sched_param ordinary{};
  (void)::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &ordinary);
  for (;;) {
    std::optional<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      job.emplace(std::move(queue_.front()));
      queue_.pop_front();
    }
    const int error = job->work();
    asio::post(io_, [done = std::move(job->done), error] { done(error); });
  }
}

void BlockFile::read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) {
  check_range(offset, length);
  KEEL_ASSERT(into != nullptr || length == 0);
  submit(
      [this, offset, length, into] {
        return read_sync(offset, {into, length});
      },
      std::move(done));
}

bool BlockFile::can_go_direct(std::uint64_t offset, std::size_t length,
                              const std::byte* memory) const {
  return direct_fd_ >= 0 && !direct_refused_.load() && length >= kMinDirectWriteBytes &&
         offset % kDirectAlignBytes == 0 && length % kDirectAlignBytes == 0 &&
         reinterpret_cast<std::uintptr_t>(memory) % kDirectAlignBytes == 0;
}

void BlockFile::read_uncached(std::uint64_t offset, std::uint32_t length, std::byte* into,
                              Done done) {
  check_range(offset, length);
  if (!can_go_direct(offset, length, into)) return read(offset, length, into, std::move(done));
  submit(
      [this, offset, length, into] {
        return read_direct_sync(offset, {into, length});
      },
      std::move(done));
}

void BlockFile::write(std::uint64_t offset, volume::Payload data, bool fua, Done done) {
  KEEL_ASSERT(data != nullptr);
  check_range(offset, data->size());
  submit(
      [this, offset, data = std::move(data), fua] {
        const int error = write_sync(offset, *data);
        return error != 0 || !fua ? error : flush_sync();
      },
      std::move(done));
}

void BlockFile::write_uncached(std::uint64_t offset, volume::Payload data, bool fua, Done done) {
  KEEL_ASSERT(data != nullptr);
  check_range(offset, data->size());
  if (!can_go_direct(offset, data->size(), data->data())) {
    return write(offset, std::move(data), fua, std::move(done));
  }
  submit(
      [this, offset, data = std::move(data), fua] {
        const int error = write_direct_sync(offset, *data);
        return error != 0 || !fua ? error : flush_sync();
      },
      std::move(done));
}

void BlockFile::write_zeroes(std::uint64_t offset, std::uint64_t length, bool may_unmap, bool fua,
                             Done done) {
  check_range(offset, length);
  submit(
      [this, offset, length, may_unmap, fua] {
        const int error = write_zeroes_sync(offset, length, may_unmap);
        return error != 0 || !fua ? error : flush_sync();
      },
      std::move(done));
}

void BlockFile::flush(Done done) {
  submit([this] { return flush_sync(); }, std::move(done));
}

namespace {

// cachestat(2), Linux 6.5; the C library has no wrapper yet. Since Linux 5.1 every architecture
// numbers new system calls alike.
constexpr long kCachestatSyscall = 451;
struct CachestatRange {
  std::uint64_t offset;
  std::uint64_t length;
};
struct Cachestat {
  std::uint64_t cached_pages;
  std::uint64_t dirty_pages;
  std::uint64_t writeback_pages;
  std::uint64_t evicted_pages;
  std::uint64_t recently_evicted_pages;
};

}  // namespace

bool BlockFile::range_cached(std::uint64_t offset, std::uint64_t length) const {
  if (fd_ < 0 || length == 0) return true;
  static const std::uint64_t page_bytes = [] {
    const long page = ::sysconf(_SC_PAGESIZE);
    return static_cast<std::uint64_t>(page > 0 ? page : 4096);
  }();
  const std::uint64_t first = offset / page_bytes;
  const std::uint64_t end = (offset + length + page_bytes - 1) / page_bytes;
  CachestatRange range{first * page_bytes, (end - first) * page_bytes};
  Cachestat stat{};
  if (::syscall(kCachestatSyscall, fd_, &range, &stat, 0) != 0) return true;
  return stat.cached_pages >= end - first;
}

int BlockFile::read_cached(std::uint64_t offset, std::span<std::byte> into) {
  check_range(offset, into.size());
  iovec vector{into.data(), into.size()};
  ssize_t got = 0;
  do {
    got = ::preadv2(fd_, &vector, 1, static_cast<off_t>(offset), RWF_NOWAIT);
  } while (got < 0 && errno == EINTR);
  // A short read stops where the cache does; the worker reads the whole range again.
  if ((got < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) ||
      (got >= 0 && static_cast<std::size_t>(got) < into.size())) {
    return EAGAIN;
  }
  const int error = got < 0 ? errno : 0;
  std::lock_guard lock(mutex_);
  ++stats_.reads;
  ++stats_.cached_reads;
  if (error != 0) ++stats_.errors;
  return error;
}

// Each *_sync helper counts itself; an error is counted once, where it is returned.
int BlockFile::read_sync(std::uint64_t offset, std::span<std::byte> into) {
  check_range(offset, into.size());
  std::size_t done = 0;
  int error = 0;
  while (done < into.size()) {
    const ssize_t got =
        ::pread(fd_, into.data() + done, into.size() - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      error = got < 0 ? errno : EIO;  // 0: the file shrank under us
      break;
    }
    done += static_cast<std::size_t>(got);
  }
  std::lock_guard lock(mutex_);
  ++stats_.reads;
  if (error != 0) ++stats_.errors;
  return error;
}

int BlockFile::write_sync(std::uint64_t offset, std::span<const std::byte> data) {
  check_range(offset, data.size());
  std::size_t done = 0;
  int error = 0;
  while (done < data.size()) {
    const ssize_t put =
        ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      error = put < 0 ? errno : EIO;
      break;
    }
    done += static_cast<std::size_t>(put);
  }
  std::lock_guard lock(mutex_);
  ++stats_.writes;
  if (error != 0) ++stats_.errors;
  return error;
}

namespace {

struct DirectTransfer {
  std::size_t done = 0;  // bytes moved
  int error = 0;
};

// Moves `size` bytes past the page cache, `step(done)` being one pread or pwrite of the rest
// from `done` on. Stops early with no error when the device refuses the alignment (EINVAL), which
// turns direct I/O off for good (`refused`): the caller moves the rest through the cache.
template <class Step>
DirectTransfer transfer_direct(std::size_t size, std::atomic<bool>& refused, Step step) {
  DirectTransfer transfer;
  while (transfer.done < size && !refused.load()) {
    const ssize_t moved = step(transfer.done);
    if (moved < 0 && errno == EINTR) continue;
    if (moved < 0 && errno == EINVAL) {
      refused.store(true);
      break;
    }
    if (moved <= 0 || static_cast<std::size_t>(moved) % kDirectAlignBytes != 0) {
      transfer.error = moved < 0 ? errno : EIO;  // 0: the file shrank under us
      break;
    }
    transfer.done += static_cast<std::size_t>(moved);
  }
  return transfer;
}

}  // namespace

// Writes the payload from its own memory, which volume::Bytes puts on a page boundary for every
// buffer of kMinDirectWriteBytes and more: no copy on the way to the disk.
int BlockFile::write_direct_sync(std::uint64_t offset, std::span<const std::byte> data) {
  KEEL_ASSERT(offset % kDirectAlignBytes == 0 && data.size() % kDirectAlignBytes == 0);
  KEEL_ASSERT(reinterpret_cast<std::uintptr_t>(data.data()) % kDirectAlignBytes == 0);
  const DirectTransfer put = transfer_direct(data.size(), direct_refused_, [&](std::size_t done) {
    return ::pwrite(direct_fd_, data.data() + done, data.size() - done,
                    static_cast<off_t>(offset + done));
  });
  // Refused: the rest through the page cache. write_sync counts the write.
  if (put.error == 0 && put.done < data.size())
    return write_sync(offset + put.done, data.subspan(put.done));
  std::lock_guard lock(mutex_);
  ++stats_.writes;
  ++stats_.direct_writes;
  if (put.error != 0) ++stats_.errors;
  return put.error;
}

// Into the caller's page-aligned memory, past the page cache; O_DIRECT writes back any dirty
// cached page of the range first, so this reads what a cached read would.
int BlockFile::read_direct_sync(std::uint64_t offset, std::span<std::byte> into) {
  KEEL_ASSERT(offset % kDirectAlignBytes == 0 && into.size() % kDirectAlignBytes == 0);
  const DirectTransfer got = transfer_direct(into.size(), direct_refused_, [&](std::size_t done) {
    return ::pread(direct_fd_, into.data() + done, into.size() - done,
                   static_cast<off_t>(offset + done));
  });
  // Refused: the rest through the page cache. read_sync counts the read.
  if (got.error == 0 && got.done < into.size())
    return read_sync(offset + got.done, into.subspan(got.done));
  std::lock_guard lock(mutex_);
  ++stats_.reads;
  if (got.error != 0) ++stats_.errors;
  return got.error;
}

int BlockFile::flush_sync() {
  int error = 0;
  while (::fdatasync(fd_) != 0) {
    if (errno == EINTR) continue;
    error = errno;
    break;
  }
  std::lock_guard lock(mutex_);
  ++stats_.flushes;
  if (error != 0) ++stats_.errors;
  return error;
}

int BlockFile::write_zeroes_sync(std::uint64_t offset, std::uint64_t length, bool may_unmap) {
  check_range(offset, length);
  const int error = length == 0 ? 0 : zero_range(offset, length, may_unmap);
  std::lock_guard lock(mutex_);
  ++stats_.zeroings;
  if (error != 0) ++stats_.errors;
  return error;
}

namespace {
// The kernel cannot zero this range itself here (filesystem or device without support).
bool unsupported(int error) {
  return error == EOPNOTSUPP || error == ENOSYS || error == ENOTTY || error == EINVAL;
}
}  // namespace

int BlockFile::zero_range(std::uint64_t offset, std::uint64_t length, bool may_unmap) {
  int error = 0;
  if (block_device_) {
    // BLKZEROOUT guarantees zeroes (BLKDISCARD does not); the device may unmap on its own.
    std::uint64_t range[2] = {offset, length};
    error = ::ioctl(fd_, BLKZEROOUT, range) == 0 ? 0 : errno;
  } else {
    const int mode =
        FALLOC_FL_KEEP_SIZE | (may_unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
    error = ::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0
                ? 0
                : errno;
  }
  if (error == 0 || !unsupported(error)) return error;
  return write_zero_chunks(offset, length);
}

int BlockFile::write_zero_chunks(std::uint64_t offset, std::uint64_t length) {
  {
    std::lock_guard lock(mutex_);
    ++stats_.zero_fallback_writes;
  }
  const std::vector<std::byte>& zeroes = zero_chunk();
  for (std::uint64_t done = 0; done < length;) {
    const std::size_t piece =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeroes.size(), length - done));
    if (const int error = write_sync(offset + done, {zeroes.data(), piece}); error != 0) {
      return error;
    }
    done += piece;
  }
  return 0;
}

}  // namespace keel::io
