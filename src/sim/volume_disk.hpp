// SimDisk: one node's simulated copy of a volume with a volatile write cache, for the volume
// simulator (volume_world.hpp).
//
// Content is kept per 4 KiB block as a 64-bit tag: the block's bytes are the tag repeated (tag 0
// is a zero block), so the workload can name every value a block ever held and the checkers can
// compare copies cheaply. Writes must be whole blocks (the workload and resync only make those).
//
// Model: a write or zeroing "completes" into the cache (view() sees it at once); a flush makes
// durable every write that had completed when the flush was issued; a FUA write is durable when it
// completes. A process crash keeps the cache (the page cache survives). A power loss keeps the
// durable content and, per block, possibly one of the values written to it since (the device may
// have written any cached version back, in any order across blocks): disk reordering until flush.
// A failed flush may have written back any of the cached blocks it covered, and drops the rest as
// Linux drops pages whose writeback failed: they stay readable (view()) but are no longer dirty,
// so no later flush writes them and a power loss takes them (a later flush succeeding says
// nothing about them).
//
// Invariants: view() of a block is its newest completed value; durable() is what survives a power
// loss for sure; cached_ holds only values newer than durable_.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "core/volume/types.hpp"
#include "sim/random.hpp"

namespace keel::sim {

using BlockTag = std::uint64_t;

// The bytes of whole blocks holding `tags`, and back (nullopt: a block is not one tag repeated,
// i.e. torn or corrupted data).
volume::Payload payload_of_tags(const std::vector<BlockTag>& tags);
bool tags_of_payload(const volume::Bytes& bytes, std::vector<BlockTag>& tags);

class SimDisk {
 public:
  explicit SimDisk(std::uint64_t blocks) : view_(blocks, 0), durable_(blocks, 0) {}

  std::uint64_t blocks() const { return view_.size(); }
  const std::vector<BlockTag>& view() const { return view_; }
  const std::vector<BlockTag>& durable() const { return durable_; }

  // A write (or zeroing: tags all 0) of consecutive blocks completes into the cache.
  void complete_write(std::uint64_t first_block, const std::vector<BlockTag>& tags, bool fua);
  // The number of completed writes so far: a flush issued now covers those.
  std::uint64_t completed() const { return completed_; }
  // A flush issued when completed() was `cut` completes.
  void complete_flush(std::uint64_t cut);
  // A flush issued when completed() was `cut` failed: returns how many blocks lost their cached
  // values for good (readable until a power loss, never durable).
  std::uint64_t fail_flush(std::uint64_t cut, Rng& rng);

  // A power loss: returns how many cached block values were lost (not the one kept).
  std::uint64_t power_loss(Rng& rng);
  std::uint64_t cached_blocks() const { return cached_.size(); }

 private:
  struct Cached {
    std::uint64_t number = 0;  // completion order
    BlockTag tag = 0;
  };
  std::vector<BlockTag> view_;
  std::vector<BlockTag> durable_;
  std::map<std::uint64_t, std::vector<Cached>> cached_;  // by block, oldest first
  std::uint64_t completed_ = 0;
};

}  // namespace keel::sim
