// VolumeRunner: one mirrored volume on this node. Wires the replication core
// (core/volume/replica.hpp) to the world:
//   Replica DiskWrite/Read             -> io::BlockFile on this thread (into the page cache; a
//                                         read the cache cannot serve, and FUA, go to its pool)
//   Replica DiskZero/Flush             -> io::BlockFile's thread pool
//   Replica Persist                    -> io::VolumeMetadataFile, on one worker thread, in order
//   Replica SendToPeer / ClosePeer     -> io::ReplicationLink (TCP to the other node)
//   Replica RecordPeerOutdated         -> the ring (VolumeService broadcasts it to keel.volume)
//   Replica Complete                   -> the NBD request waiting for it
//   NBD requests (io::NbdServer)       -> this BlockDevice: reads straight from the backing file
//                                         (the page cache first) while this node serves; writes,
//                                         zeroing and flushes through the Replica
// A steady_timer follows Replica::next_deadline() (resync pacing, verify).
//
// open() loads the metadata that `keel volume create` wrote; without it the volume is refused
// with the command to run. Thread-safety: none; everything on the io_context given to open(),
// which is the volume's own thread (agent/service_thread.hpp), never the ring's: writes into the
// page cache run on it and may wait on the kernel. The block file's and the metadata's workers
// post their completions back to it.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/metadata_persister.hpp"
#include "agent/volume_unsaved_metadata.hpp"
#include "config/config.hpp"
#include "core/common/result.hpp"
#include "core/volume/replica.hpp"
#include "io/block_device.hpp"
#include "io/block_file.hpp"
#include "io/nbd_server.hpp"
#include "io/replication_link.hpp"
#include "io/volume_metadata.hpp"

namespace keel::agent {

class VolumeRunner final : public io::BlockDevice {
 public:
  struct Hooks {
    // Record through the ring that the peer's copy is outdated as of `generation`.
    std::function<void(const std::string& volume, volume::Generation generation)> record_outdated;
    // The peer's copy is up to date again: withdraw the record.
    std::function<void(const std::string& volume, volume::Generation generation)> clear_outdated;
    // Told it is outdated as of `generation`, this copy is now marked so on its disk.
    std::function<void(const std::string& volume, volume::Generation generation)> outdated_durable;
  };

  static Result<std::unique_ptr<VolumeRunner>> open(asio::io_context& io,
                                                    const config::ClusterConfig& cluster,
                                                    const config::VolumeConfig& volume, NodeId self,
                                                    const io::ClusterKey& key, Hooks hooks);
  ~VolumeRunner() override;

  void start();
  void stop();
  const std::string& name() const { return config_.name; }
  NodeId peer() const { return peer_; }

  // The ring: the peer left this node's view (drop the link at once rather than wait for TCP).
  void on_peer_left();
  // The ring: the peer is in this node's view (reconnect now if the link is down).
  void on_peer_in_view();
  void on_peer_outdated_recorded(volume::Generation generation);
  void on_told_outdated(volume::Generation as_of);
  void on_own_record_repeated(volume::Generation generation);
  // The record this node's copy made of its peer, if its persisted state says there is one
  // (repeated at start: the agents that knew it may all have restarted).
  std::optional<volume::Generation> own_outdate_record() const;

  Result<Ok> promote(bool force);
  Result<Ok> demote();
  Result<Ok> discard_local();
  Result<Ok> verify();
  nlohmann::json status() const;

  // io::BlockDevice (the NBD export)
  std::uint64_t size_bytes() const override { return config_.size_bytes; }
  bool writable() const override { return true; }
  bool can_multi_conn() const override { return true; }
  std::string unavailable_reason() const override;
  int read_descriptor(std::uint64_t offset, std::uint32_t length) override;
  void read(std::uint64_t offset, std::uint32_t length, std::byte* into, Done done) override;
  void write(std::uint64_t offset, volume::Payload data, bool fua, Done done) override;
  void flush(Done done) override;
  void trim(std::uint64_t offset, std::uint32_t length, bool fua, Done done) override;
  void write_zeroes(std::uint64_t offset, std::uint32_t length, bool fua, Done done) override;

 private:
  VolumeRunner(asio::io_context& io, const config::VolumeConfig& volume, NodeId self, Hooks hooks);
  void run_actions();
  void execute(volume::DiskWrite& action);
  void execute(volume::Persist& action);
  void execute(volume::DiskRead& action);
  void complete(const volume::Complete& action);
  void arm_timer();
  volume::RequestId remember(Done done);
  // A zeroing request larger than the activity log takes, done piece by piece.
  struct ZeroPieces {
    std::uint64_t next = 0;  // where the next piece starts
    std::uint64_t end = 0;
    std::uint64_t piece_extents = 0;
    bool fua = false;
    Done done;
  };
  void zero_next_piece(std::shared_ptr<ZeroPieces> pieces);
  Done forget(volume::RequestId id);
  void note_resync(volume::LinkState link);
  // A disk operation failed: metadata updates are journaled until all are written.
  void disk_failed(int error);
  // Tells the replica when the journal holds every update not yet written.
  void report_journaled();
  void confirm_outdated_when_durable();
  void disk_done(volume::IoId io, int error);

  asio::io_context& io_;
  config::VolumeConfig config_;
  NodeId self_;
  NodeId peer_;
  std::string peer_name_;
  Hooks hooks_;
  std::unique_ptr<io::BlockFile> disk_;
  std::unique_ptr<io::VolumeMetadataFile> metadata_;
  MetadataPersister metadata_worker_{std::chrono::seconds(1)};
  std::unique_ptr<volume::Replica> replica_;
  std::unique_ptr<io::ReplicationLink> link_;
  std::unique_ptr<io::NbdServer> nbd_;
  // Requests waiting for their Complete, a slot each, reused through free_slots_ (no allocation
  // per request once warm). An id is the slot (low 32 bits) and the slot's use count (high), so
  // that a stale id does not match the slot's next request (checked by forget()).
  std::vector<Done> requests_;
  std::vector<std::uint32_t> request_uses_;  // by slot
  std::vector<std::uint32_t> free_slots_;
  asio::steady_timer timer_;
  TimeUs armed_for_ = kNever;  // the deadline timer_ waits for
  bool running_actions_ = false;
  bool stopped_ = false;
  std::uint64_t requests_failed_ = 0;
  std::string metadata_error_;  // why the metadata last failed to persist; empty once it did
  std::uint64_t newest_submitted_id_ = 0;  // the last Persist handed to the persister
  std::uint64_t newest_persisted_id_ = 0;  // the last Persist written
  // Told outdated: each generation, and the Persist after which the copy is marked on its disk.
  std::map<volume::Generation, std::uint64_t> outdated_to_confirm_;
  // Updates handed to metadata_worker_ and not yet written (volume_unsaved_metadata.hpp).
  std::unique_ptr<UnsavedMetadataJournal> journal_;
  TimeUs resync_started_us_ = 0;  // when the running resync began (0: none)
};

}  // namespace keel::agent
