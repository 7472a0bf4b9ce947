// Fuzzes the journal of unwritten metadata updates (what a volume's agent reads at start after a
// crash while its metadata could not be written): decoding must never crash, and a journal it
// accepts must encode back to exactly the same bytes. The input is the journal without its final
// checksum, which the harness appends, so that random bytes reach the fields. The input's first
// byte also drives a second check: updates built from the input encode and decode back equal.
// An accepted journal is also applied to a bitmap, as a start does.
// Seeds: fuzz/corpus/unsaved_updates/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/common/byte_io.hpp"
#include "io/unsaved_updates_format.hpp"

namespace {

// The bytes of a bitmap page that lie inside the volume in both of its pages (72 MiB of blocks
// in the second).
constexpr std::size_t kBytesInBothPages = (72ull << 20) / 4096 / 8;

keel::io::MetadataHeader fuzz_header() {
  keel::io::MetadataHeader header;
  header.volume_name = "data";
  header.size_bytes = 200ull << 20;  // two bitmap pages, the second partly past the end
  header.node = 1;
  return header;
}

// Updates made of the input's bytes: a few states, extents and pages.
std::vector<keel::volume::UnsavedUpdate> built_from(const std::uint8_t* data, std::size_t size) {
  keel::ByteReader reader({data, size});
  std::vector<keel::volume::UnsavedUpdate> updates(reader.u8() % 4);
  for (auto& update : updates) {
    update.state.generations.current = reader.u64();
    update.state.disk = static_cast<keel::volume::DiskState>(reader.u8() % 3);
    update.state.peer_outdated = (reader.u8() & 1) != 0;
    for (std::uint8_t n = reader.u8() % 8; n > 0; --n)
      update.activity_extents.push_back(reader.u8() % 50);
    for (std::uint8_t n = reader.u8() % 3; n > 0; --n) {
      keel::volume::BitmapPageBytes page{};
      page[reader.u16() % kBytesInBothPages] = std::byte{reader.u8()};
      update.pages.emplace_back(reader.u8() % 2, page);
    }
  }
  return updates;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const keel::io::MetadataHeader header = fuzz_header();
  std::vector<std::uint8_t> journal(data, data + size);
  keel::ByteWriter writer(journal);
  writer.u32(keel::io::crc32c(std::span<const std::uint8_t>(data, size)));
  if (auto decoded = keel::io::decode_unsaved_updates(header, journal); decoded.ok()) {
    if (keel::io::encode_unsaved_updates(header, decoded.value()) != journal) std::abort();
    // What a start does with it must not trip the bitmap's checks either.
    keel::volume::PersistentState state;
    keel::volume::DirtyBitmap bitmap(header.size_bytes);
    std::vector<std::uint64_t> extents{0, 49};
    keel::volume::recover_unsaved_updates(decoded.value(), state, bitmap, extents, 8);
  }
  const auto built = built_from(data, size);
  auto round =
      keel::io::decode_unsaved_updates(header, keel::io::encode_unsaved_updates(header, built));
  if (!round.ok() || round.value().size() != built.size()) std::abort();
  for (std::size_t i = 0; i < built.size(); ++i) {
    if (!(round.value()[i].state == built[i].state) ||
        round.value()[i].activity_extents != built[i].activity_extents ||
        round.value()[i].pages != built[i].pages) {
      std::abort();
    }
  }
  return 0;
}
