// VolumeWorld's ring: groups, views, and every agent's outdate records (volume_world.hpp).
//
// The agents' part is what agent/volume_service.cpp does around volume::OutdateRecords, on the
// simulated clock: views in, messages in and out, the records file, and the replica's side
// (record, withdraw, told, Durable). Each view keeps its messages in one order and delivers each
// to all its members at one instant, so every member sees the same sequence.
#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/volume_world.hpp"

namespace keel::sim {

namespace {

constexpr const char* kVolume = "data";
constexpr std::size_t kConfiguredNodes = 3;

std::string record_text(const volume::OutdateRecord& record) {
  return "node " + std::to_string(record.node) + " outdated as of " +
         std::to_string(record.generation) + " (recorder " + std::to_string(record.recorder) + ")";
}

}  // namespace

// ---- groups ----

void VolumeWorld::set_groups(const std::vector<std::vector<NodeId>>& groups) {
  int next = 1;
  group_ = {0, 100, 101, 102};  // unlisted nodes are alone
  std::string text = "ring groups";
  for (const auto& group : groups) {
    for (NodeId id : group) group_.at(id) = next;
    text += " " + members_text(group);
    ++next;
  }
  note(-1, text);
  if (link_.alive && group_[1] != group_[2]) end_connection(-1, "partition");
  views_changed();
  maybe_connect();
}

std::set<NodeId> VolumeWorld::group_of(NodeId id) const {
  std::set<NodeId> members;
  for (NodeId other = 1; other <= 3; ++other) {
    const bool up = other == kWitness ? witness_up_ : nodes_[other - 1].up;
    if (up && group_[other] == group_[id]) members.insert(other);
  }
  return members;
}

bool VolumeWorld::quorate(NodeId id) const {
  if (!(id == kWitness ? witness_up_ : nodes_[id - 1].up)) return false;
  return group_of(id).size() >= 2;
}

void VolumeWorld::ring_note(NodeId id, std::string text) {
  if (id == kWitness) return note(-1, "witness: " + text);
  note(static_cast<int>(id) - 1, std::move(text));
}

// ---- agents ----

// As the agent starts: its records from the file, and the record its replica's persisted state
// says it made (the ring may have lost it), sent once it is in a view.
void VolumeWorld::agent_start(NodeId id) {
  Agent& a = agent(id);
  ++a.incarnation;
  a.records.emplace(id, kConfiguredNodes);
  for (const volume::OutdateRecord& record : a.file) a.records->restore(record);
  a.submitted = a.records->all();
  a.view = 0;
  a.held.clear();
  a.stores.clear();
  if (id == kWitness) return;
  const Node& n = nodes_[id - 1];
  if (n.saved_state.peer_outdated) {
    ring_note(id, "announces its record of the peer outdated as of " +
                      std::to_string(n.saved_state.generations.current));
    a.held.push_back(volume::OutdateRecords::record_message(
        {kVolume, n.config.peer, n.saved_state.generations.current, id}));
  }
}

void VolumeWorld::agent_crash(NodeId id) {
  Agent& a = agent(id);
  ++a.incarnation;  // its records file writes in progress are void
  a.records.reset();
  a.view = 0;
  a.held.clear();
  a.stores.clear();
}

void VolumeWorld::crash_witness() {
  if (!witness_up_) return;
  ring_note(kWitness, "AGENT CRASH");
  witness_up_ = false;
  agent_crash(kWitness);
  views_changed();
}

void VolumeWorld::restart_witness() {
  if (witness_up_) return;
  hit(coverage_, VolumeMark::witness_restart);
  ring_note(kWitness, "restarts with " + std::to_string(agent(kWitness).file.size()) +
                          " records from its file");
  witness_up_ = true;
  agent_start(kWitness);
  views_changed();
  maybe_connect();
}

// ---- views ----

// Called after anything that may change a group: every view whose members no longer match ends,
// and each part of it forms a new view with whoever else is now in its group.
void VolumeWorld::views_changed() {
  std::map<NodeId, std::set<NodeId>> next;  // every running agent's next members
  std::set<std::uint64_t> ending;
  for (NodeId id = 1; id <= 3; ++id) {
    Agent& a = agent(id);
    if (!a.records) continue;
    const std::set<NodeId> group = group_of(id);
    next[id] = group;
    if (a.view == 0) continue;
    const std::vector<NodeId>& members = views_.at(a.view).members;
    if (std::set<NodeId>(members.begin(), members.end()) != group) ending.insert(a.view);
  }
  // A view some member left (by crashing) ends too.
  for (const auto& [view, state] : views_) {
    for (NodeId member : state.members) {
      if (agent(member).view != view) ending.insert(view);
    }
  }
  for (std::uint64_t view : ending) end_view(view, next);
  // Agents without a view form one with their group (all of it without a view by now).
  std::set<NodeId> placed;
  for (const auto& [id, group] : next) {
    if (agent(id).view != 0 || placed.contains(id)) continue;
    const std::uint64_t view = next_view_++;
    RingView& formed = views_[view];
    formed.members.assign(group.begin(), group.end());
    formed.last_delivery = now_;
    ring_note(id, "view " + std::to_string(view) + " " + members_text(formed.members));
    for (NodeId member : formed.members) {
      KEEL_ASSERT(agent(member).view == 0);
      agent(member).view = view;
      placed.insert(member);
    }
    for (NodeId member : formed.members) {
      Agent& a = agent(member);
      // What the agent queued before the view goes first, as its queue sends it.
      std::vector<keel::Bytes> held = std::exchange(a.held, {});
      for (keel::Bytes& payload : held) broadcast(member, std::move(payload));
      for (keel::Bytes& payload :
           a.records->on_regular_view(RingId{view, formed.members.front()}, formed.members)) {
        broadcast(member, std::move(payload));
      }
    }
  }
}

// The view's members that still run go through a transitional view: each part it splits into
// (by the members' next groups) delivers the messages still in flight that it received, in
// order. The sender's part received its own; any other part may or may not have each (extended
// virtual synchrony delivers what survived in a part, past a message none of it received).
void VolumeWorld::end_view(std::uint64_t view, const std::map<NodeId, std::set<NodeId>>& next) {
  auto found = views_.find(view);
  KEEL_ASSERT(found != views_.end());
  RingView ended = std::move(found->second);
  views_.erase(found);
  std::vector<std::vector<NodeId>> parts;
  for (NodeId member : ended.members) {
    Agent& a = agent(member);
    if (a.view != view) continue;  // crashed since
    a.view = 0;
    a.records->on_transitional_view();
    const std::set<NodeId>& group = next.at(member);
    auto part = std::find_if(parts.begin(), parts.end(), [&](const std::vector<NodeId>& p) {
      return next.at(p.front()) == group;
    });
    if (part == parts.end()) {
      parts.push_back({member});
    } else {
      part->push_back(member);
    }
  }
  for (const RingMessage& message : ended.in_flight) {
    for (const std::vector<NodeId>& part : parts) {
      const bool has_sender = std::find(part.begin(), part.end(), message.origin) != part.end();
      if (!has_sender && !rng_.chance(0.5)) continue;
      for (NodeId member : part) {
        if (agent(member).records) deliver(member, message);
      }
    }
  }
}

void VolumeWorld::broadcast(NodeId from, keel::Bytes payload) {
  Agent& a = agent(from);
  if (!a.records) return;
  if (a.view == 0) {
    a.held.push_back(std::move(payload));  // the agent retries until the ring takes it
    return;
  }
  RingView& view = views_.at(a.view);
  view.in_flight.push_back(RingMessage{from, std::move(payload)});
  const TimeUs at =
      std::max(now_ + delay(options_.ring_min_us, options_.ring_max_us), view.last_delivery);
  view.last_delivery = at;
  push_event(at, "", [this, id = a.view] { deliver_next(id); });
}

void VolumeWorld::deliver_next(std::uint64_t view) {
  auto found = views_.find(view);
  if (found == views_.end()) return;  // ended: end_view() delivered what it had
  KEEL_ASSERT(!found->second.in_flight.empty());
  const RingMessage message = std::move(found->second.in_flight.front());
  found->second.in_flight.erase(found->second.in_flight.begin());
  const std::vector<NodeId> members = found->second.members;
  for (NodeId member : members) {
    if (agent(member).view == view) deliver(member, message);
  }
}

// What the agent's volume service does with a delivered message.
void VolumeWorld::deliver(NodeId to, const RingMessage& message) {
  Agent& a = agent(to);
  auto delivered = a.records->on_message(message.origin, message.payload);
  store_records(to, std::move(delivered.to_store));
  if (to == kWitness) return;
  const int node = static_cast<int>(to) - 1;
  Node& n = nodes_[node];
  if (!n.up) return;
  // The simulation sends no discard requests (`resolve --discard-peer`).
  KEEL_ASSERT(delivered.discard_mine.empty());
  for (const volume::OutdateRecord& record : delivered.recorded_mine) {
    ring_note(to, "ring: recorded by a majority: " + record_text(record));
    release_recorded(node, record.generation);
  }
  for (const volume::OutdateRecord& record : delivered.repeated_mine) {
    if (record.node != n.config.peer || !n.up) continue;
    hit(coverage_, VolumeMark::own_record_repeated);
    ring_note(to, "ring: my record repeated: " + record_text(record));
    n.replica->on_own_record_repeated(record.generation);
    pump(node);
  }
  for (const volume::OutdateRecord& record : delivered.about_me) {
    if (!n.up) break;
    ring_note(to, "ring: told " + record_text(record));
    told_outdated(node, record.generation);
  }
}

// The agent writes the records file when they changed (a background writer, in order), then
// says which records are on its disk.
void VolumeWorld::store_records(NodeId id, std::vector<volume::OutdateRecord> delivered) {
  Agent& a = agent(id);
  Agent::Store store;
  if (a.records->all() != a.submitted) {
    a.submitted = a.records->all();
    store.snapshot.emplace();
    for (const auto& [key, record] : a.submitted) store.snapshot->push_back(record);
  }
  if (!store.snapshot && delivered.empty()) return;
  store.delivered = std::move(delivered);
  a.stores.push_back(std::move(store));
  if (a.stores.size() == 1) store_next(id);
}

void VolumeWorld::store_next(NodeId id) {
  const std::uint32_t incarnation = agent(id).incarnation;
  push_event(
      now_ + delay(options_.persist_min_us, options_.persist_max_us), "", [this, id, incarnation] {
        Agent& a = agent(id);
        if (a.incarnation != incarnation || a.stores.empty()) return;
        Agent::Store done = std::move(a.stores.front());
        a.stores.erase(a.stores.begin());
        if (done.snapshot) a.file = std::move(*done.snapshot);
        if (!a.stores.empty()) store_next(id);
        for (std::size_t at = 0; at < done.delivered.size(); at += volume::kMaxRecordsPerMessage) {
          const std::size_t count =
              std::min(volume::kMaxRecordsPerMessage, done.delivered.size() - at);
          broadcast(id, volume::OutdateRecords::stored_message(
                            std::span(done.delivered).subspan(at, count)));
        }
      });
}

// ---- the replicas' side ----

void VolumeWorld::ring_record(int node, volume::Generation generation) {
  const Node& n = nodes_[node];
  ring_note(n.id, "asks the ring to record the peer outdated as of " + std::to_string(generation));
  broadcast(n.id,
            volume::OutdateRecords::record_message({kVolume, n.config.peer, generation, n.id}));
}

void VolumeWorld::ring_withdraw(int node, volume::Generation generation) {
  const Node& n = nodes_[node];
  ring_note(n.id, "withdraws its record of the peer outdated as of " + std::to_string(generation));
  broadcast(n.id, volume::OutdateRecords::clear_message(kVolume, n.config.peer, generation));
}

std::vector<volume::Generation> VolumeWorld::records_about(int node) const {
  std::vector<volume::Generation> generations;
  const NodeId id = nodes_[node].id;
  for (const volume::OutdateRecord& record : agents_[id - 1].records->about(kVolume, id)) {
    generations.push_back(record.generation);
  }
  return generations;
}

void VolumeWorld::release_recorded(int node, volume::Generation generation) {
  Node& n = nodes_[node];
  // The release follows once the record is durable (observe() marks it).
  if (n.replica->status().suspended) n.release_pending = true;
  n.replica->on_peer_outdated_recorded(generation);
  pump(node);
}

// As the agent's runner: the replica hears of it, and the agent says Durable once the copy is
// marked outdated on its disk (a copy the record does not concern says nothing).
void VolumeWorld::told_outdated(int node, volume::Generation generation) {
  Node& n = nodes_[node];
  hit(coverage_, VolumeMark::told_outdated);
  n.replica->on_told_outdated(generation);
  pump(node);
  if (!n.up || n.replica->persistent_state().disk == volume::DiskState::UpToDate) return;
  n.outdated_to_confirm = std::make_pair(generation, n.persists_asked);
  confirm_outdated_when_durable(node);
}

void VolumeWorld::confirm_outdated_when_durable(int node) {
  Node& n = nodes_[node];
  if (!n.outdated_to_confirm || n.persists_written < n.outdated_to_confirm->second) return;
  const volume::Generation generation = n.outdated_to_confirm->first;
  n.outdated_to_confirm.reset();
  broadcast(n.id, volume::OutdateRecords::durable_message(kVolume, n.id, generation));
}

}  // namespace keel::sim
