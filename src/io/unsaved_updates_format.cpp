#include "io/unsaved_updates_format.hpp"

#include <algorithm>
#include <cstring>

#include "core/common/byte_io.hpp"
#include "io/volume_metadata_format.hpp"

namespace keel::io {

namespace {

constexpr char kJournalMagic[8] = {'K', 'E', 'E', 'L', 'U', 'N', 'S', 'V'};
constexpr std::uint32_t kJournalVersion = 1;

std::span<const std::uint8_t> journal_page_bytes(const volume::BitmapPageBytes& page) {
  return {reinterpret_cast<const std::uint8_t*>(page.data()), page.size()};
}

}  // namespace

Bytes encode_unsaved_updates(const MetadataHeader& header,
                             const std::vector<volume::UnsavedUpdate>& updates) {
  Bytes out;
  ByteWriter writer(out);
  writer.bytes({reinterpret_cast<const std::uint8_t*>(kJournalMagic), sizeof kJournalMagic});
  writer.u32(kJournalVersion);
  writer.u32(static_cast<std::uint32_t>(updates.size()));
  for (const volume::UnsavedUpdate& update : updates) {
    MetadataSlot slot;
    slot.header = header;
    slot.state = update.state;
    slot.activity_extents = update.activity_extents;
    const std::vector<std::uint8_t> encoded = encode_slot(slot);
    writer.u32(static_cast<std::uint32_t>(encoded.size()));
    writer.bytes(encoded);
    writer.u32(static_cast<std::uint32_t>(update.pages.size()));
    for (const auto& [page, bytes] : update.pages) {
      writer.u64(page);
      writer.bytes(journal_page_bytes(bytes));
    }
  }
  writer.u32(crc32c(std::span<const std::uint8_t>(out)));
  return out;
}

Result<std::vector<volume::UnsavedUpdate>> decode_unsaved_updates(
    const MetadataHeader& header, std::span<const std::uint8_t> bytes) {
  if (bytes.size() < sizeof kJournalMagic + 12) return Error{"too short"};
  ByteReader tail(bytes.last(4));
  const auto covered = bytes.first(bytes.size() - 4);
  if (crc32c(covered) != tail.u32()) return Error{"bad checksum (torn or damaged)"};
  ByteReader reader(covered);
  const auto magic = reader.bytes(sizeof kJournalMagic);
  if (!std::equal(magic.begin(), magic.end(), kJournalMagic)) return Error{"not a keel journal"};
  if (const std::uint32_t version = reader.u32(); version != kJournalVersion) {
    return Error{"format version " + std::to_string(version)};
  }
  const MetadataLayout layout = layout_for(header);
  const std::uint32_t count = reader.u32();
  // Each update takes at least its two counts: a damaged count cannot ask for more than that.
  if (count > reader.remaining() / 8) return Error{"malformed"};
  std::vector<volume::UnsavedUpdate> updates(count);
  for (volume::UnsavedUpdate& update : updates) {
    const auto slot_bytes = reader.bytes(reader.u32());
    if (!reader.ok()) break;
    auto slot = decode_slot(slot_bytes);
    if (!slot) return Error{"an update: " + slot.error().message};
    if (!(slot.value().header == header)) return Error{"the journal of another volume or node"};
    // Exactly as written (sequence 0, nothing after the slot), so that it reads one way only.
    const std::vector<std::uint8_t> canonical = encode_slot(slot.value());
    if (slot.value().sequence != 0 ||
        !std::equal(canonical.begin(), canonical.end(), slot_bytes.begin(), slot_bytes.end())) {
      return Error{"an update is not in its canonical form"};
    }
    update.state = slot.value().state;
    update.activity_extents = slot.value().activity_extents;
    const std::uint32_t pages = reader.u32();
    for (std::uint32_t i = 0; i < pages && reader.ok(); ++i) {
      const std::uint64_t page = reader.u64();
      const auto data = reader.bytes(volume::kBitmapPageBytes);
      if (!reader.ok()) break;
      if (page >= layout.bitmap_pages) return Error{"a bitmap page past the volume's end"};
      volume::BitmapPageBytes copy;
      std::memcpy(copy.data(), data.data(), copy.size());
      if (!bitmap_page_zero_from(copy, layout.blocks_in_page(page))) {
        return Error{"bits past the volume's end"};
      }
      update.pages.emplace_back(page, copy);
    }
  }
  if (!reader.at_end()) return Error{"malformed"};
  return updates;
}

}  // namespace keel::io
