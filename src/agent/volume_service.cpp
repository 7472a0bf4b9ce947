#include "agent/volume_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "agent/control_protocol.hpp"
#include "io/busy_poll.hpp"
#include "io/outdate_record_file.hpp"

namespace keel::agent {

static_assert(config::kMaxVolumeBusyPollUs == io::kMaxBusyPollUs,
              "the configuration admits what the loop runs");

namespace {

// How long a promotion asked for just after this node joined a majority waits for the members'
// outdate records (outdate_records.hpp, quorate()), and how often it looks.
constexpr auto kPromoteRecordsWait = std::chrono::seconds(1);
constexpr auto kPromoteRecordsPoll = std::chrono::milliseconds(5);

}  // namespace

Result<std::unique_ptr<VolumeService>> VolumeService::open(asio::io_context& io,
                                                           const config::ClusterConfig& config,
                                                           NodeId self, const io::ClusterKey& key,
                                                           Broadcaster broadcast) {
  std::unique_ptr<VolumeService> service(new VolumeService(io, config, self, std::move(broadcast)));
  VolumeService* raw = service.get();
  // The hooks run on a volume's thread: the ring is the agent's, so hand the record over to it.
  VolumeRunner::Hooks hooks{
      [raw](const std::string& volume, volume::Generation generation) {
        asio::post(raw->io_, [raw, volume, generation] {
          if (const Hosted* hosted = raw->find(volume)) {
            raw->enqueue(volume::OutdateRecords::record_message(
                {volume, hosted->runner->peer(), generation, raw->self_}));
          }
        });
      },
      [raw](const std::string& volume, volume::Generation generation) {
        asio::post(raw->io_, [raw, volume, generation] {
          if (const Hosted* hosted = raw->find(volume)) {
            raw->enqueue(
                volume::OutdateRecords::clear_message(volume, hosted->runner->peer(), generation));
          }
        });
      },
      [raw](const std::string& volume, volume::Generation generation) {
        asio::post(raw->io_, [raw, volume, generation] {
          raw->enqueue(volume::OutdateRecords::durable_message(volume, raw->self_, generation));
        });
      }};
  for (const config::VolumeConfig& volume : config.volumes) {
    if (std::find(volume.nodes.begin(), volume.nodes.end(), self) == volume.nodes.end()) continue;
    Hosted hosted;
    hosted.thread =
        std::make_unique<ServiceThread>(volume_thread_options(volume.name, volume.busy_poll_us));
    auto runner = VolumeRunner::open(hosted.thread->context(), config, volume, self, key, hooks);
    if (!runner.ok()) return runner.error();
    hosted.runner = std::move(runner).value();
    service->runners_.emplace(volume.name, std::move(hosted));
  }
  if (auto restored = service->restore_records(); !restored.ok()) return restored.error();
  return service;
}

Result<Ok> VolumeService::restore_records() {
  auto restored = io::read_outdate_records(config_.agent.state_dir);
  if (!restored.ok()) {
    // Starting without them could forget a record this node acknowledged as stored, which a
    // primary counted on: a copy it recorded as outdated could then be promoted.
    return Error{restored.error().message +
                 "; the agent will not start without the outdate records it kept. Repair the "
                 "file, or remove it to start without them (only if no primary is running "
                 "without its peer)"};
  }
  for (const volume::OutdateRecord& record : restored.value()) {
    const bool configured = std::any_of(
        config_.volumes.begin(), config_.volumes.end(),
        [&](const config::VolumeConfig& volume) { return volume.name == record.volume; });
    if (!configured) continue;  // a volume since removed from the configuration
    spdlog::info("volume {}: restored the record that node {}'s copy is outdated", record.volume,
                 record.node);
    records_.restore(record);
  }
  saved_records_ = records_.all();
  return Ok{};
}

void VolumeService::store_and_acknowledge(std::vector<volume::OutdateRecord> delivered) {
  std::optional<std::vector<volume::OutdateRecord>> snapshot;
  if (records_.all() != saved_records_) {
    saved_records_ = records_.all();
    snapshot.emplace();
    for (const auto& [key, record] : saved_records_) snapshot->push_back(record);
  }
  if (!snapshot && delivered.empty()) return;
  // Jobs run in order: a repeat that changed nothing is acknowledged once the write that first
  // held it is done.
  records_writer_.submit(
      [state_dir = config_.agent.state_dir, snapshot = std::move(snapshot)]() -> Result<Ok> {
        if (!snapshot) return Ok{};
        return io::write_outdate_records(state_dir, *snapshot);
      },
      [](const std::string& why, int attempt) {
        if (attempt == 1) {
          spdlog::error(
              "cannot keep the outdate records: {}; retrying every second (a primary that has lost "
              "its peer may wait for this node meanwhile)",
              why);
        }
      },
      [this, delivered = std::move(delivered)] {
        asio::post(io_, [this, delivered] {
          if (stopped_) return;
          for (const volume::OutdateRecord& record : delivered) {
            spdlog::debug("volume {}: node {}'s outdate record as of {:016x} is on disk here",
                          record.volume, record.node, record.generation);
          }
          if (!delivered.empty()) enqueue(volume::OutdateRecords::stored_message(delivered));
        });
      });
}

VolumeService::VolumeService(asio::io_context& io, const config::ClusterConfig& config, NodeId self,
                             Broadcaster broadcast)
    : io_(io),
      config_(config),
      self_(self),
      broadcast_(std::move(broadcast)),
      records_(self, config.nodes.size()),
      retry_timer_(io) {}

VolumeService::~VolumeService() {
  stop();
  // Each runner is destroyed before its thread (Hosted's order): the thread must be gone first.
  for (auto& [name, hosted] : runners_) hosted.thread->stop([] {});
}

void VolumeService::start() {
  for (auto& [name, hosted] : runners_) {
    VolumeRunner* runner = hosted.runner.get();
    hosted.thread->start();
    // Before the first ring event is posted to it, and so that its record is known at once.
    auto record = hosted.thread->call<Result<std::optional<volume::Generation>>>(
        [runner]() -> Result<std::optional<volume::Generation>> {
          runner->start();
          return runner->own_outdate_record();
        });
    if (!record.ok()) {
      spdlog::error("volume {}: {}", name, record.error().message);
      continue;
    }
    if (auto generation = record.value()) {
      enqueue(volume::OutdateRecords::record_message({name, runner->peer(), *generation, self_}));
    }
  }
}

void VolumeService::stop(std::chrono::milliseconds patience) {
  if (stopped_) return;
  stopped_ = true;
  retry_timer_.cancel();
  for (const auto& timer : promote_waits_) timer->cancel();
  promote_waits_.clear();
  // records_writer_ is joined by its destructor, after the agent has left the ring: a write stuck
  // on a failing state directory must not hold the leave up.
  for (auto& [name, hosted] : runners_) {
    VolumeRunner* runner = hosted.runner.get();
    hosted.thread->request_stop([runner] { runner->stop(); });
  }
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (auto& [name, hosted] : runners_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!hosted.thread->wait_stopped(std::max(left, std::chrono::milliseconds(0)))) {
      spdlog::error(
          "volume {}: not closed within {} ms (its disk may be stalled); going on "
          "without it, and the agent exits when it closes",
          name, patience.count());
    }
  }
}

