#include "agent/agent.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <utility>

#include "agent/control_protocol.hpp"
#include "agent/status.hpp"
#include "agent/vip_leftovers.hpp"
#include "core/common/assert.hpp"
#include "io/boot_epoch.hpp"
#include "io/clock.hpp"

namespace keel::agent {

namespace {

constexpr TimeUs kHandoverTimeoutUs = 2'000'000;

io::TransportMode transport_mode(config::TransportMode mode) {
  switch (mode) {
    case config::TransportMode::unicast:
      return io::TransportMode::unicast;
    case config::TransportMode::multicast:
      return io::TransportMode::multicast;
    case config::TransportMode::broadcast:
      return io::TransportMode::broadcast;
  }
  KEEL_ASSERT(false);
  return io::TransportMode::unicast;
}

io::TransportOptions transport_options(const AgentOptions& options, std::uint64_t boot_us) {
  const config::ClusterConfig& config = options.config;
  io::TransportOptions transport{options.self.id,      {},
                                 config.transport.mtu, config.ring.max_packet_bytes,
                                 options.key,          boot_us};
  for (const config::NodeConfig& node : config.nodes) {
    transport.nodes.push_back({node.id, node.address, node.port});
  }
  transport.mode = transport_mode(config.transport.mode);
  transport.group = config.transport.group;
  transport.multicast_ttl = config.transport.multicast_ttl;
  return transport;
}

// Clients may fill the ring's send queue to three quarters only. The rest is kept for the agent's
// own messages (the group sync after each view, joins and leaves, floating-IP and volume state),
// which a client flooding a group must not crowd out: a sync refused for a full queue would leave
// every group's membership stale until the next view.
std::size_t client_send_limit(const ring::RingTunables& tunables) {
  const std::size_t most = tunables.max_send_queue_messages;
  return most - most / 4;
}

}  // namespace

Agent::Agent(asio::io_context& io, AgentOptions options)
    : io_(io), options_(std::move(options)), watchdog_timer_(io), handover_timer_(io) {}

Agent::~Agent() { shutdown(); }

void Agent::record_peer_epoch(NodeId peer, std::uint64_t epoch) {
  std::uint64_t& recorded = peer_epochs_[peer];
  if (epoch <= recorded) return;
  recorded = epoch;
  if (auto written = io::write_peer_epochs(options_.config.agent.state_dir, peer_epochs_);
      !written) {
    spdlog::warn("cannot record node {}'s new epoch: {}", peer, written.error().message);
  }
}

Result<Ok> Agent::start() {
  KEEL_ASSERT(!started_);
  started_us_ = io::monotonic_now_us();
  // Above the last run's, even with the wall clock set back (io/boot_epoch.hpp): a restart's
  // packets are never taken for replays of the last run's, and its ring ids start above the
  // last run's start.
  const config::ClusterConfig& config = options_.config;
  std::uint64_t boot_us = io::realtime_now_us();
  if (auto epoch = io::next_boot_epoch(config.agent.state_dir, boot_us)) {
    boot_us = epoch.value();
  } else {
    spdlog::warn(
        "{}; using the wall clock as the boot epoch: if it is behind the last run's, the "
        "other hosts drop this host's packets as replays until they restart",
        epoch.error().message);
  }
  io::TransportOptions transport_config = transport_options(options_, boot_us);
  if (auto floors = io::read_peer_epochs(config.agent.state_dir)) {
    peer_epochs_ = std::move(floors).value();
  } else {
    spdlog::warn(
        "{}; starting without replay floors: packets from the peers' earlier runs "
        "could be replayed into this one until each peer's current run is heard",
        floors.error().message);
  }
  transport_config.peer_epoch_floors = peer_epochs_;
  transport_config.on_peer_epoch = [this](NodeId peer, std::uint64_t epoch) {
    record_peer_epoch(peer, epoch);
  };
  auto transport = io::UdpTransport::open(io_, std::move(transport_config));
  if (!transport.ok()) return transport.error();
  auto control = ControlServer::open(io_, config.agent.control_socket, *this);
  if (!control.ok()) return control.error();
  if (!config.vip.empty()) {
    auto vip = VipHost::open(io_, config, options_.self.id, [this](const Bytes& payload) {
      return driver_->send(vip::kVipGroup, payload, false);
    });
    if (!vip.ok()) return vip.error();
    vip_ = std::move(vip).value();
  } else {
    // An earlier run may have had pools and been killed: its addresses and rules must go.
    clear_vip_leftovers();
  }
  if (!config.volumes.empty()) {
    auto volumes = VolumeService::open(io_, config, options_.self.id, options_.key,
                                       [this](const Bytes& payload) {
                                         return driver_->send(volume::kVolumeGroup, payload, true);
                                       });
    if (!volumes.ok()) return volumes.error();
    volumes_ = std::move(volumes).value();
  }
  transport_ = std::move(transport).value();
  control_ = std::move(control).value();
  driver_ = std::make_unique<RingDriver>(
      io_, RingDriverOptions{options_.self.id, config.node_ids(), config.ring, boot_us},
      [this](NodeId to, std::span<const std::uint8_t> bytes) { transport_->queue(to, bytes); },
      [this] { transport_->flush(); }, static_cast<RingEvents&>(*this));
  transport_->start(
      [this](NodeId from, std::span<const std::uint8_t> bytes) { on_packet(from, bytes); });
  control_->start();
  driver_->start();
  if (vip_) {
    // A member from the start, so that its own states are delivered to it from the first view.
    if (auto joined = driver_->join(vip::kVipGroup); !joined) return joined.error();
    if (auto started = vip_->start(); !started) return started.error();
  }
  if (volumes_) {
    if (auto joined = driver_->join(volume::kVolumeGroup); !joined) return joined.error();
    volumes_->start();
  }
  started_ = true;
  const std::string group = config.transport.mode == config::TransportMode::unicast
                                ? ""
                                : " (" + std::string(config::to_string(config.transport.mode)) +
                                      " to " + config.transport.group + ")";
  spdlog::info("node {} ({}) of cluster {} started: UDP {}:{}{}, control socket {}",
               options_.self.id, options_.self.name, config.cluster_name, options_.self.address,
               options_.self.port, group, config.agent.control_socket);
  sd_notify(0, "READY=1");
  start_watchdog();
  return Ok{};
}

void Agent::shutdown() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  sd_notify(0, "STOPPING=1");
  spdlog::info("leaving the ring and shutting down");
  // Addresses go before the ring is left: the others take them over when they see the leave.
  handover_timer_.cancel();
  if (vip_) vip_->stop();
  // Bounded: a volume stuck on its disk must not keep the others waiting for this host's leave.
  if (volumes_) volumes_->stop();
  transport_->wait_on_full_buffer();
  driver_->leave_ring();  // the leave packets are sent before this returns
  control_->close();
  transport_->close();
  watchdog_timer_.cancel();
  if (on_stopped_) std::exchange(on_stopped_, nullptr)();
}

