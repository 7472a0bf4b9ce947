// VolumeWorld's replication link: one ordered stream per connection (volume_world.hpp).
#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/volume_wire.hpp"
#include "sim/volume_world.hpp"

namespace keel::sim {

namespace {

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

}  // namespace keel::sim
