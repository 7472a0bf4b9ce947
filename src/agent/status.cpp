#include "agent/status.hpp"

#include <unistd.h>

namespace keel::agent {

using nlohmann::json;

namespace {

std::string node_name(const config::ClusterConfig& config, NodeId id) {
  const config::NodeConfig* node = config.node_by_id(id);
  return node ? node->name : "?";
}

std::string endpoint_text(const asio::ip::udp::endpoint& endpoint) {
  const std::string address = endpoint.address().to_string();
  const std::string host = endpoint.address().is_v6() ? "[" + address + "]" : address;
  return host + ":" + std::to_string(endpoint.port());
}

json drops_json(const io::DropCounts& drops) {
  return json{{"malformed", drops.malformed},
              {"forged", drops.forged},
              {"replayed", drops.replayed},
              {"unknown_sender", drops.unknown_sender},
              {"wrong_address", drops.wrong_address}};
}

json peer_json(const StatusSources& sources, const io::PeerStats& peer) {
  json rejected = drops_json(peer.dropped);
  const auto undecodable = sources.undecodable.find(peer.id);
  rejected["undecodable"] = undecodable == sources.undecodable.end() ? 0 : undecodable->second;
  json last_heard = nullptr;
  if (peer.last_heard_us) last_heard = (sources.now_us - *peer.last_heard_us) / 1000;
  return json{{"id", peer.id},
              {"name", node_name(sources.config, peer.id)},
              {"address", endpoint_text(peer.endpoint)},
              {"last_heard_ms", last_heard},
              {"packets_opened", peer.packets_opened},
              {"rejected", rejected}};
}

json ring_stats_json(const ring::RingStats& stats) {
  return json{{"packets_sent", stats.packets_sent},
              {"packets_received", stats.packets_received},
              {"packets_rejected", stats.packets_rejected},
              {"messages_submitted", stats.messages_submitted},
              {"messages_delivered", stats.messages_delivered},
              {"ring_messages_broadcast", stats.ring_messages_broadcast},
              {"retransmissions", stats.retransmissions},
              {"tokens_received", stats.tokens_received},
              {"tokens_retransmitted", stats.tokens_retransmitted},
              {"views_installed", stats.views_installed},
              {"gathers_entered", stats.gathers_entered}};
}

json transport_stats_json(const io::UdpTransport& transport) {
  const io::OpenStats& open = transport.open_stats();
  const io::TransportStats& stats = transport.stats();
  return json{{"opened", open.opened},
              {"malformed", open.malformed},
              {"forged", open.forged},
              {"replayed", open.replayed},
              {"unknown_sender", open.unknown_sender},
              {"datagrams_sent", stats.datagrams_sent},
              {"group_datagrams_sent", stats.group_datagrams_sent},
              {"segmented_sends", stats.segmented_sends},
              {"segmentation_refused", stats.segmentation_refused},
              {"own_datagrams_ignored", stats.own_datagrams_ignored},
              {"send_errors", stats.send_errors},
              {"receive_errors", stats.receive_errors},
              {"receive_buffer_bytes", stats.receive_buffer_bytes},
              {"dropped_from_unconfigured", drops_json(stats.dropped_from_unconfigured)}};
}

json members_json(const config::ClusterConfig& config, const std::optional<ring::View>& view) {
  json members = json::array();
  if (!view) return members;
  for (const NodeId id : view->members) {
    members.push_back(json{{"id", id}, {"name", node_name(config, id)}});
  }
  return members;
}

}  // namespace

json build_status(const StatusSources& sources) {
  const ring::Ring& ring = sources.ring;
  json peers = json::array();
  for (const io::PeerStats& peer : sources.transport.peers()) {
    peers.push_back(peer_json(sources, peer));
  }
  const auto& view = ring.view();
  return json{
      {"ok", true},
      {"node",
       {{"id", sources.self.id},
        {"name", sources.self.name},
        {"address", endpoint_text(sources.transport.local_endpoint())}}},
      {"cluster", sources.config.cluster_name},
      {"pid", ::getpid()},
      {"uptime_ms", (sources.now_us - sources.started_us) / 1000},
      {"state", ring::state_name(ring.state())},
      {"ring", view ? json(to_string(view->ring)) : json(nullptr)},
      {"members", members_json(sources.config, view)},
      {"peers", peers},
      {"ring_stats", ring_stats_json(ring.stats())},
      {"transport_stats", transport_stats_json(sources.transport)},
      {"send_queue", ring.send_queue_length()},
      {"groups", sources.groups},
  };
}

}  // namespace keel::agent
