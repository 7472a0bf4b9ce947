#include "core/ring/groups.hpp"

#include <algorithm>
#include <iterator>

#include "core/ring/group_wire.hpp"

namespace keel::ring {

namespace {

std::vector<NodeId> sorted(const std::set<NodeId>& set) { return {set.begin(), set.end()}; }

std::vector<NodeId> difference(const std::set<NodeId>& a, const std::set<NodeId>& b) {
  std::vector<NodeId> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

Result<Bytes> ProcessGroups::join(const std::string& group) {
  if (auto problem = check_group_name(group)) return Error{*problem};
  if (my_groups_.count(group) == 0 && my_groups_.size() >= kMaxGroupsPerHost) {
    return Error{"this host is already in " + std::to_string(kMaxGroupsPerHost) + " groups"};
  }
  // Recorded at once so that a sync sent before the join is delivered already names the group.
  my_groups_.insert(group);
  return encode_group_message({GroupWireMessage::Kind::join, group, {}, {}, {}});
}

Result<Bytes> ProcessGroups::leave(const std::string& group) {
  if (auto problem = check_group_name(group)) return Error{*problem};
  my_groups_.erase(group);
  return encode_group_message({GroupWireMessage::Kind::leave, group, {}, {}, {}});
}

Result<Bytes> ProcessGroups::message(const std::string& group, const Bytes& payload) {
  if (auto problem = check_group_name(group)) return Error{*problem};
  return encode_group_message({GroupWireMessage::Kind::data, group, payload, {}, {}});
}

void ProcessGroups::on_ring_action(const Action& action) {
  if (const auto* view = std::get_if<View>(&action)) {
    on_view(*view);
  } else if (const auto* message = std::get_if<DeliveredMessage>(&action)) {
    on_delivered(*message);
  }
}

std::vector<GroupEvent> ProcessGroups::take_events() {
  std::vector<GroupEvent> out;
  out.swap(events_);
  return out;
}

std::vector<Bytes> ProcessGroups::take_submissions() {
  std::vector<Bytes> out;
  out.swap(submissions_);
  return out;
}

std::vector<NodeId> ProcessGroups::members(const std::string& group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? std::vector<NodeId>{} : sorted(it->second);
}

void ProcessGroups::on_view(const View& view) {
  if (!view.regular()) {
    // Hosts that did not come along leave every group at once, the same way on every host of
    // the transitional view.
    const std::set<NodeId> staying(view.members.begin(), view.members.end());
    for (auto& [group, members] : std::map<std::string, std::set<NodeId>>(groups_)) {
      std::set<NodeId> kept;
      std::set_intersection(members.begin(), members.end(), staying.begin(), staying.end(),
                            std::inserter(kept, kept.end()));
      if (kept == members) continue;
      groups_[group] = kept;
      emit_change(group, members);
    }
    sync_.reset();
    return;
  }
  view_ring_ = view.ring;
  sync_ = Sync{view.ring, {view.members.begin(), view.members.end()}, {}};
  std::vector<std::string> mine(my_groups_.begin(), my_groups_.end());
  submissions_.push_back(
      encode_group_message({GroupWireMessage::Kind::sync, {}, {}, view.ring, std::move(mine)}));
}

void ProcessGroups::on_delivered(const DeliveredMessage& delivered) {
  auto decoded = decode_group_message(delivered.payload);
  if (!decoded.ok()) return;  // not a group message: nothing for this layer
  const GroupWireMessage& message = decoded.value();
  const NodeId origin = delivered.origin;
  switch (message.kind) {
    case GroupWireMessage::Kind::join:
    case GroupWireMessage::Kind::leave: {
      const bool joining = message.kind == GroupWireMessage::Kind::join;
      if (sync_) {
        // Before its sync, a host's joins and leaves are already reflected in that sync.
        if (sync_->waiting_for.count(origin) != 0) return;
        auto& rebuilt = sync_->rebuilt[message.group];
        if (joining) {
          rebuilt.insert(origin);
        } else {
          rebuilt.erase(origin);
        }
        return;
      }
      apply_change(message.group, origin, joining);
      return;
    }
    case GroupWireMessage::Kind::data:
      if (my_groups_.count(message.group) != 0) {
        events_.push_back(GroupMessage{message.group, origin, delivered.safe, message.payload});
      }
      return;
    case GroupWireMessage::Kind::sync:
      if (!sync_ || message.sync_ring != sync_->ring) return;  // from an earlier view
      if (sync_->waiting_for.erase(origin) == 0) return;
      for (const std::string& group : message.groups) sync_->rebuilt[group].insert(origin);
      if (sync_->waiting_for.empty()) finish_sync();
      return;
  }
}

void ProcessGroups::apply_change(const std::string& group, NodeId node, bool joining) {
  std::set<NodeId>& members = groups_[group];
  const std::set<NodeId> before = members;
  if (joining) {
    members.insert(node);
  } else {
    members.erase(node);
  }
  if (members != before) emit_change(group, before);
  if (members.empty()) groups_.erase(group);
}

void ProcessGroups::finish_sync() {
  std::set<std::string> names;
  for (const auto& [group, members] : groups_) names.insert(group);
  for (const auto& [group, members] : sync_->rebuilt) names.insert(group);
  std::map<std::string, std::set<NodeId>> old_groups = std::move(groups_);
  groups_.clear();
  for (auto& [group, members] : sync_->rebuilt) {
    if (!members.empty()) groups_[group] = members;
  }
  sync_.reset();
  for (const std::string& group : names) emit_change(group, old_groups[group]);
}

void ProcessGroups::emit_change(const std::string& group, const std::set<NodeId>& before) {
  auto it = groups_.find(group);
  const std::set<NodeId> after = it == groups_.end() ? std::set<NodeId>{} : it->second;
  if (after == before) return;
  events_.push_back(
      GroupView{group, sorted(after), difference(after, before), difference(before, after)});
}

}  // namespace keel::ring
