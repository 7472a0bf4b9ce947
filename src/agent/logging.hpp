// The agent's log: spdlog to stderr. Under systemd, stderr goes to the journal; each line then
// starts with a syslog priority prefix ("<6>") that journald turns into the entry's priority,
// and carries no timestamp of its own (the journal adds one).
//
// Thread-safety: call once, before other threads log.
#pragma once

#include <string>

#include "core/common/result.hpp"

namespace keel::agent {

// `level` is one of trace, debug, info, warn, error.
Result<Ok> setup_logging(const std::string& level);

// Whether stderr is connected to the systemd journal (JOURNAL_STREAM names it).
bool stderr_is_journal();

}  // namespace keel::agent
