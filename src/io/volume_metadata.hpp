// VolumeMetadataFile: the file where a node keeps what it knows about its copy of a mirrored
// volume across restarts and crashes: which volume it is (name, size, node), the replication
// state (volume::PersistentState: generations, disk state, flags), the activity log (the 4 MiB
// extents that may have writes in flight) and the dirty bitmap (one bit per 4 KiB block that may
// differ from the peer's copy). volume_metadata_format.hpp has the byte layout.
//
// Crash safety, region by region:
//   - Header, state and activity log live in two slots, A and B, each with a sequence number and
//     a CRC-32C. write_state() writes the slot that does not hold the newest state, with the next
//     sequence, then fdatasyncs. A write torn by a crash fails its checksum, and open() falls
//     back to the other slot: the state from before the interrupted write, which the caller had
//     not been told was durable.
//   - The bitmap is a flat array of 4 KiB pages, one per 32,768 blocks (128 MiB of volume), the
//     same pages core/volume/dirty_bitmap.hpp keeps in memory, so a change writes only the pages
//     it touched. Bit i of a page is bit i % 8 of its byte i / 8.
//   - Bitmap pages carry a CRC-32C each, kept in a separate table of 4 KiB pages rather than in
//     the page, so that a file page and a memory page stay the same 32,768 bits. A page is written
//     whole and then its table page, then one fdatasync covers both. After a crash in between,
//     or a torn page, or a page damaged at rest, the page and its entry disagree: read_bitmap()
//     then reports every block of that page dirty. That is always safe, because a set bit only
//     costs a resync of its block, while a lost bit would leave a block different on the two
//     copies with nothing to say so; the price is resyncing up to 128 MiB per damaged page.
//     Without the checksums, a torn page would give each 512-byte sector its old or its new
//     bits, which is also safe as long as the replica relies on no bit before its Persist
//     completed, but a page damaged at rest would go unnoticed; the checksums keep the promise
//     "a block that may differ is marked" without relying on either.
//   - The activity log does not make the file mark anything by itself: after an unclean stop
//     (PersistentState::primary_at_crash still set) the replica adds the logged extents to the
//     bitmap it loaded (core/volume/activity_log.hpp), since writes the crashed primary made but
//     the peer never got can only lie there. Bits for those extents that a torn page lost come
//     back that way too.
//
// Files are created with mode 0600 and opened with O_CLOEXEC. create() builds the file under a
// temporary name, fsyncs it, renames it into place and fsyncs the directory, so a crash leaves
// the old file or the new one, never half of one. The file is sparse: the bitmap and its table
// take no space until a bit is set (a 1 TiB volume has a 32 MiB bitmap, allocated as it is used).
//
// Invariants: state() and activity_extents() are those of the newest valid slot on disk; the
// in-memory table holds the checksum of every page as last written. Thread-safety: none; one
// thread at a time (the agent's metadata worker), calls in the order their effects must land.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/types.hpp"
#include "io/volume_metadata_format.hpp"

namespace keel::io {

using BitmapPage = std::array<std::byte, kMetadataPageBytes>;
using BitmapPageView = std::span<const std::byte, kMetadataPageBytes>;

struct BitmapReadSummary {
  std::uint64_t nonzero_pages = 0;  // pages handed to the visitor, damaged ones included
  std::uint64_t damaged_pages = 0;  // pages whose checksum failed: reported all dirty
};

class VolumeMetadataFile {
 public:
  // Writes a new file for `header` with the initial state (Inconsistent, no generations, an
  // empty activity log and bitmap). Refuses a path that holds anything unless `force`: a keel
  // metadata file (its state would be lost) or any other non-empty file (a mistyped path).
  static Result<VolumeMetadataFile> create(const std::string& path, const MetadataHeader& header,
                                           bool force);
  // What `create` checks first: Ok when `path` is absent, empty, or (with `force`) replaceable.
  static Result<Ok> check_replaceable(const std::string& path, bool force);
  // Opens an existing file and checks that it is `expected`'s: volume name, size, node.
  static Result<VolumeMetadataFile> open(const std::string& path, const MetadataHeader& expected);

  VolumeMetadataFile(VolumeMetadataFile&& other) noexcept;
  VolumeMetadataFile& operator=(VolumeMetadataFile&& other) noexcept;
  VolumeMetadataFile(const VolumeMetadataFile&) = delete;
  VolumeMetadataFile& operator=(const VolumeMetadataFile&) = delete;
  ~VolumeMetadataFile();

  const std::string& path() const { return path_; }
  const MetadataHeader& header() const { return header_; }
  const MetadataLayout& layout() const { return layout_; }
  std::uint64_t sequence() const { return sequence_; }  // of the newest slot

  const volume::PersistentState& state() const { return state_; }
  const std::vector<std::uint64_t>& activity_extents() const { return activity_extents_; }

  // Durable (written and fdatasynced) when it returns Ok. At most kMaxActivityExtents extents,
  // each inside the volume.
  Result<Ok> write_state(const volume::PersistentState& state,
                         const std::vector<std::uint64_t>& activity_extents);

  // Writes whole bitmap pages and their checksums, durable when it returns Ok. A page's bits
  // past the end of the volume must be zero.
  Result<Ok> write_bitmap_pages(std::span<const std::pair<std::uint64_t, BitmapPage>> pages);
  Result<Ok> write_bitmap_page(std::uint64_t page, BitmapPageView bytes);

  // Calls `visit` for every bitmap page that is not all zero, in ascending order (a damaged page
  // as every block of it set), reading only the parts of the file that hold data.
  using PageVisitor = std::function<void(std::uint64_t page, BitmapPageView bytes)>;
  Result<BitmapReadSummary> read_bitmap(const PageVisitor& visit);
  // The same into anything with load_page(page, bytes), such as volume::DirtyBitmap.
  template <typename Bitmap>
  requires requires(Bitmap& bitmap, std::uint64_t page, BitmapPageView bytes) {
    bitmap.load_page(page, bytes);
  }
  Result<BitmapReadSummary> read_bitmap(Bitmap& bitmap) {
    return read_bitmap(
        [&bitmap](std::uint64_t page, BitmapPageView bytes) { bitmap.load_page(page, bytes); });
  }

 private:
  VolumeMetadataFile(int fd, std::string path, const MetadataSlot& slot, int slot_index);

  Result<Ok> read_checksum_table();
  Result<Ok> write_table_pages(const std::vector<std::uint64_t>& table_pages);

  int fd_ = -1;
  std::string path_;
  MetadataHeader header_;
  MetadataLayout layout_;
  std::uint64_t sequence_ = 0;
  int slot_index_ = 0;  // the slot holding sequence_; the next write_state() writes the other
  volume::PersistentState state_;
  std::vector<std::uint64_t> activity_extents_;
  std::vector<std::uint32_t> page_checksums_;  // by bitmap page
};

}  // namespace keel::io
