#include "io/outdate_record_file.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/durable_file.hpp"
#include "io/outdate_records_format.hpp"

namespace keel::io {

namespace {
std::string path_in(const std::string& state_dir) { return state_dir + "/" + kOutdateRecordsFile; }
}  // namespace

Result<std::vector<volume::OutdateRecord>> read_outdate_records(const std::string& state_dir) {
  const std::string path = path_in(state_dir);
  std::ifstream file(path);
  if (!file) {
    std::error_code missing;
    if (!std::filesystem::exists(path, missing) && !missing) {
      return std::vector<volume::OutdateRecord>{};
    }
    return Error{"cannot read " + path};
  }
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) return Error{"cannot read " + path};
  return parse_outdate_records(text.str(), path);
}

Result<Ok> write_outdate_records(const std::string& state_dir,
                                 const std::vector<volume::OutdateRecord>& records) {
  return replace_file(path_in(state_dir), format_outdate_records(records), true);
}

}  // namespace keel::io
