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

void UnsavedMetadataJournal::submitted(std::shared_ptr<const volume::UnsavedUpdate> update) {
  pending_.push_back(std::move(update));
  if (active_) write_journal();
}

void UnsavedMetadataJournal::written() {
  if (!pending_.empty()) pending_.pop_front();
  if (!pending_.empty() || !active_) return;
  // While a file may be there it stays active, rewritten with every update handed on: a journal
  // older than the metadata would roll it back at the next start.
  if (auto removed = io::remove_file_durably(path_); !removed) {
    spdlog::error("volume {}: {}; journaling every metadata update until it can be removed",
                  volume_, removed.error().message);
    return;
  }
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
  for (const auto& update : pending_) updates.push_back(*update);
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const Bytes bytes = io::encode_unsaved_updates(header_, updates);
  Result<Ok> written = Ok{};
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    written = Error{"cannot create " + dir};
  } else {
    written = io::replace_file(path_, std::string(bytes.begin(), bytes.end()), true);
  }
  current_ = written.ok();
  if (!written) {
    // An older journal left in place would roll the metadata back at the next start: better
    // none (a full state directory can still unlink).
    const bool gone = io::remove_file_durably(path_).ok();
    if (!std::exchange(warned_, true)) {
      spdlog::error(
          "volume {}: cannot journal its metadata updates: {}; {}", volume_,
          written.error().message,
          gone ? "a restart before they are written would come back from older metadata"
               : "nor remove the journal there, which a restart would apply over newer metadata");
    }
    return;
  }
  warned_ = false;
}

}  // namespace keel::agent
