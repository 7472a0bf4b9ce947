#include "io/boot_epoch.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sstream>
#include <utility>

#include "core/common/assert.hpp"
#include "core/common/parse_number.hpp"
#include "io/durable_file.hpp"
#include "io/errno_text.hpp"

namespace keel::io {

namespace {

// The recorded epoch, 0 when there is none yet.
Result<std::uint64_t> read_record(const std::string& path) {
  auto text = read_state_file(path);
  if (!text.ok()) return text.error();
  if (!text.value()) return std::uint64_t{0};
  std::string digits = std::move(*text.value());
  while (!digits.empty() && (digits.back() == '\n' || digits.back() == ' ')) digits.pop_back();
  std::uint64_t epoch = 0;
  if (!parse_number(std::string_view(digits), epoch)) {
    return Error{path + " does not hold a boot epoch (a decimal number); remove it if the " +
                 "wall clock is right"};
  }
  return epoch;
}

}  // namespace

Result<std::uint64_t> next_boot_epoch(const std::string& state_dir, std::uint64_t now_us) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{"cannot create state directory " + state_dir + ": " + errno_text(errno)};
  }
  const std::string path = state_dir + "/" + kBootEpochFile;
  auto recorded = read_record(path);
  if (!recorded) return recorded.error();
  const std::uint64_t epoch = std::max(now_us, recorded.value() + 1);
  if (auto written = replace_file(path, std::to_string(epoch) + "\n", true); !written) {
    return written.error();
  }
  return epoch;
}

Result<PeerEpochs> read_peer_epochs(const std::string& state_dir) {
  const std::string path = state_dir + "/" + kPeerEpochsFile;
  auto record = read_state_file(path);
  if (!record.ok()) return record.error();
  if (!record.value()) return PeerEpochs{};
  const std::string& lines = *record.value();
  // Written only with a peer's epoch in it, each line ending in a newline: an empty file or a last
  // line cut short is a write that did not reach the disk whole.
  const std::string remove = "; remove the file to start without replay floors";
  if (lines.empty()) return Error{path + " is empty, not \"NODE EPOCH\" lines" + remove};
  PeerEpochs epochs;
  std::istringstream stream(lines);
  std::string line;
  for (int number = 1; std::getline(stream, line); ++number) {
    const auto space = line.find(' ');
    NodeId node = kNoNode;
    std::uint64_t epoch = 0;
    const std::string_view text(line);
    if (space == std::string::npos || !parse_number(text.substr(0, space), node) ||
        !parse_number(text.substr(space + 1), epoch)) {
      return Error{path + ":" + std::to_string(number) + ": not \"NODE EPOCH\"" + remove};
    }
    if (stream.eof()) {
      return Error{path + ":" + std::to_string(number) + ": cut short (no newline)" + remove};
    }
    epochs[node] = epoch;
  }
  return epochs;
}

Result<Ok> write_peer_epochs(const std::string& state_dir, const PeerEpochs& epochs) {
  std::string text;
  for (const auto& [node, epoch] : epochs) {
    text += std::to_string(node) + " " + std::to_string(epoch) + "\n";
  }
  KEEL_ASSERT(!text.empty());  // an empty record would read as garbled
  return replace_file(state_dir + "/" + kPeerEpochsFile, text, true);
}

}  // namespace keel::io
