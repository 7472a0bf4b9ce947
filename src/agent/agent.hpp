// Agent: `keel agent`, one per host. Wires this host's ring to the world: the UDP transport
// (packets in and out), a RingDriver (the ring and process groups, their timer), the control
// socket (status, send, listen, vip_status, drain, undrain) and, when the config has [vip]
// pools, the floating IPs (VipService, a member of the keel.vip group from the start), and with
// [[volume]] sections the mirrored volumes (VolumeService, a member of keel.volume). Views are
// logged at info level with their members.
//
// start() binds the UDP socket and the control socket, then tells systemd READY=1; when systemd
// asks for a watchdog (WATCHDOG_USEC), WATCHDOG=1 is sent at half that period from the event
// loop, so a loop that hangs gets the agent killed and restarted. shutdown() leaves the ring (the
// leave packets go out before it returns, so the others re-form at once instead of after a token
// timeout), closes the control socket and the UDP socket; the io_context then runs out of work.
//
// Several agents may run in one process, each on its own io_context and thread (the tests do);
// nothing here is global except the log and the process umask during the control socket's bind.
// Thread-safety: none; all calls on the io_context's thread.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "agent/control_server.hpp"
#include "agent/ring_driver.hpp"
#include "agent/vip_host.hpp"
#include "agent/volume_service.hpp"
#include "config/config.hpp"
#include "io/boot_epoch.hpp"
#include "io/sealed_packet.hpp"
#include "io/udp_transport.hpp"

namespace keel::agent {

struct AgentOptions {
  config::ClusterConfig config;
  config::NodeConfig self;
  io::ClusterKey key{};
};

class Agent final : private RingEvents, private ControlHandler {
 public:
  Agent(asio::io_context& io, AgentOptions options);
  ~Agent() override;
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Binds the sockets and starts the ring; an error names what failed (nothing is left open).
  Result<Ok> start();
  // Leaves the ring and closes everything. Idempotent.
  void shutdown();
  // What SIGTERM asks for: with floating IPs, first hands this host's addresses to the others
  // (a drain: each new holder adds an address before this host deletes it), for at most
  // 2 s, then shutdown(). Called again while handing over: shutdown() at once.
  void request_shutdown();
  bool running() const { return started_ && !stopped_; }
  // Called once at the end of shutdown(), however it came: the owner stops waiting for signals.
  void set_on_stopped(std::function<void()> on_stopped) { on_stopped_ = std::move(on_stopped); }

 private:
  // RingEvents
  void on_view(const ring::View& view) override;
  void on_group_view(const ring::GroupView& view) override;
  void on_group_message(const ring::GroupMessage& message,
                        const ring::DeliveredMessage& carrier) override;
  // ControlHandler
  nlohmann::json status() override;
  Result<Ok> send(const std::string& group, const Bytes& payload, bool safe) override;
  bool send_queue_full() const override;
  Result<Ok> join(const std::string& group) override;
  void leave(const std::string& group) override;
  std::optional<nlohmann::json> command(const std::string& op,
                                        const nlohmann::json& request) override;
  bool deferred_command(const std::string& op, const nlohmann::json& request, Reply reply) override;

  Result<Ok> open_transport();
  void on_packet(NodeId from, std::span<const std::uint8_t> bytes);
  // A peer restarted: its new epoch becomes the replay floor of this host's next run.
  void record_peer_epoch(NodeId peer, std::uint64_t epoch);
  std::string describe_members(const std::vector<NodeId>& members) const;
  void start_watchdog();
  void poll_handover();
  void on_watchdog();

  asio::io_context& io_;
  AgentOptions options_;
  std::unique_ptr<io::UdpTransport> transport_;
  std::unique_ptr<RingDriver> driver_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<VipHost> vip_;                 // only with [vip] pools
  std::unique_ptr<VolumeService> volumes_;       // only with [[volume]] sections
  std::map<NodeId, std::uint64_t> undecodable_;  // per peer: opened, but the ring refused it
  io::PeerEpochs peer_epochs_;                   // as recorded in STATE_DIR/peer-epochs
  asio::steady_timer watchdog_timer_;
  asio::steady_timer handover_timer_;
  TimeUs handover_deadline_us_ = 0;
  bool handing_over_ = false;
  std::chrono::microseconds watchdog_period_{0};
  TimeUs started_us_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  std::function<void()> on_stopped_;
};

}  // namespace keel::agent
