// VolumeService: this node's mirrored volumes ([[volume]] sections) and its share of the cluster's
// outdate records (core/volume/outdate_records.hpp).
//
// Every agent of a cluster with volumes joins the keel.volume group, whether or not it holds a
// copy: the records must be known by a majority, which the other hosts make. For each volume this
// node holds, a VolumeRunner serves it. The ring's side:
//   a regular view            -> quorum or not; what this node knows is broadcast again; a peer
//                                that left the view has its replication link dropped at once
//   a record delivered        -> written to the state directory, then acknowledged (Stored);
//                                when it names this node: its copy is marked Outdated
//   Stored / Durable          -> when this node's record now counts (a majority without the
//                                outdated node has it on disk, or that node marked its copy):
//                                the runner may acknowledge writes without its peer
// Commands (the control socket): volume_status, volume_promote (refused without quorum unless
// forced; just after this node joined a majority it waits, briefly, for the members' records),
// volume_demote, volume_verify, volume_resolve.
//
// Each runner lives on its own ServiceThread (agent/service_thread.hpp): ring events are posted to
// it; commands are asked of it and answered when it replies (or with an error after a deadline),
// so the agent's thread, which carries the ring, never waits on a volume's disk; the runner's
// hooks post back here.
//
// Thread-safety: the service itself runs on the agent's io_context thread only; the records file
// is written on records_writer_'s thread, which posts back to it.
#pragma once

#include <asio.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>

#include "agent/metadata_persister.hpp"
#include "agent/service_thread.hpp"
#include "agent/volume_runner.hpp"
#include "config/config.hpp"
#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/ring/events.hpp"
#include "core/volume/outdate_records.hpp"

namespace keel::agent {

class VolumeService {
 public:
  // Sends a payload to the keel.volume group with safe delivery; an error when the ring refuses.
  using Broadcaster = std::function<Result<Ok>(const Bytes& payload)>;

  static Result<std::unique_ptr<VolumeService>> open(asio::io_context& io,
                                                     const config::ClusterConfig& config,
                                                     NodeId self, const io::ClusterKey& key,
                                                     Broadcaster broadcast);
  ~VolumeService();
  VolumeService(const VolumeService&) = delete;
  VolumeService& operator=(const VolumeService&) = delete;

  void start();
  // Closes every volume (its export, link and metadata worker) on its thread, waiting at most
  // `patience` in all: a volume whose disk stalls is logged and left to finish on its own, so
  // that the agent can leave the ring on time. The destructor waits for every thread.
  void stop(std::chrono::milliseconds patience = kStopPatience);
  static constexpr std::chrono::milliseconds kStopPatience{5000};
  void on_view(const ring::View& view);
  void on_message(NodeId origin, std::span<const std::uint8_t> payload);
  using Reply = std::function<void(const nlohmann::json& reply)>;
  // A volume_* control request: `reply` is called once, on the agent's thread, when the volume
  // threads concerned have answered or their deadline passed.
  void command(const std::string& op, const nlohmann::json& request, Reply reply);

 private:
  VolumeService(asio::io_context& io, const config::ClusterConfig& config, NodeId self,
                Broadcaster broadcast);
  // One volume this node holds: the runner and the thread it lives on.
  struct Hosted {
    std::unique_ptr<ServiceThread> thread;
    std::unique_ptr<VolumeRunner> runner;
  };

  Hosted* find(const std::string& name);
  // Runs `work` with the runner on its thread and replies with its outcome (ServiceThread::ask).
  void on_runner(Hosted& hosted, std::function<Result<Ok>(VolumeRunner&)> work, Reply reply);
  void enqueue(Bytes payload);
  void flush_broadcasts();
  void status(const std::string& only, Reply reply);
  void promote(Hosted& hosted, bool force, Reply reply,
               std::chrono::steady_clock::time_point wait_until);
  // Reads the records kept in the state directory into records_.
  Result<Ok> restore_records();
  // Hands the records to records_writer_ when they differ from what it last had, and sends a
  // Stored message for each of `delivered` once they are on disk (outdate_records.hpp).
  void store_and_acknowledge(std::vector<volume::OutdateRecord> delivered);

  asio::io_context& io_;
  const config::ClusterConfig& config_;
  NodeId self_;
  Broadcaster broadcast_;
  volume::OutdateRecords records_;
  // What records_writer_ was last given, and the thread that writes it to the state directory
  // (an fsync on the ring's thread could hold the token) before this node says it has them.
  volume::OutdateRecords::Map saved_records_;
  MetadataPersister records_writer_{std::chrono::seconds(1)};
  std::map<std::string, Hosted> runners_;
  std::deque<Bytes> pending_;
  asio::steady_timer retry_timer_;
  // Promotions waiting for the records of the majority this node has just joined.
  std::set<std::shared_ptr<asio::steady_timer>> promote_waits_;
  std::vector<NodeId> members_;
  bool stopped_ = false;
};

}  // namespace keel::agent