VolumeService::Hosted* VolumeService::find(const std::string& name) {
  auto found = runners_.find(name);
  return found == runners_.end() ? nullptr : &found->second;
}

void VolumeService::on_runner(Hosted& hosted, std::function<Result<Ok>(VolumeRunner&)> work,
                              Reply reply) {
  if (stopped_) {
    reply(error_reply("the agent is shutting down"));
    return;
  }
  VolumeRunner* runner = hosted.runner.get();
  hosted.thread->ask<Result<Ok>>(
      io_, [runner, work = std::move(work)] { return work(*runner); },
      [reply = std::move(reply)](Result<Ok> done) {
        reply(done.ok() ? ok_reply() : error_reply(done.error().message));
      });
}

void VolumeService::on_view(const ring::View& view) {
  if (!view.regular()) {
    records_.on_transitional_view();
    return;
  }
  const std::vector<NodeId> before = std::exchange(members_, view.members);
  const auto holds = [](const std::vector<NodeId>& members, NodeId node) {
    return std::find(members.begin(), members.end(), node) != members.end();
  };
  for (auto& [name, hosted] : runners_) {
    VolumeRunner* runner = hosted.runner.get();
    if (holds(members_, runner->peer())) {
      hosted.thread->post([runner] { runner->on_peer_in_view(); });
    } else if (holds(before, runner->peer())) {
      // Only a departure drops the link. A node that has just started forms views of its own
      // before it merges with the others; the peer is missing from those because it has not
      // been seen yet, and a link that came up meanwhile (and may be resyncing) must stay.
      hosted.thread->post([runner] { runner->on_peer_left(); });
    }
  }
  for (Bytes& message : records_.on_regular_view(view.ring, view.members)) {
    enqueue(std::move(message));
  }
}

