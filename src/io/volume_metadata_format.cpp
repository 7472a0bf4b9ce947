#include "io/volume_metadata_format.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

#include "core/common/assert.hpp"
#include "core/common/byte_io.hpp"

namespace keel::io {
namespace {

constexpr std::uint8_t kPrimaryAtCrash = 1;
constexpr std::uint8_t kDiscardLocal = 2;
constexpr std::uint8_t kPeerOutdated = 4;
constexpr std::uint8_t kSurvivedPrimary = 8;
constexpr std::uint8_t kPrimarySyncBoot = 16;  // a u64 primary_sync_boot follows the flags
constexpr std::uint8_t kBlank = 32;
constexpr std::uint8_t kKnownFlags =
    kPrimaryAtCrash | kDiscardLocal | kPeerOutdated | kSurvivedPrimary | kPrimarySyncBoot | kBlank;
constexpr std::size_t kPrefixBytes = 8 + 4 + 4;  // magic, version, length

constexpr std::uint64_t round_up(std::uint64_t value, std::uint64_t unit) {
  return (value + unit - 1) / unit * unit;
}

std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    table[i] = crc;
  }
  return table;
}

std::uint32_t crc32c_bytes(const std::uint8_t* data, std::size_t size) {
  static const std::array<std::uint32_t, 256> kTable = make_crc_table();
  std::uint32_t crc = ~0u;
  for (std::size_t i = 0; i < size; ++i) crc = (crc >> 8) ^ kTable[(crc ^ data[i]) & 0xffu];
  return ~crc;
}

std::uint32_t zero_page_crc() {
  static const std::uint32_t kCrc = [] {
    const std::array<std::uint8_t, kMetadataPageBytes> zeros{};
    return crc32c_bytes(zeros.data(), zeros.size());
  }();
  return kCrc;
}

}  // namespace

std::uint64_t MetadataLayout::blocks_in_page(std::uint64_t page) const {
  KEEL_ASSERT(page < bitmap_pages);
  return std::min(kBlocksPerBitmapPage, blocks - page * kBlocksPerBitmapPage);
}

MetadataLayout layout_for(const MetadataHeader& header) {
  KEEL_ASSERT(header.size_bytes > 0 && header.block_bytes == volume::kBlockBytes);
  KEEL_ASSERT(header.size_bytes % header.block_bytes == 0);
  MetadataLayout layout;
  layout.blocks = header.size_bytes / header.block_bytes;
  layout.bitmap_pages = (layout.blocks + kBlocksPerBitmapPage - 1) / kBlocksPerBitmapPage;
  layout.extents = (header.size_bytes + header.extent_bytes - 1) / header.extent_bytes;
  layout.table_offset = 2 * kSlotBytes;
  layout.table_bytes = round_up(layout.bitmap_pages * 4, kMetadataPageBytes);
  layout.bitmap_offset = layout.table_offset + layout.table_bytes;
  layout.file_bytes = layout.bitmap_offset + layout.bitmap_pages * kMetadataPageBytes;
  return layout;
}

std::vector<std::uint8_t> frame_slot(std::span<const std::uint8_t> body) {
  std::vector<std::uint8_t> out;
  out.reserve(kPrefixBytes + body.size() + 4);
  ByteWriter writer(out);
  writer.bytes({reinterpret_cast<const std::uint8_t*>(kMetadataMagic), sizeof kMetadataMagic});
  writer.u32(kMetadataVersion);
  writer.u32(static_cast<std::uint32_t>(kPrefixBytes + body.size() + 4));
  writer.bytes(body);
  writer.u32(crc32c(std::span<const std::uint8_t>(out)));
  return out;
}

std::vector<std::uint8_t> encode_slot(const MetadataSlot& slot) {
  const MetadataHeader& header = slot.header;
  KEEL_ASSERT(!header.volume_name.empty() && header.volume_name.size() <= kMaxVolumeNameBytes);
  KEEL_ASSERT(slot.activity_extents.size() <= kMaxActivityExtents);
  std::vector<std::uint8_t> body;
  body.reserve(128 + slot.activity_extents.size() * 8);
  ByteWriter writer(body);
  writer.u64(slot.sequence);
  writer.u16(static_cast<std::uint16_t>(header.volume_name.size()));
  writer.bytes({reinterpret_cast<const std::uint8_t*>(header.volume_name.data()),
                header.volume_name.size()});
  writer.u64(header.size_bytes);
  writer.u32(header.block_bytes);
  writer.u64(header.extent_bytes);
  writer.u32(header.node);
  const volume::Generations& generations = slot.state.generations;
  writer.u64(generations.current);
  writer.u64(generations.bitmap);
  for (const volume::Generation old : generations.history) writer.u64(old);
  writer.u8(static_cast<std::uint8_t>(slot.state.disk));
  writer.u8(static_cast<std::uint8_t>((slot.state.primary_at_crash ? kPrimaryAtCrash : 0) |
                                      (slot.state.discard_local ? kDiscardLocal : 0) |
                                      (slot.state.peer_outdated ? kPeerOutdated : 0) |
                                      (slot.state.survived_primary ? kSurvivedPrimary : 0) |
                                      (slot.state.blank ? kBlank : 0) |
                                      (slot.state.primary_sync_boot != 0 ? kPrimarySyncBoot : 0)));
  if (slot.state.primary_sync_boot != 0) writer.u64(slot.state.primary_sync_boot);
  writer.u32(static_cast<std::uint32_t>(slot.activity_extents.size()));
  for (const std::uint64_t extent : slot.activity_extents) writer.u64(extent);
  std::vector<std::uint8_t> out = frame_slot(body);
  KEEL_ASSERT(out.size() <= kMaxSlotEncodedBytes);
  return out;
}

