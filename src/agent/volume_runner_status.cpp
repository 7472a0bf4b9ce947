// What a volume's runner tells others about it: the status that `keel volume status` shows, and
// the outdate record this node's copy stands under, which the volume service keeps in the ring.
#include <fmt/format.h>

#include "agent/volume_runner.hpp"
#include "io/clock.hpp"

namespace keel::agent {

namespace {

std::string hex(std::uint64_t value) { return fmt::format("{:016x}", value); }

}  // namespace

nlohmann::json VolumeRunner::status() const {
  const volume::ReplicaStatus status = replica_->status();
  nlohmann::json peer{{"node", peer_}, {"name", peer_name_}};
  if (status.peer_role) peer["role"] = volume::to_string(*status.peer_role);
  if (status.peer_disk) peer["disk"] = volume::to_string(*status.peer_disk);
  nlohmann::json history = nlohmann::json::array();
  for (const volume::Generation generation : status.generations.history) {
    history.push_back(hex(generation));
  }
  const TimeUs now = io::monotonic_now_us();
  std::uint64_t rate = 0;
  if (resync_started_us_ != 0 && now > resync_started_us_) {
    rate = status.resync_done_bytes * 1'000'000 / (now - resync_started_us_);
  }
  const io::ReplicationLinkStats& link = link_->stats();
  const io::NbdServerStats& nbd = nbd_->stats();
  return {
      {"name", config_.name},
      {"role", volume::to_string(status.role)},
      {"serving", replica_->serves_io()},
      {"disk", volume::to_string(status.disk)},
      {"blank", replica_->persistent_state().blank},
      {"link", volume::to_string(status.link)},
      {"mode", volume::to_string(config_.mode)},
      {"size_bytes", config_.size_bytes},
      {"peer", peer},
      {"suspended", status.suspended},
      {"peer_outdated", status.peer_outdated},
      {"out_of_sync_bytes", status.out_of_sync_bytes},
      {"writes_in_flight", status.writes_in_flight},
      {"requests_failed", requests_failed_},
      {"metadata_error", metadata_error_},
      {"stepping_down", status.stepping_down},
      {"refused_reason", status.refused_reason},
      {"disk_error", status.disk_error},
      {"generations",
       {{"current", hex(status.generations.current)},
        {"bitmap", hex(status.generations.bitmap)},
        {"history", history}}},
      {"resync",
       {{"total_bytes", status.resync_total_bytes},
        {"done_bytes", status.resync_done_bytes},
        {"blocks", status.resynced_blocks},
        {"rate_bytes_s", rate}}},
      {"verify",
       {{"running", status.verify_running},
        {"done_bytes", status.verify_done_bytes},
        {"mismatched_blocks", status.verify_mismatched_blocks}}},
      {"replication",
       {{"connects", link.connects},
        {"auth_failures", link.auth_failures},
        {"bytes_sent", link.bytes_sent},
        {"bytes_received", link.bytes_received},
        {"malformed_frames", link.malformed}}},
      {"nbd",
       {{"export", config_.nbd_socket.empty() ? std::string("tcp") : config_.nbd_socket},
        {"connections", nbd_->connection_count()},
        {"bytes_read", nbd.bytes_read},
        {"bytes_written", nbd.bytes_written},
        {"protocol_errors", nbd.protocol_errors},
        {"error_replies", nbd.error_replies}}},
  };
}

std::optional<volume::Generation> VolumeRunner::own_outdate_record() const {
  const volume::PersistentState& state = replica_->persistent_state();
  if (!state.peer_outdated) return std::nullopt;
  return state.generations.current;
}

}  // namespace keel::agent
