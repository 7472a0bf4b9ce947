#include "sim/volume_disk.hpp"

#include <cstring>

#include "core/common/assert.hpp"

namespace keel::sim {

using volume::kBlockBytes;

volume::Payload payload_of_tags(const std::vector<BlockTag>& tags) {
  auto bytes = std::make_shared<volume::Bytes>(tags.size() * kBlockBytes);
  for (std::size_t block = 0; block < tags.size(); ++block) {
    std::byte word[8];
    for (int i = 0; i < 8; ++i) word[i] = static_cast<std::byte>(tags[block] >> (8 * (7 - i)));
    std::byte* out = bytes->data() + block * kBlockBytes;
    for (std::size_t at = 0; at < kBlockBytes; at += 8) std::memcpy(out + at, word, 8);
  }
  return bytes;
}

bool tags_of_payload(const volume::Bytes& bytes, std::vector<BlockTag>& tags) {
  if (bytes.size() % kBlockBytes != 0) return false;
  tags.assign(bytes.size() / kBlockBytes, 0);
  for (std::size_t block = 0; block < tags.size(); ++block) {
    const std::byte* in = bytes.data() + block * kBlockBytes;
    BlockTag tag = 0;
    for (int i = 0; i < 8; ++i) tag = (tag << 8) | static_cast<std::uint8_t>(in[i]);
    for (std::size_t at = 8; at < kBlockBytes; at += 8) {
      if (std::memcmp(in, in + at, 8) != 0) return false;
    }
    tags[block] = tag;
  }
  return true;
}

void SimDisk::complete_write(std::uint64_t first_block, const std::vector<BlockTag>& tags,
                             bool fua) {
  KEEL_ASSERT(first_block + tags.size() <= blocks());
  const std::uint64_t number = ++completed_;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const std::uint64_t block = first_block + i;
    view_[block] = tags[i];
    if (fua) {
      durable_[block] = tags[i];
      cached_.erase(block);  // older cached versions are superseded on the medium too
    } else {
      cached_[block].push_back(Cached{number, tags[i]});
    }
  }
}

void SimDisk::complete_flush(std::uint64_t cut) {
  for (auto it = cached_.begin(); it != cached_.end();) {
    auto& versions = it->second;
    std::size_t covered = 0;
    while (covered < versions.size() && versions[covered].number <= cut) ++covered;
    if (covered > 0) durable_[it->first] = versions[covered - 1].tag;
    versions.erase(versions.begin(), versions.begin() + static_cast<std::ptrdiff_t>(covered));
    it = versions.empty() ? cached_.erase(it) : std::next(it);
  }
}

std::uint64_t SimDisk::fail_flush(std::uint64_t cut, Rng& rng) {
  std::uint64_t dropped = 0;
  for (auto it = cached_.begin(); it != cached_.end();) {
    auto& versions = it->second;
    std::size_t covered = 0;
    while (covered < versions.size() && versions[covered].number <= cut) ++covered;
    if (covered > 0) {
      if (rng.chance(0.5)) {
        durable_[it->first] = versions[covered - 1].tag;  // this block did reach the medium
      } else {
        ++dropped;
      }
      versions.erase(versions.begin(), versions.begin() + static_cast<std::ptrdiff_t>(covered));
    }
    it = versions.empty() ? cached_.erase(it) : std::next(it);
  }
  return dropped;
}

std::uint64_t SimDisk::power_loss(Rng& rng) {
  std::uint64_t lost = 0;
  for (auto& [block, versions] : cached_) {
    // Keep the newest (half the time), nothing, or an older cached version.
    const std::uint64_t choice = rng.uniform(0, 3);
    if (choice <= 1) {
      durable_[block] = versions.back().tag;
    } else if (choice == 3) {
      durable_[block] = versions[rng.uniform(0, versions.size() - 1)].tag;
    }
    if (durable_[block] != versions.back().tag) ++lost;
  }
  cached_.clear();
  view_ = durable_;
  return lost;
}

}  // namespace keel::sim
