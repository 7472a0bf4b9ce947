// Small value types shared by every core: node ids, protocol time and ring ids.
//
// Time inside a core is a number of microseconds handed in by the caller (the agent reads a
// monotonic clock; the simulator its own), never read from the system.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace keel {

using NodeId = std::uint32_t;
constexpr NodeId kNoNode = 0;              // never a configured node
constexpr NodeId kAllNodes = 0xffffffffu;  // "every other configured node" as a destination

using TimeUs = std::uint64_t;  // microseconds on the caller's monotonic clock
constexpr TimeUs kNever = ~TimeUs{0};

constexpr TimeUs ms_to_us(std::uint64_t ms) { return ms * 1000; }

// A ring is named by the representative that formed it and a sequence number larger than any ring
// sequence its members had seen; ordering is by sequence first.
struct RingId {
  std::uint64_t seq = 0;
  NodeId rep = kNoNode;

  bool valid() const { return rep != kNoNode; }
  auto operator<=>(const RingId&) const = default;
  bool operator==(const RingId&) const = default;
};

inline std::string to_string(RingId id) {
  return std::to_string(id.seq) + "." + std::to_string(id.rep);
}

}  // namespace keel