bool has_magic(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= sizeof kMetadataMagic &&
         std::memcmp(bytes.data(), kMetadataMagic, sizeof kMetadataMagic) == 0;
}

Result<MetadataSlot> decode_slot(std::span<const std::uint8_t> bytes) {
  if (!has_magic(bytes)) return Error{"no keel metadata magic"};
  ByteReader prefix(bytes.subspan(sizeof kMetadataMagic));
  const std::uint32_t version = prefix.u32();
  const std::uint32_t length = prefix.u32();
  if (version != kMetadataVersion) {
    return Error{"format version " + std::to_string(version) + ", but this keel reads version " +
                 std::to_string(kMetadataVersion)};
  }
  if (length < kPrefixBytes + 4 || length > kMaxSlotEncodedBytes || length > bytes.size()) {
    return Error{"impossible length " + std::to_string(length)};
  }
  const auto covered = bytes.first(length - 4);
  ByteReader tail(bytes.subspan(length - 4, 4));
  if (crc32c(covered) != tail.u32()) return Error{"bad checksum (a torn or damaged write)"};
  ByteReader reader(covered.subspan(kPrefixBytes));
  MetadataSlot slot;
  slot.sequence = reader.u64();
  const auto name = reader.bytes(reader.u16());
  slot.header.volume_name.assign(name.begin(), name.end());
  slot.header.size_bytes = reader.u64();
  slot.header.block_bytes = reader.u32();
  slot.header.extent_bytes = reader.u64();
  slot.header.node = reader.u32();
  volume::Generations& generations = slot.state.generations;
  generations.current = reader.u64();
  generations.bitmap = reader.u64();
  for (volume::Generation& old : generations.history) old = reader.u64();
  const std::uint8_t disk = reader.u8();
  const std::uint8_t flags = reader.u8();
  if ((flags & kPrimarySyncBoot) != 0) {
    slot.state.primary_sync_boot = reader.u64();
    if (slot.state.primary_sync_boot == 0) return Error{"malformed fields"};
  }
  const std::uint32_t extents = reader.u32();
  if (!reader.ok() || extents > kMaxActivityExtents) return Error{"malformed fields"};
  for (std::uint32_t i = 0; i < extents; ++i) slot.activity_extents.push_back(reader.u64());
  // The checksum matched, so a value out of range was written so: a newer or broken writer.
  if (!reader.at_end() || slot.header.volume_name.empty() ||
      slot.header.volume_name.size() > kMaxVolumeNameBytes || disk > 2 ||
      (flags & ~kKnownFlags) != 0 || slot.header.block_bytes != volume::kBlockBytes ||
      slot.header.extent_bytes != volume::kExtentBytes || slot.header.size_bytes == 0 ||
      slot.header.size_bytes % volume::kBlockBytes != 0) {
    return Error{"malformed fields"};
  }
  const std::uint64_t volume_extents = layout_for(slot.header).extents;
  if (std::any_of(slot.activity_extents.begin(), slot.activity_extents.end(),
                  [&](std::uint64_t extent) { return extent >= volume_extents; })) {
    return Error{"an activity-log extent past the end of the volume"};
  }
  slot.state.disk = static_cast<volume::DiskState>(disk);
  slot.state.primary_at_crash = (flags & kPrimaryAtCrash) != 0;
  slot.state.discard_local = (flags & kDiscardLocal) != 0;
  slot.state.peer_outdated = (flags & kPeerOutdated) != 0;
  slot.state.survived_primary = (flags & kSurvivedPrimary) != 0;
  slot.state.blank = (flags & kBlank) != 0;
  return slot;
}

std::uint32_t crc32c(std::span<const std::uint8_t> bytes) {
  return crc32c_bytes(bytes.data(), bytes.size());
}

std::uint32_t crc32c(std::span<const std::byte> bytes) {
  return crc32c_bytes(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

std::uint32_t page_checksum(std::span<const std::byte, kMetadataPageBytes> page) {
  return crc32c(std::span<const std::byte>(page)) ^ zero_page_crc();
}

bool bitmap_page_zero_from(std::span<const std::byte, kMetadataPageBytes> page,
                           std::uint64_t from) {
  const std::size_t byte = static_cast<std::size_t>(from / 8);
  if (byte >= page.size()) return true;
  const auto partial = static_cast<std::uint8_t>(page[byte]) >> (from % 8);
  return partial == 0 && std::all_of(page.begin() + static_cast<std::ptrdiff_t>(byte + 1),
                                     page.end(), [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace keel::io
