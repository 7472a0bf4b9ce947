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
                              std::vector<BlockTag> tags, bool fua, TimeUs now) {
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
  write.issued_at = now;
  writes_.push_back(std::move(write));
  pending_[request] = index;
}

void VolumeModel::issue_foreign_write(int node, std::uint64_t first, std::vector<BlockTag> tags) {
  KEEL_ASSERT(first + tags.size() <= history_.size());
  for (std::uint64_t block = first; block < first + tags.size(); ++block) {
    history_[block].push_back(writes_.size());
  }
  Write write;
  write.node = node;
  write.first = first;
  write.tags = std::move(tags);
  write.done = true;
  writes_.push_back(std::move(write));
}

// The flush covers the writes acknowledged before it was issued: by order, not time (an
// acknowledgement at the same instant but after the flush's issue is not covered).
void VolumeModel::issue_flush(std::uint64_t request, TimeUs /*now*/) {
  flushes_[request] = acked_writes_;
}

bool VolumeModel::complete(std::uint64_t request, int error, TimeUs now, unsigned holders) {
  if (auto flush = flushes_.find(request); flush != flushes_.end()) {
    const std::uint64_t acked_before = flush->second;
    flushes_.erase(flush);
    if (error != 0) return true;
    for (Write& write : writes_) {  // covers every write acknowledged before it was issued
      if (write.acked && !write.flushed_at && write.ack_number <= acked_before) {
        write.flushed_at = now;
      }
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
  write.ack_number = ++acked_writes_;
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

std::optional<TimeUs> VolumeModel::oldest_pending_issued_at() const {
  std::optional<TimeUs> oldest;
  for (const auto& [request, index] : pending_) {
    const TimeUs at = writes_[index].issued_at;
    if (!oldest || at < *oldest) oldest = at;
  }
  return oldest;
}

bool VolumeModel::in_flight(std::uint64_t first, std::uint64_t count) const {
  auto it = in_flight_blocks_.lower_bound(first);
  return it != in_flight_blocks_.end() && it->first < first + count;
}

std::size_t VolumeModel::pending_on(int node) const {
  return static_cast<std::size_t>(std::count_if(
      pending_.begin(), pending_.end(), [&](auto& p) { return writes_[p.second].node == node; }));
}

namespace {
// One of `losses` came after the write was issued (its cache may have held it, even when the
// acknowledgement came after the loss) and before it was flushed.
template <typename Write>
bool lost_between(const Write& write, const std::vector<TimeUs>& losses) {
  return std::any_of(losses.begin(), losses.end(), [&](TimeUs at) {
    return write.issued_at <= at && (!write.flushed_at || *write.flushed_at > at);
  });
}
}  // namespace

bool VolumeModel::lost_power(const Write& write, int node) const {
  auto losses = power_losses_.find(node);
  return losses != power_losses_.end() && lost_between(write, losses->second);
}

bool VolumeModel::lost_cache(const Write& write, int node) const {
  auto drops = cache_drops_.find(node);
  return drops != cache_drops_.end() && lost_between(write, drops->second);
}

bool VolumeModel::excused(const Write& write, int node) const {
  if (write.lost || lost_power(write, node)) return true;
  if (lost_between(write, lone_power_losses_)) return true;
  for (int holder = 0; holder < 2; ++holder) {
    if ((write.holders & (1u << holder)) != 0 && !lost_power(write, holder) &&
        !lost_cache(write, holder)) {
      return false;
    }
  }
  return write.holders != 0;
}

std::optional<std::string> VolumeModel::check_flushed(std::uint64_t request,
                                                      const std::vector<BlockTag>& durable,
                                                      int node) const {
  const auto flush = flushes_.find(request);
  if (flush == flushes_.end()) return std::nullopt;
  const std::uint64_t acked_before = flush->second;
  KEEL_ASSERT(durable.size() == history_.size());
  for (std::uint64_t block = 0; block < durable.size(); ++block) {
    const auto& history = history_[block];
    std::size_t from = history.size();  // the latest write the flush covers
    for (std::size_t i = history.size(); i-- > 0;) {
      const Write& write = writes_[history[i]];
      if (write.acked && !excused(write, node) && write.ack_number <= acked_before) {
        from = i;
        break;
      }
    }
    if (from == history.size()) continue;
    bool found = false;  // that write, or one issued after it
    for (std::size_t i = from; i < history.size() && !found; ++i) {
      const Write& write = writes_[history[i]];
      found = write.tags[block - write.first] == durable[block];
    }
    if (found) continue;
    const Write& want = writes_[history[from]];
    return "block " + std::to_string(block) + " holds tag " + std::to_string(durable[block]) +
           " on disk, not the write (tag " + std::to_string(want.tags[block - want.first]) +
           ", acked at " + format_time(want.acked_at) + ") that the flush covers";
  }
  return std::nullopt;
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

void VolumeModel::adopt(const std::vector<BlockTag>& view, int node) {
  KEEL_ASSERT(view.size() == history_.size());
  for (std::uint64_t block = 0; block < view.size(); ++block) {
    const auto& history = history_[block];
    std::size_t held = 0;  // one past the write the copy holds (0: none of them)
    for (std::size_t i = 0; i < history.size(); ++i) {
      const Write& write = writes_[history[i]];
      if (write.tags[block - write.first] == view[block]) held = i + 1;
    }
    for (std::size_t i = held; i < history.size(); ++i) {
      Write& write = writes_[history[i]];
      if (write.acked && lost_power(write, node)) write.lost = true;
    }
  }
}

}  // namespace keel::sim
