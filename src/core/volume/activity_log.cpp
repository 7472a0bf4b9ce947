#include "core/volume/activity_log.hpp"

#include "core/common/assert.hpp"

namespace keel::volume {

ActivityLog::ActivityLog(std::size_t capacity) : capacity_(capacity) { KEEL_ASSERT(capacity_ > 0); }

bool ActivityLog::contains(std::uint64_t extent) const { return entries_.contains(extent); }

ActivityLog::Admit ActivityLog::begin_write(std::uint64_t extent,
                                            std::optional<std::uint64_t>& evicted) {
  evicted.reset();
  if (auto it = entries_.find(extent); it != entries_.end()) {
    order_.splice(order_.begin(), order_, it->second.position);  // most recently used
    ++it->second.in_flight;
    return Admit::AlreadyIn;
  }
  if (!make_room(evicted)) return Admit::Full;
  order_.push_front(extent);
  entries_.emplace(extent, Entry{order_.begin(), 1});
  KEEL_ASSERT(order_.size() <= capacity_ && entries_.size() == order_.size());
  return Admit::AddedNeedsPersist;
}

bool ActivityLog::prefetch(std::uint64_t extent) {
  if (entries_.contains(extent)) return false;
  std::optional<std::uint64_t> evicted;
  if (!make_room(evicted)) return false;
  order_.push_front(extent);
  entries_.emplace(extent, Entry{order_.begin(), 0});
  KEEL_ASSERT(order_.size() <= capacity_ && entries_.size() == order_.size());
  return true;
}

bool ActivityLog::make_room(std::optional<std::uint64_t>& evicted) {
  if (order_.size() < capacity_) return true;
  // The least recently used idle extent makes room.
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    const Entry& entry = entries_.at(*it);
    if (entry.in_flight == 0 && entry.unflushed_on_peer == 0) {
      const auto victim = std::prev(it.base());
      evicted = *victim;
      ++departures_;
      entries_.erase(*victim);
      order_.erase(victim);
      return true;
    }
  }
  return false;
}

void ActivityLog::end_write(std::uint64_t extent) {
  auto it = entries_.find(extent);
  KEEL_ASSERT(it != entries_.end());
  KEEL_ASSERT(it->second.in_flight > 0);
  --it->second.in_flight;
}

void ActivityLog::pin_for_peer(std::uint64_t extent) {
  auto it = entries_.find(extent);
  KEEL_ASSERT(it != entries_.end());  // a write in flight holds its extents in the log
  ++it->second.unflushed_on_peer;
}

void ActivityLog::unpin_for_peer(std::uint64_t extent) {
  auto it = entries_.find(extent);
  KEEL_ASSERT(it != entries_.end());
  KEEL_ASSERT(it->second.unflushed_on_peer > 0);
  --it->second.unflushed_on_peer;
}

std::vector<std::uint64_t> ActivityLog::extents() const {
  return std::vector<std::uint64_t>(order_.begin(), order_.end());
}

void ActivityLog::load(const std::vector<std::uint64_t>& extents) {
  clear();
  for (std::uint64_t extent : extents) {
    if (order_.size() >= capacity_) {  // a smaller capacity than when it was written
      ++departures_;
      break;
    }
    if (entries_.contains(extent)) continue;
    order_.push_back(extent);  // the persisted order is most recent first
    entries_.emplace(extent, Entry{std::prev(order_.end()), 0});
  }
}

void ActivityLog::clear() {
  for (const auto& [extent, entry] : entries_) {
    KEEL_ASSERT(entry.in_flight == 0 && entry.unflushed_on_peer == 0);
  }
  if (!order_.empty()) ++departures_;
  order_.clear();
  entries_.clear();
}

}  // namespace keel::volume
