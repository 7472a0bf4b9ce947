#include "core/volume/dirty_bitmap.hpp"

#include <algorithm>
#include <bit>

#include "core/common/assert.hpp"

namespace keel::volume {
namespace {

constexpr std::uint64_t kWordsPerPage = kBitmapPageBytes / 8;

// Bits [from, to) of a 64-bit word, 0 <= from < to <= 64.
std::uint64_t bit_mask(std::uint64_t from, std::uint64_t to) {
  const std::uint64_t high = to == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << to) - 1;
  return high & ~((std::uint64_t{1} << from) - 1);
}

}  // namespace

DirtyBitmap::DirtyBitmap(std::uint64_t size_bytes)
    : blocks_((size_bytes + kBlockBytes - 1) / kBlockBytes) {}

std::uint64_t DirtyBitmap::page_count() const {
  return (blocks_ + kBitsPerPage - 1) / kBitsPerPage;
}

bool DirtyBitmap::test(std::uint64_t block) const {
  KEEL_ASSERT(block < blocks_);
  const auto it = pages_.find(block / kBitsPerPage);
  if (it == pages_.end()) return false;
  const std::uint64_t bit = block % kBitsPerPage;
  return ((*it->second)[bit / 64] >> (bit % 64)) & 1u;
}

// Sets (or clears) blocks [first, last) which all lie in one page.
void DirtyBitmap::change_in_page(std::uint64_t first, std::uint64_t last, bool set) {
  const std::uint64_t page_index = first / kBitsPerPage;
  KEEL_ASSERT(first < last && (last - 1) / kBitsPerPage == page_index && last <= blocks_);
  auto it = pages_.find(page_index);
  if (it == pages_.end()) {
    if (!set) return;
    it = pages_.emplace(page_index, std::make_unique<Page>()).first;
    it->second->fill(0);
  }
  Page& page = *it->second;
  const std::uint64_t from = first % kBitsPerPage;
  const std::uint64_t to = from + (last - first);
  bool changed = false;
  for (std::uint64_t word = from / 64; word * 64 < to; ++word) {
    const std::uint64_t lo = std::max(from, word * 64) - word * 64;
    const std::uint64_t hi = std::min(to, word * 64 + 64) - word * 64;
    const std::uint64_t mask = bit_mask(lo, hi);
    const std::uint64_t before = page[word];
    const std::uint64_t after = set ? (before | mask) : (before & ~mask);
    if (after == before) continue;
    changed = true;
    page[word] = after;
    if (set) {
      set_count_ += static_cast<std::uint64_t>(std::popcount(after & ~before));
    } else {
      set_count_ -= static_cast<std::uint64_t>(std::popcount(before & ~after));
    }
  }
  if (changed) changed_pages_.insert(page_index);
  if (!set && std::all_of(page.begin(), page.end(), [](std::uint64_t w) { return w == 0; })) {
    pages_.erase(it);
  }
}

void DirtyBitmap::change_range(std::uint64_t offset, std::uint64_t length, bool set) {
  if (length == 0) return;
  KEEL_ASSERT(offset < blocks_ * kBlockBytes && length <= blocks_ * kBlockBytes - offset);
  std::uint64_t first = offset / kBlockBytes;
  const std::uint64_t last = (offset + length - 1) / kBlockBytes + 1;
  while (first < last) {
    const std::uint64_t page_end = (first / kBitsPerPage + 1) * kBitsPerPage;
    const std::uint64_t end = std::min(last, page_end);
    change_in_page(first, end, set);
    first = end;
  }
}

void DirtyBitmap::set_range(std::uint64_t offset, std::uint64_t length) {
  change_range(offset, length, true);
}

void DirtyBitmap::clear_range(std::uint64_t offset, std::uint64_t length) {
  change_range(offset, length, false);
}

void DirtyBitmap::set_all() {
  if (blocks_ > 0) change_range(0, blocks_ * kBlockBytes, true);
}

void DirtyBitmap::clear_all() {
  for (const auto& [index, page] : pages_) changed_pages_.insert(index);
  pages_.clear();
  set_count_ = 0;
}

