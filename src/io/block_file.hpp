// BlockFile: asynchronous I/O on the file or block device that holds a volume's data.
//
// A small pool of threads (kDefaultBlockFileThreads) runs pread/pwrite/fdatasync and zeroing on
// one descriptor and posts each completion, `done(error)`, to the io_context given at open():
// completions always run on that context's thread, never inside the call that queued them. Data
// moves straight between the caller's buffer (or the write's shared Payload) and the kernel; the
// hot path copies nothing.
//
// Zeroing: on a regular file, fallocate(PUNCH_HOLE | KEEP_SIZE) when the range may be
// deallocated and fallocate(ZERO_RANGE | KEEP_SIZE) otherwise; on a block device, BLKZEROOUT.
// Where those are unsupported (some filesystems, some devices), zeroes are written. Either way
// the range reads back as zeroes afterwards.
//
// open() checks the backing store against the configured size: a regular file must have exactly
// that size; a block device must hold at least that many bytes (only the first size_bytes are
// used). A missing file is created when `create` is set, with its whole size reserved on the
// filesystem (fallocate), so that a write to the volume does not fail later because the
// filesystem filled up meanwhile. A filesystem without fallocate gets a sparse file instead
// (created() says which); one without the room refuses, saying how much is free. Zeroing with
// `may_unmap` (TRIM) gives the space of that range back to the filesystem.
//
// Writes that bypass the page cache: write_uncached() sends a large write whose offset and
// length are multiples of kDirectAlignBytes through a second descriptor opened with O_DIRECT,
// straight from the payload's page-aligned memory. It is for a copy that serves no reads (a
// secondary, a resync target): a stream of replicated data then costs this host neither the
// page-cache memory nor the writeback at the next flush (DRBD's secondary likewise writes to its
// backing device below the page cache). Durability is unchanged: a flush still calls fdatasync
// (the device's write cache, and the extents a write into a sparse file allocated). Where the
// filesystem refuses O_DIRECT the write goes through the page cache as write() does.
//
// Errors are errno values passed to `done` (and returned by the *_sync helpers); nothing throws.
// Bounds: at most kMaxQueuedBlockJobs jobs wait; one more completes at once with EAGAIN.
//
// Thread-safety: the asynchronous calls, read_cached() and close() are made from the
// io_context's thread; the *_sync helpers from that thread too while the loop runs, or from any
// one thread while no asynchronous job runs (tools use them without an io_context loop). Jobs on
// the workers and the calling thread may overlap: ordering between overlapping ranges is the
// caller's (the replication core never issues two overlapping writes at once). The destructor
// closes.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/types.hpp"

namespace keel::io {

constexpr std::size_t kDefaultBlockFileThreads = 4;
constexpr std::size_t kMaxBlockFileThreads = 64;
constexpr std::size_t kMaxQueuedBlockJobs = 4096;
// write_uncached(): the alignment O_DIRECT needs here (every Linux device's logical block size is
// at most this), of the offset, the length and the memory, and the smallest write worth bypassing
// the cache (volume::Bytes aligns the memory of buffers that large).
constexpr std::size_t kDirectAlignBytes = 4096;
constexpr std::size_t kMinDirectWriteBytes = 64 * 1024;
static_assert(kDirectAlignBytes == volume::kPageAlignBytes &&
              kMinDirectWriteBytes >= volume::kPageAlignedFromBytes);

struct BlockFileOptions {
  std::string path;
  std::uint64_t size_bytes = 0;
  bool create = false;     // create a missing regular file (mode 0600, space reserved)
  bool read_only = false;  // open O_RDONLY; writes then fail with EBADF
  std::size_t threads = kDefaultBlockFileThreads;
};

struct BlockFileStats {
  std::uint64_t reads = 0;
  std::uint64_t cached_reads = 0;  // of `reads`, served on the caller's thread (read_cached)
  std::uint64_t writes = 0;
  std::uint64_t direct_writes = 0;  // of `writes`, past the page cache (write_uncached)
  std::uint64_t flushes = 0;
  std::uint64_t zeroings = 0;
  std::uint64_t zero_fallback_writes = 0;  // zeroings done by writing zeroes
  std::uint64_t errors = 0;
};

class BlockFile {
 public:
  using Done = std::function<void(int error)>;

