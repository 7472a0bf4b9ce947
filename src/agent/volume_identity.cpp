#include "agent/volume_identity.hpp"

#include <fstream>
#include <string>

namespace keel::agent {

namespace {

std::uint64_t fnv1a(std::uint64_t hash, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::uint64_t digest(const config::VolumeConfig& volume, const char* purpose) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  hash = fnv1a(hash, purpose, std::char_traits<char>::length(purpose) + 1);
  hash = fnv1a(hash, volume.name.data(), volume.name.size() + 0);
  hash = fnv1a(hash, "", 1);
  for (int shift = 56; shift >= 0; shift -= 8) {
    const unsigned char byte = static_cast<unsigned char>(volume.size_bytes >> shift);
    hash = fnv1a(hash, &byte, 1);
  }
  return hash;
}

}  // namespace

std::uint64_t volume_digest(const config::VolumeConfig& volume) {
  return digest(volume, "keel volume identity");
}

volume::Generation empty_generation(const config::VolumeConfig& volume) {
  const std::uint64_t generation = digest(volume, "keel volume created empty");
  return generation == 0 ? 1 : generation;
}

std::uint64_t boot_from_id(std::string_view boot_id_text) {
  while (!boot_id_text.empty() && (boot_id_text.back() == '\n' || boot_id_text.back() == ' ')) {
    boot_id_text.remove_suffix(1);
  }
  if (boot_id_text.empty()) return 0;
  const std::uint64_t hash = fnv1a(0xcbf29ce484222325ull, boot_id_text.data(), boot_id_text.size());
  return hash == 0 ? 1 : hash;
}

std::uint64_t this_boot() {
  std::ifstream file("/proc/sys/kernel/random/boot_id");
  std::string text;
  if (!std::getline(file, text)) return 0;
  return boot_from_id(text);
}

io::MetadataHeader volume_metadata_header(const config::VolumeConfig& volume, NodeId self) {
  io::MetadataHeader header;
  header.volume_name = volume.name;
  header.size_bytes = volume.size_bytes;
  header.node = self;
  return header;
}

}  // namespace keel::agent
