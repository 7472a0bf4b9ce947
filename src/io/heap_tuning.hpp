// Memory allocator settings for the agent's data path.
//
// A volume allocates a buffer for every request and every resync chunk (64 KiB to 32 MiB) and
// frees it a moment later. glibc maps buffers above its mmap threshold afresh and hands the
// heap's free top back to the kernel past its trim threshold; both start low and adapt only
// partly, so a stream of such buffers keeps faulting in new pages: a kernel entry per 4 KiB, and
// on a virtual machine often a trip through the host. Fixed thresholds keep the buffers in the
// heap and reuse their pages; at most kKeptFreeHeapBytes of free heap stays with the process
// while it is busy, and IdleHeapTrimmer hands it back once the process has gone quiet.
//
// Thread-safety: call keep_buffers_in_the_heap once at start, before other threads allocate.
// IdleHeapTrimmer runs on one io_context; malloc_trim itself is safe beside other threads.
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace keel::io {

// The largest NBD request keel takes (volume::kMaxDataBytes), and the free heap kept.
constexpr std::size_t kHeapMmapThresholdBytes = 32u << 20;
constexpr std::size_t kKeptFreeHeapBytes = 32u << 20;

// False if the allocator refused a setting (buffers are then mapped afresh, as by default).
bool keep_buffers_in_the_heap();

// The heap's free bytes (all arenas); hands its free pages back (malloc_trim); this process's
// resident size (0 if /proc cannot tell).
std::size_t free_heap_bytes();
void return_free_heap();
std::size_t resident_bytes();

// Every period, hands the free heap back to the kernel when the heap has not changed by more
// than kSettledBytes since the last look, holds at least kTrimFromBytes free, and, since the last
// trim, the process has grown or the free heap has by kTrimFromBytes: a volume that streams
// requests moves megabytes between two looks, and keeps its pages; one that has gone quiet
// returns them, so that the agent's memory falls back after a burst. It runs on the agent's
// thread, which carries the ring: a trim takes milliseconds, once per quiet spell.
class IdleHeapTrimmer {
 public:
  static constexpr std::size_t kTrimFromBytes = 8u << 20;
  static constexpr std::size_t kSettledBytes = 1u << 20;

  IdleHeapTrimmer(asio::io_context& io, std::chrono::milliseconds period);
  void start();
  void stop();
  std::uint64_t trims() const { return trims_; }

 private:
  void look();

  asio::steady_timer timer_;
  std::chrono::milliseconds period_;
  std::size_t last_free_ = 0;
  std::size_t last_used_ = 0;
  std::uint64_t trims_ = 0;
  std::size_t resident_after_trim_ = 0;
  std::size_t free_after_trim_ = 0;
  bool running_ = false;
};

}  // namespace keel::io
