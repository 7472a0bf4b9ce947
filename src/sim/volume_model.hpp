// VolumeModel: what the application was told about the volume, for the volume simulator's
// checkers: every write issued to the primary (blocks and the tag each block got), whether it
// was acknowledged, and when a flush (or FUA) made it durable.
//
// A copy satisfies the model when every block holds the latest acknowledged value or the value
// of a write issued after it (in flight, failed, or lost with a crashed primary: the application
// never learnt its fate); a block no acknowledged write reached may also still hold its initial
// zeroes. An acknowledged write may be missing from a copy that lost power after the write was
// issued and before it was flushed, when every node that held it when it was acknowledged lost
// power before it was flushed, when a primary without an UpToDate peer replicating lost power
// before it was flushed (a resync then spreads the loss), or when a copy that lost it so was
// promoted (adopt(): its copy is the history from then on): flushed data survives power loss,
// unflushed data only process crashes and the other node's loss, not both. A failed flush that
// dropped a giving-way primary's cache counts, for the every-holder rule only, as its power loss
// (the primary's copy is not the volume's any more, so nothing else excuses it there).
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/common/types.hpp"
#include "sim/volume_disk.hpp"

namespace keel::sim {

class VolumeModel {
 public:
  explicit VolumeModel(std::uint64_t blocks) : history_(blocks) {}

  // Tags for a new write of `count` blocks at `first` (distinct from every other write's).
  std::vector<BlockTag> fresh_tags(std::uint64_t first, std::uint64_t count);
  void issue_write(std::uint64_t request, int node, std::uint64_t first, std::vector<BlockTag> tags,
                   bool fua, TimeUs now);
  // A write the workload does not follow (a forced primary's, apart): it never completes for
  // the model, but a copy may hold it where no acknowledged write came after it (the forced
  // side's history legitimately continues when the other side acknowledged nothing apart).
  void issue_foreign_write(int node, std::uint64_t first, std::vector<BlockTag> tags);
  void issue_flush(std::uint64_t request, TimeUs now);
  // A completion; false if the request is unknown. `holders`: a bit per node (1 << node) that had
  // the write when it was acknowledged (the primary, and its peer if the write was replicated).
  bool complete(std::uint64_t request, int error, TimeUs now, unsigned holders);
  // `alone`: the node was primary without a replicating peer, so its copy was the only one
  // the volume's history would continue from.
  void power_loss(int node, TimeUs now, bool alone) {
    power_losses_[node].push_back(now);
    if (alone) lone_power_losses_.push_back(now);
  }
  // A failed flush dropped `node`'s cached writes while its peer stood in for it (it gives way):
  // they are lost for the volume if every other node that held them lost power too.
  void cache_dropped(int node, TimeUs now) { cache_drops_[node].push_back(now); }
  // The node crashed: its requests will never complete.
  void abandon(int node);

  // Blocks written by requests still in flight, for choosing (mostly) non-overlapping writes.
  bool in_flight(std::uint64_t first, std::uint64_t count) const;
  std::size_t pending() const { return pending_.size(); }
  // When the oldest write still in flight was issued (nullopt: none is).
  std::optional<TimeUs> oldest_pending_issued_at() const;
  bool is_flush(std::uint64_t request) const { return flushes_.count(request) != 0; }
  bool is_fua(std::uint64_t request) const {
    auto found = pending_.find(request);
    return found != pending_.end() && writes_[found->second].fua;
  }
  std::size_t pending_on(int node) const;
  std::uint64_t acked_writes() const { return acked_writes_; }

  // The first block of `view` (the copy on `node`) that breaks the model, described.
  std::optional<std::string> check_copy(const std::vector<BlockTag>& view, int node) const;
  // When flush `request` completes (before complete() is told): the first block of `durable`
  // (what survives a power loss on `node`'s copy) that lacks a write acknowledged before the
  // flush was issued, and not excused for that copy (as in check_copy()), described.
  std::optional<std::string> check_flushed(std::uint64_t request,
                                           const std::vector<BlockTag>& durable, int node) const;
  // `node` was promoted with `view`: the acknowledged writes its copy lacks because it lost power
  // before they were flushed are lost for the volume from now on (its copy is the history).
  void adopt(const std::vector<BlockTag>& view, int node);

 private:
  struct Write {
    int node = 0;
    std::uint64_t first = 0;
    std::vector<BlockTag> tags;
    bool fua = false;
    bool acked = false;
    bool done = false;  // completed, with or without an error
    bool lost = false;  // a promoted copy lacked it (its power loss): excused everywhere
    TimeUs issued_at = 0;
    TimeUs acked_at = 0;
    std::uint64_t ack_number = 0;  // 1 for the first acknowledged write, and so on
    unsigned holders = 0;
    std::optional<TimeUs> flushed_at;
  };
  bool lost_power(const Write& write, int node) const;
  bool lost_cache(const Write& write, int node) const;
  bool excused(const Write& write, int node) const;

  std::uint64_t next_write_ = 1;
  std::vector<Write> writes_;
  std::vector<std::vector<std::size_t>> history_;   // by block: writes in issue order
  std::map<std::uint64_t, std::size_t> pending_;    // request -> write
  std::map<std::uint64_t, std::uint64_t> flushes_;  // request -> writes acknowledged at issue
  std::map<std::uint64_t, int> in_flight_blocks_;
  std::map<int, std::vector<TimeUs>> power_losses_;
  std::vector<TimeUs> lone_power_losses_;
  std::map<int, std::vector<TimeUs>> cache_drops_;
  std::uint64_t acked_writes_ = 0;
};

}  // namespace keel::sim
