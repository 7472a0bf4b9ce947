// keel::volume::DirtyBitmap measured in this process (keel_scenarios.hpp): a 1 TiB volume's
// bitmap holding 1 GiB dirty, as 262,144 blocks scattered at random or as one contiguous GiB.
// Memory is the heap this process holds for it (glibc's mallinfo2), speed the wall time of the
// calls the replica makes: set_range per 4 KiB write, next_set to walk the dirty blocks (what a
// resync does), clear_range per block copied.
#include <malloc.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "core/volume/dirty_bitmap.hpp"
#include "keel_scenarios.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

constexpr std::uint64_t kVolumeBytes = 1ull << 40;
constexpr std::uint64_t kDirtyBytes = 1ull << 30;
constexpr std::uint64_t kDirtyBlocks = kDirtyBytes / volume::kBlockBytes;

std::uint64_t heap_bytes() { return mallinfo2().uordblks; }

double ns_per(Clock::time_point start, std::uint64_t count) {
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  return count == 0 ? 0 : std::round(ns / static_cast<double>(count) * 10) / 10;
}

json measure(const char* layout, const std::vector<std::uint64_t>& blocks) {
  const std::uint64_t heap_before = heap_bytes();
  volume::DirtyBitmap bitmap(kVolumeBytes);
  const std::uint64_t heap_empty = heap_bytes();
  auto start = Clock::now();
  for (std::uint64_t block : blocks) {
    bitmap.set_range(block * volume::kBlockBytes, volume::kBlockBytes);
  }
  const double set_ns = ns_per(start, blocks.size());
  const std::uint64_t heap_dirty = heap_bytes();
  const std::size_t pages = bitmap.allocated_pages();
  const std::uint64_t set = bitmap.set_count();
  start = Clock::now();
  std::uint64_t walked = 0;
  for (std::uint64_t at = bitmap.next_set(0); at < bitmap.blocks(); at = bitmap.next_set(at + 1)) {
    ++walked;
  }
  const double walk_ns = ns_per(start, walked);
  start = Clock::now();
  for (std::uint64_t block : blocks) {
    bitmap.clear_range(block * volume::kBlockBytes, volume::kBlockBytes);
  }
  const double clear_ns = ns_per(start, blocks.size());
  const std::uint64_t heap_clear = heap_bytes();
  return json{
      {"test", "dirty_bitmap"},
      {"layout", layout},
      {"volume_bytes", kVolumeBytes},
      {"dirty_blocks", set},
      {"allocated_pages", pages},
      {"pages_memory_mb", static_cast<double>(pages * volume::kBitmapPageBytes) / 1e6},
      {"heap_empty_bytes", heap_empty - heap_before},
      {"heap_dirty_mb", std::round(static_cast<double>(heap_dirty - heap_before) / 1e4) / 100},
      {"heap_after_clear_bytes", heap_clear - heap_before},
      {"set_ns_per_block", set_ns},
      {"next_set_ns_per_block", walk_ns},
      {"clear_ns_per_block", clear_ns}};
}

}  // namespace

void bitmap_figures(Context& context) {
  const std::uint64_t total_blocks = kVolumeBytes / volume::kBlockBytes;
  context.report.add(
      json{{"test", "dirty_bitmap_sizing"},
           {"volume_bytes", kVolumeBytes},
           {"blocks", total_blocks},
           {"full_bitmap_mib", total_blocks / 8 / (1 << 20)},
           {"pages", total_blocks / volume::kBitsPerPage},
           {"volume_per_page_mib", volume::kBitsPerPage * volume::kBlockBytes / (1 << 20)}});
  std::vector<std::uint64_t> scattered(kDirtyBlocks);
  std::mt19937_64 random(42);
  std::uniform_int_distribution<std::uint64_t> pick(0, total_blocks - 1);
  for (auto& block : scattered) block = pick(random);
  json row = measure("scattered", scattered);
  row["note"] = "random blocks; a few repeat, so dirty_blocks is slightly under 262144";
  context.report.add(row);
  std::vector<std::uint64_t> contiguous(kDirtyBlocks);
  for (std::uint64_t i = 0; i < kDirtyBlocks; ++i) contiguous[i] = i;
  context.report.add(measure("contiguous", contiguous));
  (void)malloc_trim(0);
}

}  // namespace keel::bench
