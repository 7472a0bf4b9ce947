// The outdate records an agent knows (core/volume/outdate_records.hpp), kept in its state
// directory so that they outlive a restart of the agent.
//
// One record per line, "VOLUME NODE GENERATION RECORDER", replaced as a whole (durable_file.hpp).
// Restored records are repeated to the cluster after the next view, as if just learnt; a record
// restored after it was withdrawn elsewhere is handled as any record that outlives its withdrawal
// (docs/volume.md).
//
// Thread-safety: functions; the caller keeps writers of one state directory apart.
#pragma once

#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/outdate_records.hpp"

namespace keel::io {

inline constexpr const char* kOutdateRecordsFile = "outdate-records";

// The records in STATE_DIR's file; none when there is no file. An unreadable or malformed file is
// an error naming the line.
Result<std::vector<volume::OutdateRecord>> read_outdate_records(const std::string& state_dir);
// Replaces the file with `records`, durably (synced before it returns).
Result<Ok> write_outdate_records(const std::string& state_dir,
                                 const std::vector<volume::OutdateRecord>& records);

}  // namespace keel::io
