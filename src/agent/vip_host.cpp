#include "agent/vip_host.hpp"

#include <spdlog/spdlog.h>

#include <utility>

#include "agent/control_protocol.hpp"

namespace keel::agent {
namespace {

constexpr auto kRingRefusedRetry = std::chrono::milliseconds(20);

}  // namespace

Result<std::unique_ptr<VipHost>> VipHost::open(asio::io_context& io,
                                               const config::ClusterConfig& config, NodeId self,
                                               Broadcaster broadcast) {
  std::unique_ptr<VipHost> host(new VipHost(io, config, std::move(broadcast)));
  VipHost* raw = host.get();
  // Called on the service's thread: the ring is this loop's, so the payload is handed over here.
  auto service =
      VipService::open(raw->thread_.context(), config, self, [raw](const Bytes& payload) {
        asio::post(raw->io_, [raw, payload] { raw->enqueue(payload); });
        return Result<Ok>(Ok{});
      });
  if (!service) return service.error();
  host->service_ = std::move(service).value();
  return host;
}

VipHost::VipHost(asio::io_context& io, const config::ClusterConfig& config, Broadcaster broadcast)
    : io_(io),
      handover_period_(config.vip.handover_ms),
      broadcast_(std::move(broadcast)),
      retry_timer_(io),
      thread_(vip_thread_options()) {}

VipHost::~VipHost() {
  retry_timer_.cancel();
  VipService* service = service_.get();
  thread_.stop([service] {
    if (service) service->stop();
  });
}

Result<Ok> VipHost::start() {
  thread_.start();
  VipService* service = service_.get();
  return thread_.call<Result<Ok>>([service]() -> Result<Ok> {
    service->start();
    return Ok{};
  });
}

void VipHost::on_view(const ring::View& view) {
  VipService* service = service_.get();
  thread_.post([service, view] { service->on_view(view); });
}

void VipHost::on_message(NodeId origin, std::span<const std::uint8_t> payload) {
  VipService* service = service_.get();
  thread_.post([service, origin, bytes = Bytes(payload.begin(), payload.end())] {
    service->on_message(origin, bytes);
  });
}

bool VipHost::command(const std::string& op, Reply reply) {
  if (stopped_ && (op == "vip_status" || op == "drain" || op == "undrain")) {
    reply(error_reply("the agent is shutting down"));
    return true;
  }
  VipService* service = service_.get();
  if (op == "vip_status") {
    thread_.ask<Result<nlohmann::json>>(
        io_, [service]() -> Result<nlohmann::json> { return service->status(); },
        [reply = std::move(reply)](Result<nlohmann::json> status) {
          if (!status) {
            reply(error_reply(status.error().message));
            return;
          }
          nlohmann::json answer = ok_reply();
          answer["vip"] = std::move(status).value();
          reply(std::move(answer));
        },
        kAskDeadline);
    return true;
  }
  if (op != "drain" && op != "undrain") return false;
  const bool drain = op == "drain";
  thread_.ask<Result<Ok>>(
      io_, [service, drain] { return drain ? service->drain() : service->undrain(); },
      [reply = std::move(reply)](Result<Ok> done) {
        reply(done ? ok_reply() : error_reply(done.error().message));
      },
      kAskDeadline);
  return true;
}

void VipHost::drain_for_shutdown() {
  VipService* service = service_.get();
  thread_.post([service] { (void)service->drain(); });
}

void VipHost::handed_over(std::function<void(bool)> answer, std::chrono::milliseconds patience) {
  VipService* service = service_.get();
  thread_.ask<Result<bool>>(
      io_, [service]() -> Result<bool> { return service->handed_over(); },
      [answer = std::move(answer)](Result<bool> done) { answer(done && done.value()); }, patience);
}

void VipHost::stop(std::chrono::milliseconds patience) {
  if (stopped_) return;
  stopped_ = true;
  retry_timer_.cancel();
  VipService* service = service_.get();
  thread_.request_stop([service] { service->stop(); });
  if (!thread_.wait_stopped(patience)) {
    spdlog::error(
        "vip: the floating IPs' thread did not stop within {} ms (a change of the host's "
        "addresses may be waiting for the kernel); leaving the ring without it, so its "
        "addresses may still be here: the next start of the agent deletes them",
        patience.count());
  }
}

void VipHost::enqueue(Bytes payload) {
  if (stopped_) return;
  pending_.push_back(std::move(payload));
  if (pending_.size() == 1) flush_broadcasts();
}

void VipHost::flush_broadcasts() {
  while (!pending_.empty() && !stopped_) {
    if (!broadcast_(pending_.front())) {
      // The ring's send queue is full or it is between views: the states must still go out, in
      // order, so try again shortly.
      retry_timer_.expires_after(kRingRefusedRetry);
      retry_timer_.async_wait([this](const asio::error_code& error) {
        if (!error) flush_broadcasts();
      });
      return;
    }
    pending_.pop_front();
  }
}

}  // namespace keel::agent
