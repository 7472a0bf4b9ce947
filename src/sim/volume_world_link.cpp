// VolumeWorld's replication link (one ordered stream per connection) and its ring oracle
// (groups, quorum, outdate records); volume_world.hpp describes both.
#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/volume_wire.hpp"
#include "sim/volume_world.hpp"

namespace keel::sim {

namespace {

constexpr TimeUs kRingStepUs = 10'000;
constexpr TimeUs kRefusedReconnectUs = 1'000'000;

std::string generations_text(const volume::Generations& g) {
  return "gen " + std::to_string(g.current % 100000) + "/" + std::to_string(g.bitmap % 100000);
}

// A message in a trace line: its type and the fields that matter for reading a failure.
std::string message_text(const volume::PeerMessage& message) {
  return std::visit(
      [](const auto& m) -> std::string {
        using T = std::decay_t<decltype(m)>;
        using namespace volume;
        if constexpr (std::is_same_v<T, Hello>) {
          return "Hello " + std::string(to_string(m.role)) + "/" + std::string(to_string(m.disk)) +
                 " " + generations_text(m.generations) + (m.primary_at_crash ? " crashed" : "") +
                 (m.survived_primary ? " survived" : "");
        } else if constexpr (std::is_same_v<T, BitmapWords>) {
          return "BitmapWords " + std::to_string(m.words.size()) + (m.last ? " last" : "");
        } else if constexpr (std::is_same_v<T, DataWrite>) {
          const std::uint64_t length = m.zero_length != 0 ? m.zero_length : m.data->size();
          return "DataWrite seq " + std::to_string(m.sequence) + " epoch " +
                 std::to_string(m.epoch) + " at " + std::to_string(m.offset) + "+" +
                 std::to_string(length) + (m.zero_length != 0 ? " zero" : "");
        } else if constexpr (std::is_same_v<T, WriteAck>) {
          return "WriteAck seq " + std::to_string(m.sequence) + " error " + std::to_string(m.error);
        } else if constexpr (std::is_same_v<T, Barrier>) {
          return "Barrier epoch " + std::to_string(m.epoch) + (m.checkpoint ? " checkpoint" : "");
        } else if constexpr (std::is_same_v<T, BarrierAck>) {
          return "BarrierAck epoch " + std::to_string(m.epoch);
        } else if constexpr (std::is_same_v<T, ResyncData>) {
          return "ResyncData at " + std::to_string(m.offset) + "+" + std::to_string(m.data->size());
        } else if constexpr (std::is_same_v<T, ResyncAck>) {
          return "ResyncAck at " + std::to_string(m.offset) + "+" + std::to_string(m.length);
        } else if constexpr (std::is_same_v<T, ResyncDone>) {
          return "ResyncDone " + generations_text(m.generations);
        } else if constexpr (std::is_same_v<T, StateUpdate>) {
          return "StateUpdate " + std::string(to_string(m.role)) + "/" +
                 std::string(to_string(m.disk)) + " " + generations_text(m.generations);
        } else if constexpr (std::is_same_v<T, Refuse>) {
          return "Refuse " + std::string(to_string(m.reason)) + ": " + m.text;
        } else if constexpr (std::is_same_v<T, VerifyRequest>) {
          return "VerifyRequest at " + std::to_string(m.offset) + "+" + std::to_string(m.length);
        } else {
          static_assert(std::is_same_v<T, VerifyReply>);
          return "VerifyReply at " + std::to_string(m.offset) + "+" + std::to_string(m.length) +
                 " error " + std::to_string(m.error);
        }
      },
      message);
}

bool refused(const volume::Replica& replica) {
  const volume::LinkState link = replica.status().link;
  return link == volume::LinkState::SplitBrain || link == volume::LinkState::Unrelated;
}

}  // namespace

// ---- the link ----

bool VolumeWorld::link_possible() const {
  return nodes_[0].up && nodes_[1].up && group_[1] == group_[2];
}

void VolumeWorld::send(int from, volume::PeerMessage message) {
  if (!link_.alive || nodes_[from].connection != link_.id) return;  // into a dead socket
  const int to = 1 - from;
  const TimeUs arrival =
      std::max(now_ + delay(options_.link_min_us, options_.link_max_us), link_.last_arrival[to]);
  link_.last_arrival[to] = arrival;
  ++messages_;
  const std::uint64_t connection = link_.id;
  const std::uint32_t incarnation = nodes_[to].incarnation;
  // The frame travels, as on the real link; the message sent is kept only to name it if the
  // codec fails to carry it.
  WireFrame frame = to_wire(message);
  push_event(arrival, "",
             [this, from, to, connection, incarnation, sent = std::move(message),
              frame = std::move(frame)] {
               Node& n = nodes_[to];
               if (!n.up || n.incarnation != incarnation || n.connection != connection) return;
               if (link_.id != connection || (!link_.alive && link_.closer != from)) return;
               auto received = from_wire(frame, n.config.size_bytes);
               if (!received.ok()) {
                 return fail("the wire codec did not carry a " + message_text(sent) +
                             " from node " + std::to_string(nodes_[from].id) + " to node " +
                             std::to_string(n.id) + ": " + received.error().message);
               }
               const volume::PeerMessage& delivered = received.value();
               note(to, "from " + std::to_string(nodes_[from].id) + ": " + message_text(delivered));
               n.replica->on_peer_message(delivered);
               pump(to);
             });
}

void VolumeWorld::close_from(int node, const std::string& why) {
  if (!link_.alive || nodes_[node].connection != link_.id) return;
  end_connection(node, "node " + std::to_string(nodes_[node].id) + " closes: " + why);
}

// Ends the current connection. Each side hears of it at its own time; the closing side's last
// messages still arrive first (TCP sends what it had queued before the FIN).
void VolumeWorld::end_connection(int closer, const std::string& why) {
  KEEL_ASSERT(link_.alive);
  note(-1, "connection " + std::to_string(link_.id) + " ends: " + why);
  for (int i = 0; i < 2; ++i) {
    if (!nodes_[i].up) continue;
    const volume::LinkState state = nodes_[i].replica->status().link;
    if (state == volume::LinkState::SyncSource || state == volume::LinkState::SyncTarget) {
      hit(coverage_, VolumeMark::resync_interrupted);
      break;
    }
  }
  link_.alive = false;
  link_.closer = closer;
  const std::uint64_t connection = link_.id;
  for (int side = 0; side < 2; ++side) {
    if (nodes_[side].connection != connection) continue;
    TimeUs at = now_ + delay(options_.link_min_us, kBreakNoticeMaxUs);
    if (side == closer) at = now_;
    if (closer >= 0 && side != closer) at = std::max(now_, link_.last_arrival[side]) + 1;
    later(side, at - now_, "", [this, side, connection] { disconnect_side(side, connection); });
  }
}

void VolumeWorld::disconnect_side(int node, std::uint64_t connection) {
  Node& n = nodes_[node];
  if (n.connection != connection) return;
  n.connection = 0;
  note(node, "peer disconnected");
  n.replica->on_peer_disconnected();
  pump(node);
  maybe_connect();
}

void VolumeWorld::break_link(const std::string& why) {
  if (link_.alive) end_connection(-1, why);
}

void VolumeWorld::maybe_connect() {
  if (connect_scheduled_ || link_.alive || !link_possible()) return;
  if (nodes_[0].connection != 0 || nodes_[1].connection != 0) return;
  // The link keeps reconnecting after a refusal (the core refuses again until something
  // changed), more slowly.
  const bool refusing = refused(*nodes_[0].replica) || refused(*nodes_[1].replica);
  const TimeUs backoff = refusing ? kRefusedReconnectUs : 0;
  connect_scheduled_ = true;
  push_event(now_ + backoff + delay(options_.reconnect_min_us, options_.reconnect_max_us), "",
             [this] { connect_now(); });
}

void VolumeWorld::connect_now() {
  connect_scheduled_ = false;
  if (link_.alive || !link_possible()) return;
  if (nodes_[0].connection != 0 || nodes_[1].connection != 0) return;
  link_ = Connection{next_connection_++, true, -1, {now_, now_}};
  note(-1, "connection " + std::to_string(link_.id) + " up");
  const int first = static_cast<int>(rng_.uniform(0, 1));
  for (int side : {first, 1 - first}) nodes_[side].connection = link_.id;
  for (int side : {first, 1 - first}) {
    if (!nodes_[side].up || nodes_[side].connection != link_.id) continue;
    nodes_[side].replica->on_peer_connected();
    pump(side);
  }
}

// ---- the ring ----

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
  ring_tell();
  maybe_connect();
}

