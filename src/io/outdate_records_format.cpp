#include "io/outdate_records_format.hpp"

#include <optional>

#include "core/common/parse_number.hpp"

namespace keel::io {

namespace {

// Four fields separated by single spaces.
std::optional<volume::OutdateRecord> parse_line(std::string_view line) {
  std::string_view fields[4];
  for (std::size_t i = 0; i < 4; ++i) {
    const auto space = line.find(' ');
    // Three separators, none after the last field.
    if ((space == std::string_view::npos) != (i == 3)) return std::nullopt;
    fields[i] = line.substr(0, space);
    if (fields[i].empty()) return std::nullopt;
    line = i == 3 ? std::string_view{} : line.substr(space + 1);
  }
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

std::string format_outdate_records(const std::vector<volume::OutdateRecord>& records) {
  std::string text;
  for (const volume::OutdateRecord& record : records) {
    text += record.volume + " " + std::to_string(record.node) + " " +
            std::to_string(record.generation) + " " + std::to_string(record.recorder) + "\n";
  }
  return text;
}

Result<std::vector<volume::OutdateRecord>> parse_outdate_records(std::string_view text,
                                                                 const std::string& name) {
  std::vector<volume::OutdateRecord> records;
  for (int number = 1; !text.empty(); ++number) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (line.empty()) continue;  // keel writes none; a person's editor may
    auto record = parse_line(line);
    if (!record) {
      return Error{name + ":" + std::to_string(number) +
                   ": not \"VOLUME NODE GENERATION RECORDER\""};
    }
    records.push_back(std::move(*record));
  }
  return records;
}

}  // namespace keel::io
