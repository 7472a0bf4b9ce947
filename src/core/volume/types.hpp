// Value types shared by the volume core (replication of one mirrored block device between two
// nodes), its persistent metadata, the agent's volume service and the CLI.
//
// A volume is a byte array of `size_bytes`, a whole number of 4 KiB blocks. Two nodes keep a
// copy each; at most one is Primary (serves I/O over NBD). Generations (DRBD's "UUIDs") name a
// state of the data: when the data stops being identical on both copies the side that writes
// starts a new current generation and remembers the old one as its bitmap generation, so that at
// the next connection both sides can tell who has newer data and whether the dirty bitmap alone
// is enough to resync (see generations.hpp).
//
// Thread-safety: plain values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <string_view>
#include <vector>

#include "core/common/types.hpp"

namespace keel::volume {

constexpr std::uint32_t kBlockBytes = 4096;       // the unit of the dirty bitmap and of resync
constexpr std::uint64_t kExtentBytes = 4u << 20;  // the unit of the activity log (4 MiB)

// How many extents a range of `length` > 0 bytes at `offset` touches.
constexpr std::uint64_t extents_spanned(std::uint64_t offset, std::uint64_t length) {
  return (offset + length - 1) / kExtentBytes - offset / kExtentBytes + 1;
}
constexpr std::size_t kHistoryGenerations = 2;

enum class Role : std::uint8_t { Secondary = 0, Primary = 1 };

// The state of this node's copy.
enum class DiskState : std::uint8_t {
  Inconsistent = 0,  // being resynced, never synced, or unknown content: never promotable
  Outdated = 1,      // consistent but known to miss writes the peer has: promotable only forced
  UpToDate = 2,      // has every acknowledged write
};

// The replication link as the core sees it.
enum class LinkState : std::uint8_t {
  StandAlone = 0,  // not connected (peer down, or connection refused)
  Connecting = 1,  // transport up, handshake (Hello exchange) in progress
  Connected = 2,   // replicating, copies in sync
  SyncSource = 3,  // replicating, and copying what the peer lacks to it
  SyncTarget = 4,  // replicating, and receiving what this copy lacks
  SplitBrain = 5,  // both sides wrote as primary apart: refused until resolved by a person
  Unrelated = 6,   // the two copies share no history: refused (wrong peer or wrong disk)
};

enum class Mode : std::uint8_t {
  Sync = 0,   // a write is acknowledged when both copies have it (the default)
  Async = 1,  // a write is acknowledged after the local write; the peer follows
};

std::string_view to_string(Role role);
std::string_view to_string(DiskState state);
std::string_view to_string(LinkState state);
std::string_view to_string(Mode mode);

// A 64-bit random identifier of a data state; 0 means "none". The core never draws random
// numbers: the caller hands fresh ones in (next_generation in the events).
using Generation = std::uint64_t;

struct Generations {
  Generation current = 0;
  Generation bitmap = 0;  // the current generation when the bitmap started tracking; 0: none
  std::array<Generation, kHistoryGenerations> history{};  // older bitmap generations, newest first

  bool operator==(const Generations&) const = default;
};

// An allocator that puts every block of kPageAlignedFromBytes or more on a 4 KiB boundary, so
// that a data buffer can go to the disk past the page cache (O_DIRECT wants the memory aligned
// too) without being copied into an aligned one first. Smaller blocks come from operator new.
constexpr std::size_t kPageAlignBytes = 4096;
constexpr std::size_t kPageAlignedFromBytes = 64 * 1024;

// The aligned block sits inside an ordinary heap block one page larger, whose address is kept
// just below it. An aligned operator new would instead split a small free piece off before each
// block; those pieces keep the freed blocks around them from merging and from going back to the
// system, and a stream of large requests then left the agent's heap at seven times its size.
void* allocate_page_aligned(std::size_t bytes);
void free_page_aligned(void* block) noexcept;

template <class T>
struct PageAlignedAllocator {
  using value_type = T;
  PageAlignedAllocator() = default;
  template <class U>
  PageAlignedAllocator(const PageAlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t count) {
    if (count > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    const std::size_t bytes = count * sizeof(T);
    if (bytes < kPageAlignedFromBytes) return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(allocate_page_aligned(bytes));
  }
  // The unsized form: clang declares the sized one only with -fsized-deallocation.
  void deallocate(T* at, std::size_t count) noexcept {
    if (count * sizeof(T) < kPageAlignedFromBytes) return ::operator delete(at);
    free_page_aligned(at);
  }
  template <class U>
  bool operator==(const PageAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

// Bytes shared between the disk write and the network send of the same request, so that the hot
// path never copies data after it was read from the client's socket.
using Bytes = std::vector<std::byte, PageAlignedAllocator<std::byte>>;
using Payload = std::shared_ptr<const Bytes>;

// What the volume service persists besides the bitmap and the activity log (see
// io/volume_metadata.hpp for the file format).
struct PersistentState {
  Generations generations;
  DiskState disk = DiskState::Inconsistent;
  // Set while this node is primary, cleared on a clean demote: after a crash it says that the
  // activity log's extents may hold writes the peer never saw.
  bool primary_at_crash = false;
  // Set by `keel volume resolve --discard-local` until the next resync from the peer completes.
  bool discard_local = false;
  // This node recorded (through the ring) that the peer's copy is outdated.
  bool peer_outdated = false;
  // This secondary was in sync with its primary when the link broke, and then flushed its copy:
  // it holds every write that primary acknowledged, durably (see ConnectSide::survived_primary).
  bool survived_primary = false;
  // Sync mode: this secondary was connected and in sync with a primary during the boot with this
  // id (ReplicaConfig::boot), and recorded so before it applied any of that primary's writes; 0:
  // not. Within the same boot, even a restart of the agent that never saw the link go leaves its
  // copy holding every write that primary acknowledged (the caches survived); after another boot
  // it proves nothing.
  std::uint64_t primary_sync_boot = 0;
  // Made empty by `keel volume create` and never part of the pair's data since: not promoted, no
  // resync received, never in sync with a primary. Its generations are the well-known empty
  // state, which a pair that wrote while connected still carries, so only this says that the
  // copy holds nothing: facing a copy that is not blank it is a full sync's target, and it is
  // promoted without --force only facing a blank peer (generations.hpp rule 0).
  bool blank = false;

  bool operator==(const PersistentState&) const = default;
};

}  // namespace keel::volume
