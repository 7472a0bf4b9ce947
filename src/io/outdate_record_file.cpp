#include "io/outdate_record_file.hpp"

#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>

#include "core/common/parse_number.hpp"
#include "io/durable_file.hpp"

namespace keel::io {

namespace {

std::string path_in(const std::string& state_dir) { return state_dir + "/" + kOutdateRecordsFile; }

// "VOLUME NODE GENERATION RECORDER": four fields separated by single spaces.
std::optional<volume::OutdateRecord> parse_line(std::string_view line) {
  std::string_view fields[4];
  for (std::string_view& field : fields) {
    const auto space = line.find(' ');
    field = line.substr(0, space);
    line = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
    if (field.empty()) return std::nullopt;
  }
  if (!line.empty()) return std::nullopt;
  volume::OutdateRecord record;
  record.volume = std::string(fields[0]);
  if (!parse_number(fields[1], record.node) || !parse_number(fields[2], record.generation) ||
      !parse_number(fields[3], record.recorder) || record.node == kNoNode ||
      record.recorder == kNoNode) {
    return std::nullopt;
  }
  return record;
}

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
  std::vector<volume::OutdateRecord> records;
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    auto record = parse_line(line);
    if (!record) {
      return Error{path + ":" + std::to_string(number) +
                   ": not \"VOLUME NODE GENERATION RECORDER\""};
    }
    records.push_back(std::move(*record));
  }
  if (file.bad()) return Error{"cannot read " + path};
  return records;
}

Result<Ok> write_outdate_records(const std::string& state_dir,
                                 const std::vector<volume::OutdateRecord>& records) {
  std::string text;
  for (const volume::OutdateRecord& record : records) {
    text += record.volume + " " + std::to_string(record.node) + " " +
            std::to_string(record.generation) + " " + std::to_string(record.recorder) + "\n";
  }
  return replace_file(path_in(state_dir), text, true);
}

}  // namespace keel::io
