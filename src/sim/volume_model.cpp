#include "sim/volume_model.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/trace.hpp"

namespace keel::sim {

std::vector<BlockTag> VolumeModel::fresh_tags(std::uint64_t first, std::uint64_t count) {
  const std::uint64_t write = next_write_++;
  std::vector<BlockTag> tags(count);
  for (std::uint64_t i = 0; i < count; ++i) tags[i] = (write << 16) | (first + i + 1);
  return tags;
}

void VolumeModel::issue_write(std::uint64_t request, int node, std::uint64_t first,
                              std::vector<BlockTag> tags, bool fua) {
  KEEL_ASSERT(first + tags.size() <= history_.size());
  const std::size_t index = writes_.size();
  for (std::uint64_t block = first; block < first + tags.size(); ++block) {
    history_[block].push_back(index);
    ++in_flight_blocks_[block];
  }
  Write write;
  write.node = node;
  write.first = first;
  write.tags = std::move(tags);
  write.fua = fua;
  writes_.push_back(std::move(write));
  pending_[request] = index;
}

void VolumeModel::issue_flush(std::uint64_t request, TimeUs now) { flushes_[request] = now; }

bool VolumeModel::complete(std::uint64_t request, int error, TimeUs now, unsigned holders) {
  if (auto flush = flushes_.find(request); flush != flushes_.end()) {
    const TimeUs issued = flush->second;
    flushes_.erase(flush);
    if (error != 0) return true;
    for (Write& write : writes_) {  // covers every write acknowledged before it was issued
      if (write.acked && !write.flushed_at && write.acked_at <= issued) write.flushed_at = now;
    }
    return true;
  }
  auto found = pending_.find(request);
  if (found == pending_.end()) return false;
  Write& write = writes_[found->second];
  pending_.erase(found);
  write.done = true;
  for (std::uint64_t block = write.first; block < write.first + write.tags.size(); ++block) {
    if (--in_flight_blocks_[block] == 0) in_flight_blocks_.erase(block);
  }
  if (error != 0) return true;
  write.acked = true;
  write.acked_at = now;
  write.holders = holders;
  if (write.fua) write.flushed_at = now;
  ++acked_writes_;
  return true;
}

void VolumeModel::abandon(int node) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    Write& write = writes_[it->second];
    if (write.node != node) {
      ++it;
      continue;
    }
    for (std::uint64_t block = write.first; block < write.first + write.tags.size(); ++block) {
      if (--in_flight_blocks_[block] == 0) in_flight_blocks_.erase(block);
    }
    it = pending_.erase(it);  // stays in the history, never acknowledged
  }
}

bool VolumeModel::in_flight(std::uint64_t first, std::uint64_t count) const {
  auto it = in_flight_blocks_.lower_bound(first);
  return it != in_flight_blocks_.end() && it->first < first + count;
}

std::size_t VolumeModel::pending_on(int node) const {
  return static_cast<std::size_t>(std::count_if(
      pending_.begin(), pending_.end(), [&](auto& p) { return writes_[p.second].node == node; }));
}

bool VolumeModel::lost_power(const Write& write, int node) const {
  auto losses = power_losses_.find(node);
  if (losses == power_losses_.end()) return false;
  return std::any_of(losses->second.begin(), losses->second.end(), [&](TimeUs at) {
    return write.acked_at <= at && (!write.flushed_at || *write.flushed_at > at);
  });
}

bool VolumeModel::excused(const Write& write, int node) const {
  if (lost_power(write, node)) return true;
  for (TimeUs at : lone_power_losses_) {
    if (write.acked_at <= at && (!write.flushed_at || *write.flushed_at > at)) return true;
  }
  for (int holder = 0; holder < 2; ++holder) {
    if ((write.holders & (1u << holder)) != 0 && !lost_power(write, holder)) return false;
  }
  return write.holders != 0;
}

std::optional<std::string> VolumeModel::check_copy(const std::vector<BlockTag>& view,
                                                   int node) const {
  KEEL_ASSERT(view.size() == history_.size());
  for (std::uint64_t block = 0; block < view.size(); ++block) {
    const auto& history = history_[block];
    std::size_t from = 0;  // the latest acknowledged write that must be there
    bool required = false;
    for (std::size_t i = history.size(); i-- > 0;) {
      const Write& write = writes_[history[i]];
      if (write.acked && !excused(write, node)) {
        from = i;
        required = true;
        break;
      }
    }
    if (!required && view[block] == 0) continue;
    bool found = false;
    for (std::size_t i = from; i < history.size() && !found; ++i) {
      const Write& write = writes_[history[i]];
      found = write.tags[block - write.first] == view[block];
    }
    if (found) continue;
    std::string text =
        "block " + std::to_string(block) + " holds tag " + std::to_string(view[block]) + ", ";
    if (!required) return text + "which no write to it ever had";
    const Write& want = writes_[history[from]];
    return text + "the acknowledged write (tag " + std::to_string(want.tags[block - want.first]) +
           ", acked at " + format_time(want.acked_at) + (want.flushed_at ? ", flushed" : "") +
           ") or a later one was expected";
  }
  return std::nullopt;
}

}  // namespace keel::sim
