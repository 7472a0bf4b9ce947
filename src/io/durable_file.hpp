// Small files that must survive a power loss (the agent's state directory): written through a
// temporary file that is synced and renamed over the old one, the directory synced after.
//
// Thread-safety: functions; callers keep concurrent writers of one path apart.
#pragma once

#include <optional>
#include <string>

#include "core/common/result.hpp"

namespace keel::io {

// Writes `text` to `path` through PATH.new renamed over it; `sync`: the file's data and the rename
// are durable before it returns.
Result<Ok> replace_file(const std::string& path, const std::string& text, bool sync);
// The whole of a small state file; nullopt when there is none.
Result<std::optional<std::string>> read_state_file(const std::string& path);
// Removes `path` (missing is not an error) and syncs its directory, so that the removal is
// durable before it returns.
Result<Ok> remove_file_durably(const std::string& path);

}  // namespace keel::io