std::set<NodeId> VolumeWorld::group_of(NodeId id) const {
  std::set<NodeId> members;
  for (NodeId other = 1; other <= 3; ++other) {
    const bool up = other == kWitness || nodes_[other - 1].up;
    if (up && group_[other] == group_[id]) members.insert(other);
  }
  return members;
}

bool VolumeWorld::quorate(NodeId id) const {
  if (id != kWitness && !nodes_[id - 1].up) return false;
  return group_of(id).size() >= 2;
}

void VolumeWorld::ring_withdraw(int node, volume::Generation generation) {
  const NodeId peer = nodes_[node].config.peer;
  // The clear reaches the node's group only; members elsewhere keep the record.
  const std::set<NodeId> group = group_of(nodes_[node].id);
  for (Record& record : records_) {
    if (record.about != peer || record.generation != generation) continue;
    for (NodeId member : group) record.knowers.erase(member);
  }
  std::erase_if(records_, [](const Record& r) { return r.knowers.empty(); });
  auto pending = outdate_requests_.find({node, nodes_[node].incarnation});
  if (pending != outdate_requests_.end()) std::erase(pending->second, generation);
  std::erase_if(awaiting_durable_, [&](const AwaitingDurable& waiting) {
    return waiting.node == node && waiting.generation == generation;
  });
  note(node, "withdraws the record of its peer being outdated as of " + std::to_string(generation));
}

