#include "io/outdate_record_file.hpp"

#include "io/durable_file.hpp"
#include "io/outdate_records_format.hpp"

namespace keel::io {

namespace {
std::string path_in(const std::string& state_dir) { return state_dir + "/" + kOutdateRecordsFile; }
}  // namespace

Result<std::vector<volume::OutdateRecord>> read_outdate_records(const std::string& state_dir) {
  const std::string path = path_in(state_dir);
  auto text = read_state_file(path);
  if (!text.ok()) return text.error();
  if (!text.value()) return std::vector<volume::OutdateRecord>{};
  return parse_outdate_records(*text.value(), path);
}

Result<Ok> write_outdate_records(const std::string& state_dir,
                                 const std::vector<volume::OutdateRecord>& records) {
  return replace_file(path_in(state_dir), format_outdate_records(records), true);
}

}  // namespace keel::io
