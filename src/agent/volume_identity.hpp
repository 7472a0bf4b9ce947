// What names a volume across its two copies: the digest both sides compare at connect (name and
// size), the metadata header this node's copy carries, and the generation two new, empty copies
// share (so they start identical without an initial sync).
//
// Thread-safety: pure functions.
#pragma once

#include "config/config.hpp"
#include "core/volume/types.hpp"
#include "io/volume_metadata.hpp"

namespace keel::agent {

std::uint64_t volume_digest(const config::VolumeConfig& volume);
volume::Generation empty_generation(const config::VolumeConfig& volume);
io::MetadataHeader volume_metadata_header(const config::VolumeConfig& volume, NodeId self);

}  // namespace keel::agent
