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
// Thread-safety: UnsavedMetadataJournal on the volume's thread; the functions on any one.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
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

  // An update about to be handed to the persister (in order); journaled first while active.
  void submitted(std::shared_ptr<const volume::UnsavedUpdate> update);
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
  std::deque<std::shared_ptr<const volume::UnsavedUpdate>> pending_;
  bool active_ = false;   // the file may be there: every update is journaled
  bool current_ = false;  // the last write of the file succeeded
  bool warned_ = false;
};

}  // namespace keel::agent
