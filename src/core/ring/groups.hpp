// ProcessGroups: named groups of hosts on top of the ring, in the style of Spread's and
// corosync's process groups.
//
// Hosts join and leave groups and send messages to a group. Every request becomes a ring
// message; group membership changes and group messages are delivered in the ring's agreed
// order, interleaved with its views, so every host of a view sees the same group history.
// After each regular view, every member announces the groups it belongs to (a sync message);
// once all syncs of the view are delivered, the membership of every group is rebuilt from them,
// which is how the two sides of a healed partition learn each other's groups. A transitional
// view removes the hosts that did not come along from every group at once.
//
// The layer is fed the ring's View and DeliveredMessage actions, in order, and hands back group
// events and the messages it needs broadcast (which the caller submits to the ring as agreed).
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/ring/events.hpp"

namespace keel::ring {

constexpr std::size_t kMaxGroupNameBytes = 128;
constexpr std::size_t kMaxGroupsPerHost = 256;

struct GroupView {
  std::string group;
  std::vector<NodeId> members;  // sorted
  std::vector<NodeId> joined;   // members added by this change
  std::vector<NodeId> left;     // members removed by this change
  bool operator==(const GroupView&) const = default;
};

struct GroupMessage {
  std::string group;
  NodeId origin = kNoNode;
  bool safe = false;
  Bytes payload;
  bool operator==(const GroupMessage&) const = default;
};

using GroupEvent = std::variant<GroupView, GroupMessage>;

class ProcessGroups {
 public:
  explicit ProcessGroups(NodeId self) : self_(self) {}

  // Requests. Each returns the ring message to submit, or an error for a bad group name or
  // (join) too many groups. join/leave take effect when delivered, in agreed order.
  Result<Bytes> join(const std::string& group);
  Result<Bytes> leave(const std::string& group);
  Result<Bytes> message(const std::string& group, const Bytes& payload);

  // Feeds one ring action (sends and receipts are ignored); group events come out of
  // take_events(), and messages this layer needs broadcast out of take_submissions().
  void on_ring_action(const Action& action);
  std::vector<GroupEvent> take_events();
  std::vector<Bytes> take_submissions();

  // The current membership of a group (empty if unknown), and whether this host is in it.
  std::vector<NodeId> members(const std::string& group) const;
  bool joined(const std::string& group) const { return my_groups_.count(group) != 0; }
  bool syncing() const { return sync_.has_value(); }

 private:
  struct Sync {
    RingId ring;
    std::set<NodeId> waiting_for;
    std::map<std::string, std::set<NodeId>> rebuilt;
  };

  void on_view(const View& view);
  void on_delivered(const DeliveredMessage& message);
  void apply_change(const std::string& group, NodeId node, bool joining);
  void finish_sync();
  void emit_change(const std::string& group, const std::set<NodeId>& before);

  NodeId self_;
  std::set<std::string> my_groups_;
  std::map<std::string, std::set<NodeId>> groups_;
  std::optional<Sync> sync_;
  std::optional<RingId> view_ring_;
  std::vector<GroupEvent> events_;
  std::vector<Bytes> submissions_;
};

}  // namespace keel::ring
