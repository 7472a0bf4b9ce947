#include "agent/volume_unsaved_metadata.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "io/durable_file.hpp"
#include "io/unsaved_updates_format.hpp"
#include "io/volume_metadata_format.hpp"

namespace keel::agent {

std::string unsaved_metadata_path(const std::string& state_dir, const std::string& volume) {
  return state_dir + "/volume-" + volume + ".metadata-unsaved";
}

Result<std::size_t> recover_unsaved_metadata(const std::string& path, const std::string& volume,
                                             io::VolumeMetadataFile& metadata,
                                             volume::PersistentState& state,
                                             volume::DirtyBitmap& bitmap,
                                             std::vector<std::uint64_t>& extents) {
  std::error_code error;
  const bool present = std::filesystem::exists(path, error);
  if (error) return Error{"cannot look for " + path + ": " + error.message()};
  if (!present) return std::size_t{0};
  std::ifstream file(path, std::ios::binary);
  const Bytes bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (!file) return Error{"cannot read " + path};
  auto updates = io::decode_unsaved_updates(metadata.header(), bytes);
  if (!updates) {
    return Error{path + ": " + updates.error().message +
                 "; it holds metadata updates the last run could not write: look at the log of "
                 "that run before removing it"};
  }
  if (updates.value().empty()) {
    // Journaling had begun, but nothing was pending: the metadata is whole.
    if (auto removed = io::remove_file_durably(path); !removed) return removed.error();
    return std::size_t{0};
  }
  volume::recover_unsaved_updates(updates.value(), state, bitmap, extents, io::kMaxActivityExtents);
  // Every page: recovery may also have marked extents the activity log had no room for.
  std::vector<std::pair<std::uint64_t, io::BitmapPage>> pages(bitmap.page_count());
  for (std::uint64_t page = 0; page < pages.size(); ++page) {
    pages[page].first = page;
    bitmap.page_bytes(page, pages[page].second);
  }
  if (auto written = metadata.write_bitmap_pages(pages); !written) {
    return Error{"applying " + path + ": " + written.error().message};
  }
  if (auto written = metadata.write_state(state, extents); !written) {
    return Error{"applying " + path + ": " + written.error().message};
  }
  if (auto removed = io::remove_file_durably(path); !removed) return removed.error();
  spdlog::warn(
      "volume {}: applied {} metadata update(s) that the last run could not write before it "
      "stopped (kept in {}); this copy is {}",
      volume, updates.value().size(), path, volume::to_string(state.disk));
  return updates.value().size();
}

void UnsavedMetadataJournal::submitted(std::shared_ptr<const volume::UnsavedUpdate> update,
                                       std::uint64_t id) {
  pending_.push_back(Pending{id, std::move(update)});
  if (active_) write_journal();
}

Result<Ok> UnsavedMetadataJournal::before_metadata_write(std::uint64_t id) {
  std::lock_guard lock(file_mutex_);
  if (!file_stale_ || !file_through_ || id <= *file_through_) return Ok{};
  if (auto removed = io::remove_file_durably(path_); !removed) {
    return Error{"the journal " + path_ + " lacks this update and " + removed.error().message};
  }
  spdlog::warn(
      "volume {}: removed the journal whose rewrite failed, as its updates are all written; "
      "a restart before the later ones are written comes back from the metadata without them",
      volume_);
  file_through_.reset();
  return Ok{};
}

void UnsavedMetadataJournal::written() {
  if (!pending_.empty()) pending_.pop_front();
  if (!pending_.empty() || !active_) return;
  // While a file may be there it stays active, rewritten with every update handed on: a journal
  // older than the metadata would roll it back at the next start.
  std::lock_guard lock(file_mutex_);
  if (auto removed = io::remove_file_durably(path_); !removed) {
    spdlog::error("volume {}: {}; journaling every metadata update until it can be removed",
                  volume_, removed.error().message);
    return;
  }
  file_through_.reset();
  file_stale_ = false;
  active_ = false;
}

void UnsavedMetadataJournal::stopping() {
  if (pending_.empty()) return;
  active_ = true;
  spdlog::warn("volume {}: {} metadata update(s) not seen written at the stop; journaled in {}",
               volume_, pending_.size(), path_);
  write_journal();
}

void UnsavedMetadataJournal::activate(const std::string& why) {
  if (active_) return;
  active_ = true;
  spdlog::info("volume {}: {}: metadata updates are journaled in {} until all are written", volume_,
               why, path_);
  write_journal();
}

void UnsavedMetadataJournal::write_journal() {
  std::vector<volume::UnsavedUpdate> updates;
  for (const Pending& pending : pending_) updates.push_back(*pending.update);
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const Bytes bytes = io::encode_unsaved_updates(header_, updates);
  // Held while the file is replaced: the worker must not remove a file that is being renewed.
  std::lock_guard lock(file_mutex_);
  Result<Ok> written = Ok{};
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    written = Error{"cannot create " + dir};
  } else {
    written = io::replace_file(path_, std::string(bytes.begin(), bytes.end()), true);
  }
  current_ = written.ok();
  if (!written) {
    // The previous file stays: it may hold what the replica was told is safe (a step-down's
    // mark), and the worker removes it before the metadata passes it (before_metadata_write()).
    file_stale_ = true;
    if (!std::exchange(warned_, true)) {
      spdlog::error(
          "volume {}: cannot journal its metadata updates: {}; a restart before they are "
          "written comes back from older metadata{}",
          volume_, written.error().message,
          file_through_ ? " and the journal written before (kept until the metadata holds it)"
                        : "");
    }
    return;
  }
  file_through_ =
      pending_.empty() ? std::nullopt : std::optional<std::uint64_t>(pending_.back().id);
  file_stale_ = false;
  warned_ = false;
}

}  // namespace keel::agent
