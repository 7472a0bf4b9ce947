// DirtyBitmap: one bit per 4 KiB block of a volume, set when the block may differ between the
// two copies (written while the peer was away, in flight when the link broke, or in a hot
// activity-log extent at a crash). Resync copies exactly the set blocks.
//
// Sizing: a 1 TiB volume has 2^28 blocks, 32 MiB of bits. Memory is allocated in 4 KiB pages
// (32,768 bits = 128 MiB of volume each) on the first bit set in a page, and freed when a page's
// last bit clears, so memory follows how much is dirty, not the volume size. The page is also the
// unit of persistence: dirty_pages() lists the pages changed since the last take_dirty_pages(),
// and io/volume_metadata writes exactly those.
//
// Invariants: set_count() equals the number of set bits; no allocated page is all zero.
// Thread-safety: none (owned by one Replica).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "core/volume/types.hpp"

namespace keel::volume {

constexpr std::size_t kBitmapPageBytes = 4096;
constexpr std::uint64_t kBitsPerPage = kBitmapPageBytes * 8;

class DirtyBitmap {
 public:
  explicit DirtyBitmap(std::uint64_t size_bytes);

  std::uint64_t blocks() const { return blocks_; }
  std::uint64_t set_count() const { return set_count_; }
  std::uint64_t dirty_bytes() const { return set_count_ * kBlockBytes; }
  std::size_t allocated_pages() const { return pages_.size(); }

  bool test(std::uint64_t block) const;
  // Mark/clear every block that overlaps [offset, offset + length).
  void set_range(std::uint64_t offset, std::uint64_t length);
  void clear_range(std::uint64_t offset, std::uint64_t length);
  void set_all();
  void clear_all();
  // OR another bitmap of the same size into this one (the union of both sides at connect).
  void merge(const DirtyBitmap& other);

  // The first set block at or after `block`, or blocks() when there is none.
  std::uint64_t next_set(std::uint64_t block) const;

  // Persistence: pages changed since the last call, and their bytes (all zero for a freed page).
  std::vector<std::uint64_t> take_changed_pages();
  void page_bytes(std::uint64_t page, std::span<std::byte, kBitmapPageBytes> out) const;
  void load_page(std::uint64_t page, std::span<const std::byte, kBitmapPageBytes> bytes);
  std::uint64_t page_count() const;  // pages covering the whole volume

  // The non-zero 64-bit words, for sending to the peer: (word index, word), ascending.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> nonzero_words() const;
  void or_word(std::uint64_t index, std::uint64_t word);

 private:
  using Page = std::array<std::uint64_t, kBitmapPageBytes / 8>;
  void change_range(std::uint64_t offset, std::uint64_t length, bool set);
  void change_in_page(std::uint64_t first, std::uint64_t last, bool set);
  std::uint64_t blocks_ = 0;
  std::uint64_t set_count_ = 0;
  std::map<std::uint64_t, std::unique_ptr<Page>> pages_;
  std::set<std::uint64_t> changed_pages_;
};

}  // namespace keel::volume
