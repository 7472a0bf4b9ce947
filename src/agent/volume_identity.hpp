// What names a volume across its two copies: the digest both sides compare at connect (name and
// size), the metadata header this node's copy carries, and the generation two new, empty copies
// share (so they start identical without an initial sync); and which boot of this host the
// agent runs in (ReplicaConfig::boot).
//
// Thread-safety: pure functions, and this_boot() reads a file of the kernel's.
#pragma once

#include "config/config.hpp"
#include "core/volume/types.hpp"
#include "io/volume_metadata.hpp"

namespace keel::agent {

std::uint64_t volume_digest(const config::VolumeConfig& volume);
volume::Generation empty_generation(const config::VolumeConfig& volume);
io::MetadataHeader volume_metadata_header(const config::VolumeConfig& volume, NodeId self);
// The kernel's boot id (`boot_id_text`, as /proc/sys/kernel/random/boot_id holds it) as a
// nonzero 64-bit value; 0 when it is empty.
std::uint64_t boot_from_id(std::string_view boot_id_text);
// This host's boot, from /proc/sys/kernel/random/boot_id; 0 (unknown) when it cannot be read.
std::uint64_t this_boot();

}  // namespace keel::agent
