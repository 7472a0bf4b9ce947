// Memory allocator settings for the agent's data path.
//
// A volume allocates a buffer for every request and every resync chunk (64 KiB to 32 MiB) and
// frees it a moment later. glibc maps buffers above its mmap threshold afresh and hands the
// heap's free top back to the kernel past its trim threshold; both start low and adapt only
// partly, so a stream of such buffers keeps faulting in new pages: a kernel entry per 4 KiB, and
// on a virtual machine often a trip through the host. Fixed thresholds keep the buffers in the
// heap and reuse their pages; at most kKeptFreeHeapBytes of free heap stays with the process.
//
// Thread-safety: call once at start, before other threads allocate.
#pragma once

#include <cstddef>

namespace keel::io {

// The largest NBD request keel takes (volume::kMaxDataBytes), and the free heap kept.
constexpr std::size_t kHeapMmapThresholdBytes = 32u << 20;
constexpr std::size_t kKeptFreeHeapBytes = 32u << 20;

// False if the allocator refused a setting (buffers are then mapped afresh, as by default).
bool keep_buffers_in_the_heap();

}  // namespace keel::io