void Agent::request_shutdown() {
  if (!started_ || stopped_) return;
  if (!vip_ || handing_over_) {
    shutdown();
    return;
  }
  handing_over_ = true;
  // The handover period keeps connections opened here just before the switch working.
  const TimeUs limit_us =
      kHandoverTimeoutUs + static_cast<TimeUs>(vip_->handover_period().count()) * 1000;
  spdlog::info("handing the floating IPs over before leaving (at most {} ms)", limit_us / 1000);
  vip_->drain_for_shutdown();
  handover_deadline_us_ = io::monotonic_now_us() + limit_us;
  poll_handover();
}

void Agent::poll_handover() {
  if (stopped_) return;
  // The ask's own deadline is what remains of the handover's, so that a thread stuck in the
  // kernel cannot hold the stop past it.
  const TimeUs now_us = io::monotonic_now_us();
  const TimeUs left_us = handover_deadline_us_ > now_us ? handover_deadline_us_ - now_us : 0;
  const auto patience = std::min<std::chrono::milliseconds>(
      VipHost::kAskDeadline, std::chrono::milliseconds(left_us / 1000 + 1));
  vip_->handed_over(
      [this](bool handed_over) {
        if (stopped_) return;
        if (handed_over || io::monotonic_now_us() >= handover_deadline_us_) {
          if (!handed_over) spdlog::warn("handover not finished in time; leaving anyway");
          shutdown();
          return;
        }
        handover_timer_.expires_after(std::chrono::milliseconds(5));
        handover_timer_.async_wait([this](const asio::error_code& error) {
          if (!error) poll_handover();
        });
      },
      patience);
}

