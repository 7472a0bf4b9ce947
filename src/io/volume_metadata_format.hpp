// The on-disk format of a volume's metadata file (io/volume_metadata.hpp explains why it is
// laid out so): where each region lies, the encoding of a header slot, and the checksums.
//
//   offset 0          slot A   (kSlotBytes): header, PersistentState, activity log, crc32c
//   offset kSlotBytes slot B   (kSlotBytes): the same, written alternately with A
//   offset 2*kSlotBytes        page checksum table: one u32 per bitmap page, in 4 KiB pages
//   then                       the dirty bitmap: one bit per 4 KiB block, in 4 KiB pages
//
// A slot, every integer big-endian:
//   "KEELVOLM"  u32 format version  u32 length (bytes from the magic through the crc)
//   u64 sequence  u16 name length, name  u64 size_bytes  u32 block bytes  u64 extent bytes
//   u32 node id  u64 generations: current, bitmap, history[0], history[1]  u8 disk state
//   u8 flags (1 primary_at_crash, 2 discard_local, 4 peer_outdated, 8 survived_primary,
//   16 primary_sync_boot)  [u64 primary_sync_boot, with flag 16 only]
//   u32 activity extent count, u64 each extent  u32 crc32c of everything before it
//
// A bitmap page's table entry is crc32c(page) ^ crc32c(zero page), so that an all-zero page (a
// hole in the sparse file) has the entry 0 that a fresh, sparse table holds.
//
// Thread-safety: pure functions and constants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/volume/types.hpp"

namespace keel::io {

constexpr char kMetadataMagic[8] = {'K', 'E', 'E', 'L', 'V', 'O', 'L', 'M'};
constexpr std::uint32_t kMetadataVersion = 1;
constexpr std::size_t kMetadataPageBytes = 4096;
constexpr std::uint64_t kBlocksPerBitmapPage = kMetadataPageBytes * 8;
constexpr std::size_t kMaxActivityExtents = 4096;
constexpr std::size_t kMaxVolumeNameBytes = 64;
constexpr std::size_t kSlotBytes = 64 * 1024;
// The largest slot: the fixed fields, the longest name and a full activity log.
constexpr std::size_t kMaxSlotEncodedBytes = 8 + 4 + 4 + 8 + 2 + kMaxVolumeNameBytes + 8 + 4 + 8 +
                                             4 + 4 * 8 + 1 + 1 + 8 + 4 + kMaxActivityExtents * 8 +
                                             4;
static_assert(kMaxSlotEncodedBytes <= kSlotBytes);
static_assert(kSlotBytes % kMetadataPageBytes == 0);

// What identifies a volume's metadata: open() compares it with what the configuration says.
struct MetadataHeader {
  std::string volume_name;       // 1 .. kMaxVolumeNameBytes
  std::uint64_t size_bytes = 0;  // a positive multiple of block_bytes
  std::uint32_t block_bytes = volume::kBlockBytes;
  std::uint64_t extent_bytes = volume::kExtentBytes;
  NodeId node = kNoNode;  // the node this copy belongs to

  bool operator==(const MetadataHeader&) const = default;
};

// Where the regions of a volume's file lie; all offsets and sizes are multiples of 4 KiB.
struct MetadataLayout {
  std::uint64_t blocks = 0;
  std::uint64_t bitmap_pages = 0;
  std::uint64_t extents = 0;  // activity-log extents covering the volume
  std::uint64_t table_offset = 0;
  std::uint64_t table_bytes = 0;
  std::uint64_t bitmap_offset = 0;
  std::uint64_t file_bytes = 0;

  std::uint64_t slot_offset(int slot) const {
    return static_cast<std::uint64_t>(slot) * kSlotBytes;
  }
  std::uint64_t page_offset(std::uint64_t page) const {
    return bitmap_offset + page * kMetadataPageBytes;
  }
  // How many blocks of bitmap page `page` lie inside the volume (kBlocksPerBitmapPage except in
  // the last page).
  std::uint64_t blocks_in_page(std::uint64_t page) const;
};

MetadataLayout layout_for(const MetadataHeader& header);

// One decoded slot.
struct MetadataSlot {
  std::uint64_t sequence = 0;
  MetadataHeader header;
  volume::PersistentState state;
  std::vector<std::uint64_t> activity_extents;
};

std::vector<std::uint8_t> encode_slot(const MetadataSlot& slot);
// A slot's body (the fields from the sequence through the activity log) framed as a slot: magic,
// version, length, body, checksum. encode_slot() is frame_slot() of the encoded fields.
std::vector<std::uint8_t> frame_slot(std::span<const std::uint8_t> body);
// A slot's bytes (kSlotBytes of them) decoded, or why they are not a valid slot.
Result<MetadataSlot> decode_slot(std::span<const std::uint8_t> bytes);
// Whether the bytes start with the magic (a keel metadata file, maybe damaged).
bool has_magic(std::span<const std::uint8_t> bytes);

// CRC-32C (Castagnoli), as iSCSI and ext4 use it; crc32c("123456789") is 0xe3069283.
std::uint32_t crc32c(std::span<const std::byte> bytes);
std::uint32_t crc32c(std::span<const std::uint8_t> bytes);
// Whether every bit of `page` from bit `from` on is zero (a page's bits past the volume's end
// must be).
bool bitmap_page_zero_from(std::span<const std::byte, kMetadataPageBytes> page, std::uint64_t from);
// A bitmap page's checksum table entry (0 for an all-zero page).
std::uint32_t page_checksum(std::span<const std::byte, kMetadataPageBytes> page);

}  // namespace keel::io
