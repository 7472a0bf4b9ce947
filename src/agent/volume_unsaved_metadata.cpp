#include "agent/volume_unsaved_metadata.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/volume/replica.hpp"
#include "io/durable_file.hpp"

namespace keel::agent {

std::string unsaved_metadata_note_path(const std::string& state_dir, const std::string& volume) {
  return state_dir + "/volume-" + volume + ".metadata-unsaved";
}

Result<Ok> distrust_metadata_if_noted(const std::string& note_path, const std::string& volume,
                                      io::VolumeMetadataFile& metadata,
                                      volume::PersistentState& state, volume::DirtyBitmap& bitmap) {
  std::error_code error;
  if (!std::filesystem::exists(note_path, error)) return Ok{};
  if (volume::distrust_unsaved_metadata(state, bitmap)) {
    spdlog::error(
        "volume {}: an update of its metadata was failing when the agent last stopped ({} is "
        "there): the metadata may be older than this copy's last state, so the copy is taken as "
        "Inconsistent with every block out of sync; it resyncs in full from its peer, or is "
        "promoted only with `keel volume promote --force`",
        volume, note_path);
    std::vector<std::pair<std::uint64_t, io::BitmapPage>> pages(bitmap.page_count());
    for (std::uint64_t page = 0; page < pages.size(); ++page) {
      pages[page].first = page;
      bitmap.page_bytes(page, pages[page].second);
    }
    if (auto written = metadata.write_bitmap_pages(pages); !written) {
      return Error{"cannot write the distrusted bitmap: " + written.error().message};
    }
    if (auto written = metadata.write_state(state, metadata.activity_extents()); !written) {
      return Error{"cannot write the distrusted state: " + written.error().message};
    }
  } else {
    spdlog::warn(
        "volume {}: an update of its metadata was failing when the agent last stopped ({} is "
        "there); the copy keeps its state (it is not UpToDate, or it recorded its peer outdated)",
        volume, note_path);
  }
  if (auto removed = io::remove_file_durably(note_path); !removed) {
    return Error{removed.error().message};
  }
  return Ok{};
}

void UnsavedMetadataNote::update_failed(const std::string& why) {
  if (on_disk_) return;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    spdlog::error("volume {}: cannot create {} for the note of a failing metadata update", volume_,
                  dir);
    return;
  }
  if (auto written = io::replace_file(path_, why + "\n", true); !written) {
    spdlog::error(
        "volume {}: cannot note the failing metadata update in {} either: {}; a restart before "
        "the update is written would trust the older metadata",
        volume_, path_, written.error().message);
    return;
  }
  on_disk_ = true;
}

void UnsavedMetadataNote::update_written() {
  if (!on_disk_) return;
  if (auto removed = io::remove_file_durably(path_); !removed) {
    spdlog::warn("volume {}: {}; the next start will take this copy as Inconsistent", volume_,
                 removed.error().message);
    return;
  }
  on_disk_ = false;
}

}  // namespace keel::agent