// A broadcast of a record the node made before it restarted: every member of its group keeps it
// (replacing what it held about that copy), and it spreads as any other.
// A record delivered in `group`: its members replace what they held about that copy (each agent
// keeps one record per copy, the last delivered); members of other groups never saw it and keep
// theirs. A record no node knows any more is gone.
void VolumeWorld::record_in_group(NodeId about, volume::Generation generation,
                                  const std::set<NodeId>& group) {
  bool known = false;
  for (Record& record : records_) {
    if (record.about != about) continue;
    if (record.generation == generation) {
      record.knowers.insert(group.begin(), group.end());
      known = true;
    } else {
      for (NodeId member : group) record.knowers.erase(member);
    }
  }
  std::erase_if(records_, [](const Record& r) { return r.knowers.empty(); });
  if (!known) records_.push_back(Record{about, generation, group, {}});
}

void VolumeWorld::ring_announce(int node, volume::Generation generation) {
  const Node& n = nodes_[node];
  const NodeId peer = n.config.peer;
  const std::set<NodeId> group = group_of(n.id);
  record_in_group(peer, generation, group);
  note(node, "announces its record of the peer outdated as of " + std::to_string(generation));
}

void VolumeWorld::ring_step() {
  push_event(now_ + delay(kRingStepUs / 2, kRingStepUs * 2), "", [this] { ring_step(); });
  // Requests of quorate nodes are recorded, by the nodes of the asker's group.
  for (auto it = outdate_requests_.begin(); it != outdate_requests_.end();) {
    const auto [node, incarnation] = it->first;
    Node& n = nodes_[node];
    if (!n.up || n.incarnation != incarnation) {
      it = outdate_requests_.erase(it);
      continue;
    }
    if (!quorate(n.id)) {
      ++it;
      continue;
    }
    const std::vector<volume::Generation> generations = std::move(it->second);
    it = outdate_requests_.erase(it);
    for (volume::Generation generation : generations) {
      const std::set<NodeId> group = group_of(n.id);
      record_in_group(n.config.peer, generation, group);
      note(node, "ring recorded the peer outdated as of " + std::to_string(generation));
      if (group.count(n.config.peer) != 0 && group.size() - 1 < 2) {
        note(node, "waits for the peer to mark its copy outdated on its disk");
        awaiting_durable_.push_back(AwaitingDurable{node, incarnation, generation});
        continue;
      }
      release_recorded(node, generation);
    }
  }
  ring_tell();
  // The outdated node's Durable message reaches a recorder in its group once its copy is marked
  // on its disk (the agent sends it after the metadata write).
  // Released after the scan: a release runs the node's actions, which may withdraw records.
  std::vector<AwaitingDurable> confirmed;
  std::erase_if(awaiting_durable_, [&](const AwaitingDurable& waiting) {
    const Node& n = nodes_[waiting.node];
    if (!n.up || n.incarnation != waiting.incarnation) return true;
    const NodeId peer = n.config.peer;
    const Node& p = nodes_[peer - 1];
    if (!p.up || group_of(n.id).count(peer) == 0) return false;
    if (p.saved_state.disk == volume::DiskState::UpToDate) return false;
    confirmed.push_back(waiting);
    return true;
  });
  for (const AwaitingDurable& waiting : confirmed) {
    const Node& n = nodes_[waiting.node];
    if (!n.up || n.incarnation != waiting.incarnation) continue;
    note(waiting.node, "the peer's copy is marked outdated on its disk");
    release_recorded(waiting.node, waiting.generation);
  }
}

