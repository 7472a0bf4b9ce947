// OutdateRecords: the cluster's memory of which volume copies are outdated, kept by every agent
// from the keel.volume group's messages.
//
// When a primary loses its peer it must not acknowledge another write until a majority of the
// cluster knows that the peer's copy is outdated; otherwise the peer could be promoted later with
// a copy that lacks acknowledged writes. So the primary broadcasts a record (safe delivery: when
// it is delivered here, every member of the view has it) and takes it as recorded when it is
// delivered in a view holding a majority of the configured nodes, not counting the outdated node
// itself: its agent may lose the record before it has marked its copy (a power loss a moment after
// the delivery), and a majority it later forms with others would not know it. When the view is a
// majority only with it, the record counts once that node says its copy is marked Outdated on its
// disk (a Durable message), which refuses promotion from then on. Every member keeps every record
// and broadcasts what it knows after each regular view, so a node that was away (the outdated
// one, typically) learns of it when it rejoins a majority; the outdated node then marks its own
// copy Outdated on disk. A resync that brings the copy up to date clears the record (a Clear
// message with the new generation).
//
// Every agent also keeps the records it knows in its state directory and restores them at start
// (io/outdate_record_file.hpp); they are repeated after the next regular view like any other.
//
// Thread-safety: none; pure state fed by the agent's ring thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
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

  // After a regular view: whether it has a majority, and the message announcing what this node
  // knows (empty when it knows nothing).
  keel::Bytes on_regular_view(const std::vector<NodeId>& members);
  void on_transitional_view();
  bool quorate() const { return quorate_; }

  struct Delivered {
    std::vector<OutdateRecord> recorded_mine;  // my records, now known by a majority
    std::vector<OutdateRecord> about_me;       // records saying my copy is outdated
    std::vector<std::pair<std::string, Generation>> cleared_mine;  // records about me cleared
    std::vector<std::string> discard_mine;  // `resolve --discard-peer` on my peer: volumes
  };
  Delivered on_message(NodeId origin, std::span<const std::uint8_t> payload);

  // A record read back from this agent's state file at start: known as if delivered, and
  // repeated to the others after the next regular view. An existing one is kept.
  void restore(const OutdateRecord& record);

  static keel::Bytes record_message(const OutdateRecord& record);
  static keel::Bytes clear_message(const std::string& volume, NodeId node, Generation generation);
  // From `node` itself: its copy of `volume` is marked outdated on its disk, as of `generation`.
  static keel::Bytes durable_message(const std::string& volume, NodeId node, Generation generation);
  // After a split brain: asks `node` to throw its changes to `volume` away.
  static keel::Bytes discard_message(const std::string& volume, NodeId node, NodeId asker);

  std::optional<OutdateRecord> find(const std::string& volume, NodeId node) const;
  const std::map<std::pair<std::string, NodeId>, OutdateRecord>& all() const { return records_; }

 private:
  NodeId self_;
  std::size_t configured_nodes_;
  bool quorate_ = false;
  std::vector<NodeId> members_;  // of the last regular view
  std::map<std::pair<std::string, NodeId>, OutdateRecord> records_;
  // My records delivered in a view that is a majority only with the outdated node: they count
  // when it says its copy is marked (a Durable message with the same generation).
  std::map<std::pair<std::string, NodeId>, Generation> awaiting_durable_;
};

}  // namespace keel::volume