  static Result<std::unique_ptr<BlockFile>> open(asio::io_context& io, BlockFileOptions options);
  ~BlockFile();
  BlockFile(const BlockFile&) = delete;
  BlockFile& operator=(const BlockFile&) = delete;

  // `into` holds `length` bytes and stays valid until `done` runs.
  void read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done);
  // As read(), past the page cache when the range and `into` allow (as write_uncached()): for
  // data read once (a resync or verify pass) that the cache does not hold.
  void read_uncached(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done);
  // Writes all of `data`; with `fua`, fdatasync before `done`.
  void write(std::uint64_t offset, volume::Payload data, bool fua, Done done);
  // As write(), past the page cache when the range allows (see above); the data may then be
  // absent from the cache, so a caller that reads it soon should use write().
  void write_uncached(std::uint64_t offset, volume::Payload data, bool fua, Done done);
  // Zeroes [offset, offset + length); `may_unmap` allows deallocating (punching a hole).
  void write_zeroes(std::uint64_t offset, std::uint64_t length, bool may_unmap, bool fua,
                    Done done);
  void flush(Done done);

  // Reads on the calling thread if the kernel can do it without waiting for the disk (the page
  // cache holds every byte): 0, or EAGAIN when it would wait (nothing is counted then; use
  // read()), or another errno value.
  int read_cached(std::uint64_t offset, std::span<std::byte> into);

  // Synchronous forms for tools and tests, and for writes the caller chooses to make on its own
  // thread (into the page cache; they may wait while the kernel throttles dirty pages): 0 or an
  // errno value.
  int read_sync(std::uint64_t offset, std::span<std::byte> into);
  int read_direct_sync(std::uint64_t offset, std::span<std::byte> into);
  int write_sync(std::uint64_t offset, std::span<const std::byte> data);
  int write_zeroes_sync(std::uint64_t offset, std::uint64_t length, bool may_unmap);
  int flush_sync();

  // Runs the jobs already queued, stops the threads and closes the descriptor; later calls
  // complete with ESHUTDOWN. Idempotent.
  void close();

  std::uint64_t size_bytes() const { return size_bytes_; }
  const std::string& path() const { return path_; }
  int descriptor() const { return fd_; }  // -1 once closed; for sendfile by the NBD server
  // Whether every page of the range is in the page cache now (cachestat(2)); true where the
  // kernel cannot tell, as before it could. A sendfile of a range that is not waits for the disk
  // on the caller's thread.
  bool range_cached(std::uint64_t offset, std::uint64_t length) const;
  bool read_only() const { return read_only_; }
  bool is_block_device() const { return block_device_; }
  // Whether this open() created the file, and how (see above).
  enum class Created { no, reserved, sparse };
  Created created() const { return created_; }
  // Counters, updated by the worker threads: read them on the io_context thread for a snapshot
  // that may lag by the jobs in progress.
  BlockFileStats stats() const;

 private:
  struct Job {
    std::function<int()> work;
    Done done;
    // Keeps io_.run() from returning while a completion is still to be posted.
    asio::executor_work_guard<asio::io_context::executor_type> guard;
  };

  BlockFile(asio::io_context& io, int fd, const BlockFileOptions& options, bool block_device);
  void submit(std::function<int()> work, Done done);
  void run_worker();
  void check_range(std::uint64_t offset, std::uint64_t length) const;
  // Whether a transfer of these bytes can go past the page cache (read_uncached(),
  // write_uncached()): O_DIRECT is open and accepted, and the range and the memory are aligned.
  bool can_go_direct(std::uint64_t offset, std::size_t length, const std::byte* memory) const;
  int zero_range(std::uint64_t offset, std::uint64_t length, bool may_unmap);
  int write_zero_chunks(std::uint64_t offset, std::uint64_t length);
  int write_direct_sync(std::uint64_t offset, std::span<const std::byte> data);

  asio::io_context& io_;
  int fd_ = -1;
  int direct_fd_ = -1;                       // O_DIRECT on the same file; -1: none
  std::atomic<bool> direct_refused_{false};  // direct I/O failed with EINVAL: never again
  std::string path_;
  std::uint64_t size_bytes_ = 0;
  bool read_only_ = false;
  bool block_device_ = false;
  Created created_ = Created::no;

  mutable std::mutex mutex_;  // guards queue_, stopping_ and stats_
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  BlockFileStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace keel::io
