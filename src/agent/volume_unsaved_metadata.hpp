// What a volume's agent does when its metadata cannot be written, so that a restart does not
// trust metadata older than what the copy last was.
//
// The metadata persister retries a failed update every second (metadata_persister.hpp). The
// update may say that this copy dropped acknowledged writes (a failed flush, a primary giving
// way to its peer for a failing disk) or is outdated; an agent that stops before it succeeds
// (a crash, a kill, a restart by the operator) would come back with the older state, claim
// UpToDate and might be promoted alone. So at the first failed attempt the agent leaves a note
// in its state directory (usually another disk than the volume's), STATE_DIR/volume-NAME.
// metadata-unsaved, synced, and removes it once an update is written. An agent that starts and
// finds the note distrusts its metadata (volume::distrust_unsaved_metadata(): Inconsistent,
// every block out of sync, unless it had recorded its peer outdated), writes that down, and
// removes the note.
//
// Thread-safety: UnsavedMetadataNote on the metadata worker only; the function before any.
#pragma once

#include <string>

#include "core/common/result.hpp"
#include "core/volume/dirty_bitmap.hpp"
#include "core/volume/types.hpp"
#include "io/volume_metadata.hpp"

namespace keel::agent {

std::string unsaved_metadata_note_path(const std::string& state_dir, const std::string& volume);

// At start: if the note is there, distrusts `state` and `bitmap` (loaded from `metadata`),
// writes them back, and removes the note. An error if they cannot be written (the note stays).
Result<Ok> distrust_metadata_if_noted(const std::string& note_path, const std::string& volume,
                                      io::VolumeMetadataFile& metadata,
                                      volume::PersistentState& state, volume::DirtyBitmap& bitmap);

class UnsavedMetadataNote {
 public:
  UnsavedMetadataNote(std::string path, std::string volume)
      : path_(std::move(path)), volume_(std::move(volume)) {}
  // An update failed (why): the note is written if it is not there yet.
  void update_failed(const std::string& why);
  // An update was written: the note goes.
  void update_written();

 private:
  std::string path_;
  std::string volume_;
  bool on_disk_ = false;
};

}  // namespace keel::agent