void VolumeService::on_message(NodeId origin, std::span<const std::uint8_t> payload) {
  auto delivered = records_.on_message(origin, payload);
  store_and_acknowledge(std::move(delivered.to_store));
  for (const volume::OutdateRecord& record : delivered.recorded_mine) {
    if (Hosted* hosted = find(record.volume)) {
      spdlog::info("volume {}: node {}'s copy is recorded outdated by a majority", record.volume,
                   record.node);
      VolumeRunner* runner = hosted->runner.get();
      hosted->thread->post([runner, generation = record.generation] {
        runner->on_peer_outdated_recorded(generation);
      });
    }
  }
  for (const std::string& volume : delivered.discard_mine) {
    Hosted* hosted = find(volume);
    if (!hosted) continue;
    spdlog::warn("volume {}: the peer asked to discard this node's changes (split brain resolve)",
                 volume);
    VolumeRunner* runner = hosted->runner.get();
    hosted->thread->post([runner, volume] {
      if (auto done = runner->discard_local(); !done.ok()) {
        spdlog::error("volume {}: cannot discard local changes: {}", volume, done.error().message);
      }
    });
  }
  for (const volume::OutdateRecord& record : delivered.repeated_mine) {
    Hosted* hosted = find(record.volume);
    if (!hosted || hosted->runner->peer() != record.node) continue;
    VolumeRunner* runner = hosted->runner.get();
    hosted->thread->post(
        [runner, generation = record.generation] { runner->on_own_record_repeated(generation); });
  }
  for (const volume::OutdateRecord& record : delivered.about_me) {
    if (Hosted* hosted = find(record.volume)) {
      VolumeRunner* runner = hosted->runner.get();
      hosted->thread->post(
          [runner, generation = record.generation] { runner->on_told_outdated(generation); });
    }
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

void VolumeService::promote(Hosted& hosted, bool force, Reply reply,
                            std::chrono::steady_clock::time_point wait_until) {
  if (stopped_) {
    reply(error_reply("the agent is shutting down"));
    return;
  }
  const VolumeRunner& runner = *hosted.runner;
  if (!records_.quorate()) {
    const bool majority = members_.size() * 2 > config_.nodes.size();
    if (majority && !force && std::chrono::steady_clock::now() < wait_until) {
      // The members' repeats come within a rotation of the token or two.
      auto timer = std::make_shared<asio::steady_timer>(io_, kPromoteRecordsPoll);
      promote_waits_.insert(timer);
      timer->async_wait([this, &hosted, force, reply = std::move(reply), wait_until,
                         timer](const asio::error_code& error) mutable {
        if (error) return;  // stopping
        promote_waits_.erase(timer);
        promote(hosted, force, std::move(reply), wait_until);
      });
      return;
    }
    const std::string why =
        majority ? "the outdate records of the nodes in its view have not all arrived (a "
                   "record among them may outdate this copy); try again in a moment. An agent of "
                   "a release before this one never says it has sent them all: upgrade every "
                   "node, the witness too"
                 : "this node sees " + std::to_string(members_.size()) + " of " +
                       std::to_string(config_.nodes.size()) +
                       " nodes, not a majority: the other side may be running the volume";
    if (!force) {
      reply(error_reply("refusing to promote volume " + runner.name() + ": " + why));
      return;
    }
    spdlog::error("volume {}: FORCED promotion without quorum ({})", runner.name(), why);
  }
  std::vector<volume::Generation> told;
  for (const volume::OutdateRecord& record : records_.about(runner.name(), self_)) {
    told.push_back(record.generation);
  }
  on_runner(
      hosted,
      [told, force](VolumeRunner& on_thread) {
        for (volume::Generation generation : told) on_thread.on_told_outdated(generation);
        return on_thread.promote(force);
      },
      std::move(reply));
}

void VolumeService::command(const std::string& op, const nlohmann::json& request, Reply reply) {
  const std::string name = request.value("volume", "");
  if (op == "volume_status") {
    status(name, std::move(reply));
    return;
  }
  Hosted* hosted = find(name);
  if (!hosted) {
    reply(error_reply("no volume named \"" + name + "\" on this node (this node holds " +
                      std::to_string(runners_.size()) + " volume(s); see keel volume status)"));
    return;
  }
  const bool force = request.value("force", false);
  if (op == "volume_promote") {
    promote(*hosted, force, std::move(reply),
            std::chrono::steady_clock::now() + kPromoteRecordsWait);
  } else if (op == "volume_demote") {
    on_runner(
        *hosted, [](VolumeRunner& r) { return r.demote(); }, std::move(reply));
  } else if (op == "volume_verify") {
    on_runner(
        *hosted, [](VolumeRunner& r) { return r.verify(); }, std::move(reply));
  } else if (op == "volume_resolve") {
    const std::string discard = request.value("discard", "");
    if (discard == "local") {
      on_runner(
          *hosted, [](VolumeRunner& r) { return r.discard_local(); }, std::move(reply));
    } else if (discard == "peer") {
      // The peer's agent runs the discard when the ring delivers this to it.
      enqueue(volume::OutdateRecords::discard_message(name, hosted->runner->peer(), self_));
      reply(ok_reply());
    } else {
      reply(error_reply("volume_resolve needs discard = \"local\" or \"peer\""));
    }
  } else {
    reply(error_reply("unknown volume command " + op));
  }
}

// Every volume is asked at once; the reply goes when the last has answered or missed its
// deadline, in the order of runners_.
void VolumeService::status(const std::string& only, Reply reply) {
  struct Gathered {
    nlohmann::json volumes = nlohmann::json::array();
    std::size_t waiting = 0;
    Reply reply;
  };
  auto gathered = std::make_shared<Gathered>();
  gathered->reply = std::move(reply);
  std::vector<Hosted*> asked;
  for (auto& [name, hosted] : runners_) {
    if (!only.empty() && name != only) continue;
    asked.push_back(&hosted);
    gathered->volumes.push_back(nullptr);
  }
  gathered->waiting = asked.size();
  const auto answer = [gathered] {
    nlohmann::json all = ok_reply();
    all["volumes"] = std::move(gathered->volumes);
    gathered->reply(all);
  };
  if (asked.empty()) {
    answer();
    return;
  }
  const bool quorum = records_.quorate();
  for (std::size_t index = 0; index < asked.size(); ++index) {
    const VolumeRunner* runner = asked[index]->runner.get();
    asked[index]->thread->ask<Result<nlohmann::json>>(
        io_, [runner]() -> Result<nlohmann::json> { return runner->status(); },
        [gathered, answer, index, quorum, name = runner->name()](Result<nlohmann::json> answered) {
          nlohmann::json entry =
              answered.ok() ? std::move(answered).value()
                            : nlohmann::json{{"name", name}, {"error", answered.error().message}};
          entry["quorum"] = quorum;
          gathered->volumes[index] = std::move(entry);
          if (--gathered->waiting == 0) answer();
        });
  }
}

}  // namespace keel::agent
