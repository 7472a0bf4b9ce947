// The format of a volume's journal of unwritten metadata updates (agent/
// volume_unsaved_metadata.hpp), every integer big-endian:
//   "KEELUNSV"  u32 version (1)  u32 update count
//   per update: u32 length, a metadata slot of that length (io/volume_metadata_format.hpp: the
//   volume's header, the state, the activity log), u32 page count, per page u64 index and 4 KiB
//   u32 crc32c of everything before it
// The slots carry the volume's header, so a journal of another volume, size or node is refused.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/volume/replica.hpp"
#include "io/volume_metadata_format.hpp"

namespace keel::io {

Bytes encode_unsaved_updates(const MetadataHeader& header,
                             const std::vector<volume::UnsavedUpdate>& updates);
// An error for anything torn, damaged, of another format or of another volume.
Result<std::vector<volume::UnsavedUpdate>> decode_unsaved_updates(
    const MetadataHeader& header, std::span<const std::uint8_t> bytes);

}  // namespace keel::io