void VolumeWorld::release_recorded(int node, volume::Generation generation) {
  Node& n = nodes_[node];
  // The release follows once the record is durable (observe() marks it).
  if (n.replica->status().suspended) n.release_pending = true;
  n.replica->on_peer_outdated_recorded(generation);
  pump(node);
}

// Members repeat what they know after each view; the outdated node learns it when quorate.
// The agent's records are delivered in the view that makes a node quorate, before any promote.
// A recorder that a merge tells of its own record again (it had withdrawn or superseded it in
// its group) asks its replica whether the record still holds, as the agent does
// (outdate_records.hpp, repeated_mine); the answer may withdraw or supersede it again.
void VolumeWorld::ring_tell() {
  std::vector<std::pair<int, volume::Generation>> repeated_to_recorder;
  for (Record& record : records_) {
    const NodeId recorder = record.about == 1 ? 2 : 1;
    for (NodeId id = 1; id <= 3; ++id) {
      const std::set<NodeId> group = group_of(id);
      const bool informed = std::any_of(group.begin(), group.end(),
                                        [&](NodeId m) { return record.knowers.count(m) != 0; });
      if (group.count(id) == 0 || !informed) continue;
      if (record.knowers.insert(id).second && id == recorder) {
        repeated_to_recorder.emplace_back(static_cast<int>(recorder) - 1, record.generation);
      }
    }
  }
  std::erase_if(records_, [](const Record& r) { return r.knowers.empty(); });
  for (const auto& [node, generation] : repeated_to_recorder) {
    if (!nodes_[node].up) continue;
    hit(coverage_, VolumeMark::own_record_repeated);
    nodes_[node].replica->on_own_record_repeated(generation);
    pump(node);
  }
  for (std::size_t i = 0; i < records_.size(); ++i) {
    const NodeId about = records_[i].about;
    const int node = static_cast<int>(about) - 1;
    Node& n = nodes_[node];
    if (!quorate(about) || records_[i].knowers.count(about) == 0) continue;
    if (!records_[i].told.insert({about, n.incarnation}).second) continue;
    hit(coverage_, VolumeMark::told_outdated);
    note(node, "told by the ring: outdated as of " + std::to_string(records_[i].generation));
    n.replica->on_told_outdated(records_[i].generation);
    pump(node);
  }
}
}  // namespace keel::sim
