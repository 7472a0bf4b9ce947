// The text of the outdate-records file (outdate_record_file.hpp): one record per line,
// "VOLUME NODE GENERATION RECORDER", in decimal. Pure functions, fuzzed
// (fuzz/outdate_records_format_fuzz.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/outdate_records.hpp"

namespace keel::io {

std::string format_outdate_records(const std::vector<volume::OutdateRecord>& records);
// The records in `text`; a malformed line is an error "NAME:LINE: ..." naming `name`.
Result<std::vector<volume::OutdateRecord>> parse_outdate_records(std::string_view text,
                                                                 const std::string& name);

}  // namespace keel::io
