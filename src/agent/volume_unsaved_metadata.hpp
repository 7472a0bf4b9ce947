// The journal a volume's agent keeps while its metadata may lag behind what the replica asked
// to persist, so that a restart does not come back from older metadata.
//
// The metadata persister retries a failed update every second (metadata_persister.hpp), and the
// updates after it wait in line. One of them may say that this copy dropped acknowledged writes
// (a failed flush, a primary giving way to its peer for a failing disk) or is outdated; an agent
// that stopped before they were written (a crash, a kill, a restart by the operator) would come
// back from the older metadata, claim UpToDate and might be promoted alone. So from the moment
// the agent sees a disk operation of the volume fail, or an update fail, until every update
// handed to the persister is written, it keeps all those updates (state, activity log, bitmap
// pages) in STATE_DIR/volume-NAME.metadata-unsaved, rewritten and synced before each new one is
// handed on (usually another disk than the volume's). An agent that starts and finds the journal
// applies it (volume::recover_unsaved_updates(): as if every update had been written, the
// activity log keeping every extent any of them named), writes the result into the metadata,
// and removes the journal.
//
// A rewrite of the journal that fails leaves the previous file in place: it still holds updates
// the replica may have relied on (a step-down's Inconsistent mark, journaled and then reported
// as such). It would roll the metadata back only once the metadata holds a later update, so the
// metadata worker removes it (before_metadata_write()) just before it writes the first update
// the file lacks, when every update the file holds is written already.
//
// Thread-safety: UnsavedMetadataJournal on the volume's thread, but before_metadata_write() on
// the metadata worker's; the functions on any one.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/volume/dirty_bitmap.hpp"
#include "core/volume/replica.hpp"
#include "core/volume/types.hpp"
#include "io/volume_metadata.hpp"

namespace keel::agent {

std::string unsaved_metadata_path(const std::string& state_dir, const std::string& volume);

// At start: if the journal is there, applies it to what `metadata` holds (`state`, `bitmap`,
// `extents`, loaded from it), writes the result into `metadata`, and removes the journal.
// Returns how many updates it applied; an error (the journal left in place) if it cannot.
Result<std::size_t> recover_unsaved_metadata(const std::string& path, const std::string& volume,
                                             io::VolumeMetadataFile& metadata,
                                             volume::PersistentState& state,
                                             volume::DirtyBitmap& bitmap,
                                             std::vector<std::uint64_t>& extents);

class UnsavedMetadataJournal {
 public:
  UnsavedMetadataJournal(std::string path, std::string volume, io::MetadataHeader header)
      : path_(std::move(path)), volume_(std::move(volume)), header_(std::move(header)) {}

  // An update about to be handed to the persister (in order, `id` increasing); journaled first
  // while active.
  void submitted(std::shared_ptr<const volume::UnsavedUpdate> update, std::uint64_t id);
  // On the metadata worker, before it writes update `id`: removes a journal left behind by a
  // failed rewrite that lacks this update. An error (the file cannot be removed): the update
  // must wait, or the journal applied at the next start would roll the metadata back.
  Result<Ok> before_metadata_write(std::uint64_t id);
  // The oldest update handed on is written: once none is left, the journal goes.
  void written();
  // A disk operation or an update failed (`why`): the journal is kept from now on.
  void activate(const std::string& why);
  bool active() const { return active_; }
  // Every update handed on and not yet written is in the journal on disk (synced), which the
  // next start applies (volume::Replica::on_journaled()).
  bool holds_pending() const { return active_ && current_ && !pending_.empty(); }
  // The persister stopped: updates not seen written are journaled for the next start.
  void stopping();

 private:
  void write_journal();

  std::string path_;
  std::string volume_;
  io::MetadataHeader header_;
  struct Pending {
    std::uint64_t id = 0;
    std::shared_ptr<const volume::UnsavedUpdate> update;
  };
  std::deque<Pending> pending_;
  bool active_ = false;   // the file may be there: every update is journaled
  bool current_ = false;  // the last write of the file succeeded
  bool warned_ = false;
  // The file on disk, shared with the metadata worker: the id of the last update it holds
  // (none: no file, or one without updates) and whether a rewrite failed since it was written.
  std::mutex file_mutex_;
  std::optional<std::uint64_t> file_through_;
  bool file_stale_ = false;
};

}  // namespace keel::agent