void DirtyBitmap::merge(const DirtyBitmap& other) {
  KEEL_ASSERT(other.blocks_ == blocks_);
  for (const auto& [index, page] : other.pages_) {
    for (std::uint64_t word = 0; word < kWordsPerPage; ++word) {
      if ((*page)[word] != 0) or_word(index * kWordsPerPage + word, (*page)[word]);
    }
  }
}

std::uint64_t DirtyBitmap::next_set(std::uint64_t block) const {
  if (block >= blocks_) return blocks_;
  for (auto it = pages_.lower_bound(block / kBitsPerPage); it != pages_.end(); ++it) {
    const std::uint64_t base = it->first * kBitsPerPage;
    const std::uint64_t from = block > base ? block - base : 0;
    for (std::uint64_t word = from / 64; word < kWordsPerPage; ++word) {
      std::uint64_t bits = (*it->second)[word];
      if (word == from / 64) bits &= bit_mask(from % 64, 64);
      if (bits != 0) {
        return base + word * 64 + static_cast<std::uint64_t>(std::countr_zero(bits));
      }
    }
  }
  return blocks_;
}

std::vector<std::uint64_t> DirtyBitmap::take_changed_pages() {
  std::vector<std::uint64_t> out(changed_pages_.begin(), changed_pages_.end());
  changed_pages_.clear();
  return out;
}

void DirtyBitmap::page_bytes(std::uint64_t page, std::span<std::byte, kBitmapPageBytes> out) const {
  KEEL_ASSERT(page < page_count());
  const auto it = pages_.find(page);
  for (std::uint64_t word = 0; word < kWordsPerPage; ++word) {
    const std::uint64_t value = it == pages_.end() ? 0 : (*it->second)[word];
    for (std::size_t b = 0; b < 8;
         ++b) {  // little-endian: bit i of the page is bit i%8 of byte i/8
      out[word * 8 + b] = static_cast<std::byte>((value >> (8 * b)) & 0xffu);
    }
  }
}

void DirtyBitmap::load_page(std::uint64_t page,
                            std::span<const std::byte, kBitmapPageBytes> bytes) {
  KEEL_ASSERT(page < page_count());
  if (auto it = pages_.find(page); it != pages_.end()) {
    for (std::uint64_t w : *it->second) set_count_ -= static_cast<std::uint64_t>(std::popcount(w));
    pages_.erase(it);
  }
  for (std::uint64_t word = 0; word < kWordsPerPage; ++word) {
    std::uint64_t value = 0;
    for (std::size_t b = 0; b < 8; ++b) {
      value |= static_cast<std::uint64_t>(bytes[word * 8 + b]) << (8 * b);
    }
    if (value != 0) or_word(page * kWordsPerPage + word, value);
  }
  changed_pages_.erase(page);  // what was loaded is what is on disk
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> DirtyBitmap::nonzero_words() const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (const auto& [index, page] : pages_) {
    for (std::uint64_t word = 0; word < kWordsPerPage; ++word) {
      if ((*page)[word] != 0) out.emplace_back(index * kWordsPerPage + word, (*page)[word]);
    }
  }
  return out;
}

void DirtyBitmap::or_word(std::uint64_t index, std::uint64_t word) {
  const std::uint64_t first_block = index * 64;
  KEEL_ASSERT(first_block < blocks_);
  if (blocks_ - first_block < 64) word &= bit_mask(0, blocks_ - first_block);  // no bits past end
  if (word == 0) return;
  const std::uint64_t page_index = index / kWordsPerPage;
  auto it = pages_.find(page_index);
  if (it == pages_.end()) {
    it = pages_.emplace(page_index, std::make_unique<Page>()).first;
    it->second->fill(0);
  }
  std::uint64_t& slot = (*it->second)[index % kWordsPerPage];
  const std::uint64_t added = word & ~slot;
  if (added == 0) return;
  slot |= added;
  set_count_ += static_cast<std::uint64_t>(std::popcount(added));
  changed_pages_.insert(page_index);
}

}  // namespace keel::volume
