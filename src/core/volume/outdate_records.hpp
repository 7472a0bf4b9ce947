// OutdateRecords: the cluster's memory of which volume copies are outdated, kept by every agent
// from the keel.volume group's messages.
//
// When a primary loses its peer it must not acknowledge another write until a majority of the
// cluster knows that the peer's copy is outdated; otherwise the peer could be promoted later with
// a copy that lacks acknowledged writes. So the primary broadcasts a record, and every agent that
// delivers it writes it to its state directory and then says so (a Stored message). The record
// counts once a majority of the configured nodes, not counting the outdated node, has it on disk:
// that majority meets every later majority, and an agent that restarts or loses power reads its
// records back. The outdated node does not count: it may lose power before it has marked its
// copy. Instead, the record also counts once that node says its copy is marked Outdated on its
// disk (a Durable message), which refuses promotion from then on; with the two copies' nodes alone
// in the view, that is how it counts. Either way the record must first be delivered to the
// primary in a view that holds a majority. Every member keeps every record and broadcasts what
// it knows after each regular view, so a node that was away (the outdated one, typically) learns
// of it when it rejoins a majority; the outdated node then marks its own copy Outdated on disk.
// A node counts as quorate only once every member's repeat for the current view has arrived:
// a node that has just joined a majority knows nothing of its records before that.
// Only the recorder retires its records: its new record about a copy supersedes its older ones,
// and once a resync has brought the copy up to date its Clear message withdraws them all.
//
// Thread-safety: none; pure state fed by the agent's ring thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"
#include "core/volume/types.hpp"

namespace keel::volume {

inline constexpr const char* kVolumeGroup = "keel.volume";
constexpr std::size_t kMaxRecordsPerMessage = 256;

struct OutdateRecord {
  std::string volume;
  NodeId node = kNoNode;      // whose copy is outdated
  Generation generation = 0;  // the recorder's current generation when it recorded it
  NodeId recorder = kNoNode;

  bool operator==(const OutdateRecord&) const = default;
};

class OutdateRecords {
 public:
  OutdateRecords(NodeId self, std::size_t configured_nodes);

  // After a regular view (`view` names it): the messages repeating what this node knows, to be
  // sent in it, in order: Records messages (at least one, at most kMaxRecordsPerMessage records
  // each), then the end marker naming the view. Every member sends them, even knowing nothing.
  std::vector<keel::Bytes> on_regular_view(RingId view, const std::vector<NodeId>& members);
  void on_transitional_view();
  // The view holds a majority, and every member's repeat for this view has been delivered (its
  // end marker): only then does this node know every record the majority holds (a node that has
  // just joined has heard nothing yet), so only then may its copy be promoted on what it knows.
  // An agent of an earlier release sends no end marker: with one in the view, no node is
  // quorate (upgrade every node before promoting; docs/operations.md).
  bool quorate() const { return majority_ && unheard_.empty(); }

  struct Delivered {
    std::vector<OutdateRecord> recorded_mine;  // my records, now known by a majority
    std::vector<OutdateRecord> about_me;       // records saying my copy is outdated
    std::vector<std::string> discard_mine;     // `resolve --discard-peer` on my peer: volumes
    // Records this message brought that this node now holds: once they are on its disk, it says
    // so with one stored_message() for them all (a repeat is acknowledged again).
    std::vector<OutdateRecord> to_store;
    // My records repeated through the ring: in my own repeat after a view, or brought back by
    // another agent's after I had dropped them. My replica checks that each still holds, and
    // if not withdraws or supersedes it again (a withdrawal reaches only its partition).
    std::vector<OutdateRecord> repeated_mine;
  };
  Delivered on_message(NodeId origin, std::span<const std::uint8_t> payload);

  // A record read back from this agent's state file at start: known as if delivered, and
  // repeated to the others after the next regular view. An existing one is kept.
  void restore(const OutdateRecord& record);

  // A recorder's new record (sent by record.recorder only): it supersedes that recorder's older
  // records about the same copy.
  static keel::Bytes record_message(const OutdateRecord& record);
  static keel::Bytes clear_message(const std::string& volume, NodeId node, Generation generation);
  // From `node` itself: its copy of `volume` is marked outdated on its disk, as of `generation`.
  static keel::Bytes durable_message(const std::string& volume, NodeId node, Generation generation);
  // From the node that sends it: `records` (at most kMaxRecordsPerMessage, what one message
  // brought) are in its state directory, on disk.
  static keel::Bytes stored_message(std::span<const OutdateRecord> records);
  static keel::Bytes stored_message(const OutdateRecord& record) {
    return stored_message({&record, 1});
  }
  // After a split brain: asks `node` to throw its changes to `volume` away.
  static keel::Bytes discard_message(const std::string& volume, NodeId node, NodeId asker);

  // Records are kept per generation: generations are random and cannot be ordered, so a record
  // repeated by an agent that missed its withdrawal must never replace a newer one. Only the
  // recorder itself retires its records: a new one supersedes its older ones about that copy,
  // and a Clear withdraws them all.
  using Key = std::tuple<std::string, NodeId, Generation>;
  using Map = std::map<Key, OutdateRecord>;
  // Every record that `node`'s copy of `volume` is outdated, one per generation.
  std::vector<OutdateRecord> about(const std::string& volume, NodeId node) const;
  const Map& all() const { return records_; }

 private:
  NodeId self_;
  std::size_t configured_nodes_;
  bool majority_ = false;     // the regular view holds a majority
  RingId view_;               // the regular view (none between two)
  std::set<NodeId> unheard_;  // members whose repeat for view_ has not been delivered
  Map records_;
  // My records delivered in a view with a majority: the nodes that have each on disk, until it
  // counts (and after, so that a repeat counts again at once).
  struct Mine {
    std::set<NodeId> stored_by;  // never the outdated node
    bool counted = false;
  };
  std::map<Key, Mine> mine_;
  // Keeps a delivered record (from a Records or a fresh record message).
  void take(NodeId origin, const OutdateRecord& record, Delivered& delivered);
  // Drops `recorder`'s records about `node`'s copy of `volume`, but for generation `keep`.
  void forget_recorded(const std::string& volume, NodeId node, NodeId recorder,
                       std::optional<Generation> keep);
  // The records about `node`'s copy of `volume`, every generation.
  std::pair<Map::const_iterator, Map::const_iterator> copy_range(const std::string& volume,
                                                                 NodeId node) const;
  // Marks `mine` counted and reports it, the first time.
  void count(Mine& mine, const OutdateRecord& record, Delivered& delivered);
};

}  // namespace keel::volume
