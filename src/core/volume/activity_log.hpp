// ActivityLog: the 4 MiB extents of the volume that may have writes in flight on the primary.
//
// Before a write to an extent outside the log is issued to the local disk, the extent enters the
// log and the log is persisted (replica.cpp waits for that). After a primary crash, every extent
// in the persisted log is marked dirty, so the resync that follows copies those and only those:
// a write the crashed primary made but the peer never got can only lie there. The log holds at
// most `capacity` extents; taking a new one evicts the least recently used extent that has no
// write in flight and no write the peer may still hold only in its volatile cache (if all are
// busy, the write waits). The second condition matters when both hosts lose power: the peer's
// cached writes to an extent that left the primary's log would be in no log and no bitmap, and
// the resync after the restart would leave the copies different while calling them in sync. A write
// that starts a new extent right after one in the log looks like a sequential stream: the extents
// ahead of it are added in the same update (prefetch), so that a stream waits for one update per
// several extents. Extra extents in the log only make the resync after a crash copy a little more.
//
// Invariants: size() <= capacity(); an extent with in-flight writes or peer-unflushed writes is
// never evicted.
// Thread-safety: none (owned by one Replica).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <vector>

namespace keel::volume {

class ActivityLog {
 public:
  explicit ActivityLog(std::size_t capacity);

  std::size_t capacity() const { return capacity_; }
  std::size_t size() const { return order_.size(); }
  bool contains(std::uint64_t extent) const;

  enum class Admit { AlreadyIn, AddedNeedsPersist, Full };
  // Count a write in flight on `extent`; add it (evicting an idle extent into `evicted`) if it
  // was not in the log. Full: every extent is busy; try again when a write completes or the
  // peer acks a barrier.
  Admit begin_write(std::uint64_t extent, std::optional<std::uint64_t>& evicted);
  void end_write(std::uint64_t extent);
  // A write to `extent` was sent to the peer, which may hold it in its cache until it acks a
  // barrier that covers it (unpin then, or when the link is lost and the bitmap takes it over).
  void pin_for_peer(std::uint64_t extent);
  void unpin_for_peer(std::uint64_t extent);
  // Adds `extent` with no write in flight, ahead of a sequential stream reaching it, so that one
  // log update covers several extents (evicting an idle one if the log is full). True when it
  // was added; false when it was already in, or every extent is busy.
  bool prefetch(std::uint64_t extent);

  std::vector<std::uint64_t> extents() const;  // the persisted form, any order
  // Extents that left the log so far (evicted, or dropped by load()): a log update that drops
  // one must be preceded by a flush of the data (replica.hpp, Persist::flush_data_first).
  std::uint64_t departures() const { return departures_; }
  void load(const std::vector<std::uint64_t>& extents);
  void clear();

 private:
  // Evicts the least recently used idle extent into `evicted` if the log is full; false when
  // every extent is busy.
  bool make_room(std::optional<std::uint64_t>& evicted);

  struct Entry {
    std::list<std::uint64_t>::iterator position;  // in order_, most recent at the front
    std::uint32_t in_flight = 0;
    std::uint32_t unflushed_on_peer = 0;
  };
  std::size_t capacity_;
  std::uint64_t departures_ = 0;
  std::list<std::uint64_t> order_;
  std::map<std::uint64_t, Entry> entries_;
};

}  // namespace keel::volume