void Agent::on_packet(NodeId from, std::span<const std::uint8_t> bytes) {
  const std::uint64_t rejected_before = driver_->ring().stats().packets_rejected;
  driver_->on_packet(from, bytes);
  if (driver_->ring().stats().packets_rejected != rejected_before) ++undecodable_[from];
}

std::string Agent::describe_members(const std::vector<NodeId>& members) const {
  std::string text;
  for (const NodeId id : members) {
    const config::NodeConfig* node = options_.config.node_by_id(id);
    if (!text.empty()) text += ", ";
    text += std::to_string(id) + " " + (node ? node->name : "?");
  }
  return text;
}

void Agent::on_view(const ring::View& view) {
  const std::string members = describe_members(view.members);
  if (view.regular()) {
    spdlog::info("view regular {}: {} members [{}]", to_string(view.ring), view.members.size(),
                 members);
    sd_notifyf(0, "STATUS=ring %s, %zu members", to_string(view.ring).c_str(), view.members.size());
  } else {
    spdlog::info("view transitional {} from {}: [{}]", to_string(view.ring),
                 to_string(view.previous_ring), members);
  }
  control_->publish_view(view);
  if (vip_) vip_->on_view(view);
  if (volumes_) volumes_->on_view(view);
}

void Agent::on_group_view(const ring::GroupView& view) {
  spdlog::debug("group {}: [{}]", view.group, describe_members(view.members));
  control_->publish_group_view(view);
}

void Agent::on_group_message(const ring::GroupMessage& message,
                             const ring::DeliveredMessage& carrier) {
  control_->publish_message(message, carrier);
  if (vip_ && message.group == vip::kVipGroup) vip_->on_message(message.origin, message.payload);
  if (volumes_ && message.group == volume::kVolumeGroup) {
    volumes_->on_message(message.origin, message.payload);
  }
}

nlohmann::json Agent::status() {
  return build_status(StatusSources{options_.config, options_.self, driver_->ring(),
                                    driver_->joined_groups(), *transport_, undecodable_,
                                    io::monotonic_now_us(), started_us_});
}

Result<Ok> Agent::send(const std::string& group, const Bytes& payload, bool safe) {
  if (stopped_) return Error{"the agent is shutting down"};
  if (send_queue_full()) {
    return Error{"send queue full (" + std::to_string(driver_->ring().send_queue_length()) +
                 " messages waiting)"};
  }
  return driver_->send(group, payload, safe);
}

bool Agent::send_queue_full() const {
  return driver_->ring().send_queue_length() >= client_send_limit(driver_->ring().tunables());
}

Result<Ok> Agent::join(const std::string& group) {
  auto joined = driver_->join(group);
  if (joined.ok()) spdlog::info("joined group {} (a listener arrived)", group);
  return joined;
}

void Agent::leave(const std::string& group) {
  if (stopped_) return;
  if (vip_ && group == vip::kVipGroup) return;  // the floating IPs need it, listeners or not
  if (volumes_ && group == volume::kVolumeGroup) return;
  driver_->leave_group(group);
  spdlog::info("left group {} (its last listener went away)", group);
}

bool Agent::deferred_command(const std::string& op, const nlohmann::json& request, Reply reply) {
  if (op == "vip_status" || op == "drain" || op == "undrain") {
    if (!vip_) {
      reply(error_reply("this agent has no floating IPs ([vip] pools) configured"));
      return true;
    }
    return vip_->command(op, std::move(reply));
  }
  if (op.rfind("volume_", 0) != 0) return false;
  if (volumes_) {
    volumes_->command(op, request, std::move(reply));
  } else {
    reply(error_reply("this agent has no volumes ([[volume]] sections) configured"));
  }
  return true;
}

std::optional<nlohmann::json> Agent::command(const std::string& /*op*/,
                                             const nlohmann::json& /*request*/) {
  return std::nullopt;  // every op beyond the ring's is answered from another thread
}

void Agent::start_watchdog() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  watchdog_period_ = std::chrono::microseconds(usec / 2);
  spdlog::debug("systemd watchdog: pinging every {} ms", usec / 2000);
  on_watchdog();
}

void Agent::on_watchdog() {
  sd_notify(0, "WATCHDOG=1");
  watchdog_timer_.expires_after(watchdog_period_);
  watchdog_timer_.async_wait([this](const asio::error_code& error) {
    if (!error && !stopped_) on_watchdog();
  });
}

}  // namespace keel::agent
