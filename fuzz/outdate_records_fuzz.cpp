// Fuzzes the keel.volume group's messages as OutdateRecords takes them from the ring: a sequence
// of messages from any node, in a view chosen by the input. It must never crash, and what it
// reports as this node's records or records about this node must name this node, and it is never
// quorate in a view without a majority. Seeds:
// fuzz/corpus/outdate_records/ (each input: a view byte, then per message an origin byte, a
// length byte and that many bytes).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/volume/outdate_records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using keel::volume::OutdateRecords;
  constexpr keel::NodeId kSelf = 1;
  if (size < 1) return 0;
  OutdateRecords records(kSelf, 3);
  std::vector<keel::NodeId> members{kSelf};
  if ((data[0] & 1) != 0) members.push_back(2);
  if ((data[0] & 2) != 0) members.push_back(3);
  records.on_regular_view(keel::RingId{7, kSelf}, members);
  std::size_t at = 1;
  while (at + 2 <= size) {
    const keel::NodeId origin = 1 + data[at] % 3;
    const std::size_t length = std::min<std::size_t>(data[at + 1], size - at - 2);
    at += 2;
    const auto delivered = records.on_message(origin, {data + at, length});
    at += length;
    for (const auto& record : delivered.recorded_mine) {
      if (record.recorder != kSelf) std::abort();
    }
    for (const auto& record : delivered.about_me) {
      if (record.node != kSelf) std::abort();
    }
    if (records.quorate() && members.size() < 2) std::abort();  // never without a majority
  }
  return 0;
}
