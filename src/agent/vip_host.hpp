// VipHost: the floating IPs (VipService) on a thread of their own, as the agent's loop sees them.
//
// VipService changes the host's addresses through netlink and nftables. Those calls wait for the
// kernel's network configuration lock (rtnl) while anything else on the host holds it: another
// daemon reconfiguring interfaces, a container runtime creating them by the hundred. On the
// agent's loop such a wait would hold up the ring's token, and one past the token timeout would
// cost a view change, which moves addresses again. So the service runs on a ServiceThread
// (agent/service_thread.hpp) at the agent's real-time priority, and this class is its face on the
// agent's loop:
//   - ring events (views, keel.vip messages) are posted to it, in the order they were delivered;
//   - its broadcasts come back to this loop, queued in order and handed to the ring, again after
//     20 ms while the ring refuses them (send queue full, between views);
//   - control requests (vip_status, drain, undrain) are asked of it and answered when it replies,
//     or with an error once a deadline passes;
//   - stop() waits for it for a bounded time: a thread stuck in the kernel must not keep the agent
//     from leaving the ring.
//
// Thread-safety: every member function on the agent's io_context thread.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "agent/service_thread.hpp"
#include "agent/vip_service.hpp"
#include "config/config.hpp"
#include "core/common/result.hpp"
#include "core/ring/events.hpp"

namespace keel::agent {

class VipHost {
 public:
  using Broadcaster = VipService::Broadcaster;
  using Reply = std::function<void(nlohmann::json)>;

  // Opens the service (VipService::open(): interfaces checked, leftovers adopted or deleted) on
  // the caller's thread, before its own thread runs. `broadcast` is called on `io`'s thread.
  static Result<std::unique_ptr<VipHost>> open(asio::io_context& io,
                                               const config::ClusterConfig& config, NodeId self,
                                               Broadcaster broadcast);
  ~VipHost();
  VipHost(const VipHost&) = delete;
  VipHost& operator=(const VipHost&) = delete;

  // Starts the thread and the service's health checks.
  Result<Ok> start();
  void on_view(const ring::View& view);
  void on_message(NodeId origin, std::span<const std::uint8_t> payload);
  // vip_status, drain or undrain; false for any other op.
  bool command(const std::string& op, Reply reply);
  // Drains for a shutdown, then calls `answer` with whether the handover is done, as often as
  // asked by handed_over(); an answer not back within `patience` counts as not done.
  void drain_for_shutdown();
  void handed_over(std::function<void(bool)> answer,
                   std::chrono::milliseconds patience = kAskDeadline);
  std::chrono::milliseconds handover_period() const { return handover_period_; }
  // Deletes the held addresses and stops the service, waiting up to `patience` for its thread.
  void stop(std::chrono::milliseconds patience = std::chrono::milliseconds(2000));

  // Runs `work` on the service's thread (tests: to hold it up as a stalled kernel would).
  void post_to_service(std::function<void()> work) { thread_.post(std::move(work)); }

  static constexpr std::chrono::milliseconds kAskDeadline{2000};

 private:
  VipHost(asio::io_context& io, const config::ClusterConfig& config, Broadcaster broadcast);
  void enqueue(Bytes payload);
  void flush_broadcasts();

  asio::io_context& io_;
  std::chrono::milliseconds handover_period_;
  Broadcaster broadcast_;
  std::deque<Bytes> pending_;  // the service's broadcasts the ring has not taken yet
  asio::steady_timer retry_timer_;
  bool stopped_ = false;
  // Declared before the service, which lives on it: the service is destroyed first, after the
  // thread has been stopped and joined (~VipHost), while the thread's io_context still exists.
  ServiceThread thread_;
  std::unique_ptr<VipService> service_;
};

}  // namespace keel::agent
