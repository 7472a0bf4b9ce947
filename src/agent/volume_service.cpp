#include "agent/volume_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/control_protocol.hpp"

namespace keel::agent {

Result<std::unique_ptr<VolumeService>> VolumeService::open(asio::io_context& io,
                                                           const config::ClusterConfig& config,
                                                           NodeId self, const io::ClusterKey& key,
                                                           Broadcaster broadcast) {
  std::unique_ptr<VolumeService> service(new VolumeService(io, config, self, std::move(broadcast)));
  VolumeService* raw = service.get();
  VolumeRunner::Hooks hooks{
      [raw](const std::string& volume, volume::Generation generation) {
        const VolumeRunner* runner = raw->find(volume);
        raw->enqueue(volume::OutdateRecords::record_message(
            {volume, runner->peer(), generation, raw->self_}));
      },
      [raw](const std::string& volume, volume::Generation generation) {
        const VolumeRunner* runner = raw->find(volume);
        raw->enqueue(volume::OutdateRecords::clear_message(volume, runner->peer(), generation));
      }};
  for (const config::VolumeConfig& volume : config.volumes) {
    if (std::find(volume.nodes.begin(), volume.nodes.end(), self) == volume.nodes.end()) continue;
    auto runner = VolumeRunner::open(io, config, volume, self, key, hooks);
    if (!runner.ok()) return runner.error();
    service->runners_.emplace(volume.name, std::move(runner).value());
  }
  return service;
}

VolumeService::VolumeService(asio::io_context& io, const config::ClusterConfig& config, NodeId self,
                             Broadcaster broadcast)
    : io_(io),
      config_(config),
      self_(self),
      broadcast_(std::move(broadcast)),
      records_(self, config.nodes.size()),
      retry_timer_(io) {}

VolumeService::~VolumeService() { stop(); }

void VolumeService::start() {
  for (auto& [name, runner] : runners_) {
    runner->start();
    if (auto generation = runner->own_outdate_record()) {
      enqueue(volume::OutdateRecords::record_message({name, runner->peer(), *generation, self_}));
    }
  }
}

void VolumeService::stop() {
  if (stopped_) return;
  stopped_ = true;
  retry_timer_.cancel();
  for (auto& [name, runner] : runners_) runner->stop();
}

VolumeRunner* VolumeService::find(const std::string& name) {
  auto found = runners_.find(name);
  return found == runners_.end() ? nullptr : found->second.get();
}

void VolumeService::on_view(const ring::View& view) {
  if (!view.regular()) {
    records_.on_transitional_view();
    return;
  }
  members_ = view.members;
  for (auto& [name, runner] : runners_) {
    if (std::find(members_.begin(), members_.end(), runner->peer()) == members_.end()) {
      runner->on_peer_left();
    }
  }
  Bytes known = records_.on_regular_view(view.members);
  if (!known.empty()) enqueue(std::move(known));
}

void VolumeService::on_message(NodeId origin, std::span<const std::uint8_t> payload) {
  const auto delivered = records_.on_message(origin, payload);
  for (const volume::OutdateRecord& record : delivered.recorded_mine) {
    if (VolumeRunner* runner = find(record.volume)) {
      spdlog::info("volume {}: node {}'s copy is recorded outdated by a majority", record.volume,
                   record.node);
      runner->on_peer_outdated_recorded(record.generation);
    }
  }
  for (const std::string& volume : delivered.discard_mine) {
    VolumeRunner* runner = find(volume);
    if (!runner) continue;
    spdlog::warn("volume {}: the peer asked to discard this node's changes (split brain resolve)",
                 volume);
    if (auto done = runner->discard_local(); !done.ok()) {
      spdlog::error("volume {}: cannot discard local changes: {}", volume, done.error().message);
    }
  }
  for (const volume::OutdateRecord& record : delivered.about_me) {
    if (VolumeRunner* runner = find(record.volume)) runner->on_told_outdated(record.generation);
  }
}

void VolumeService::enqueue(Bytes payload) {
  pending_.push_back(std::move(payload));
  flush_broadcasts();
}

void VolumeService::flush_broadcasts() {
  while (!pending_.empty() && !stopped_) {
    if (!broadcast_(pending_.front()).ok()) {
      // The ring's send queue is full or it is between views: try again shortly.
      retry_timer_.expires_after(std::chrono::milliseconds(20));
      retry_timer_.async_wait([this](const asio::error_code& error) {
        if (!error) flush_broadcasts();
      });
      return;
    }
    pending_.pop_front();
  }
}

Result<Ok> VolumeService::promote(VolumeRunner& runner, bool force) {
  if (!records_.quorate()) {
    const std::string why = "this node sees " + std::to_string(members_.size()) + " of " +
                            std::to_string(config_.nodes.size()) +
                            " nodes, not a majority: the other side may be running the volume";
    if (!force) return Error{"refusing to promote volume " + runner.name() + ": " + why};
    spdlog::error("volume {}: FORCED promotion without quorum ({})", runner.name(), why);
  }
  if (auto record = records_.find(runner.name(), self_)) {
    runner.on_told_outdated(record->generation);
  }
  return runner.promote(force);
}

std::optional<nlohmann::json> VolumeService::command(const std::string& op,
                                                     const nlohmann::json& request) {
  if (op.rfind("volume_", 0) != 0) return std::nullopt;
  const std::string name = request.value("volume", "");
  if (op == "volume_status") {
    nlohmann::json reply = ok_reply();
    reply["volumes"] = status(name);
    return reply;
  }
  VolumeRunner* runner = find(name);
  if (!runner) {
    return error_reply("no volume named \"" + name + "\" on this node (this node holds " +
                       std::to_string(runners_.size()) + " volume(s); see keel volume status)");
  }
  const bool force = request.value("force", false);
  Result<Ok> done = Error{"unknown volume command " + op};
  if (op == "volume_promote") done = promote(*runner, force);
  if (op == "volume_demote") done = runner->demote();
  if (op == "volume_verify") done = runner->verify();
  if (op == "volume_resolve") {
    const std::string discard = request.value("discard", "");
    if (discard == "local") {
      done = runner->discard_local();
    } else if (discard == "peer") {
      // The peer's agent runs the discard when the ring delivers this to it.
      enqueue(volume::OutdateRecords::discard_message(name, runner->peer(), self_));
      done = Ok{};
    } else {
      done = Error{"volume_resolve needs discard = \"local\" or \"peer\""};
    }
  }
  return done.ok() ? ok_reply() : error_reply(done.error().message);
}

nlohmann::json VolumeService::status(const std::string& only) const {
  nlohmann::json volumes = nlohmann::json::array();
  for (const auto& [name, runner] : runners_) {
    if (!only.empty() && name != only) continue;
    nlohmann::json entry = runner->status();
    entry["quorum"] = records_.quorate();
    volumes.push_back(std::move(entry));
  }
  return volumes;
}

}  // namespace keel::agent
