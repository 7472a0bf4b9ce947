// The encoding of the vip layer's state-exchange message, carried as a process-group message of
// the vip group (vip_node.hpp) inside ring messages.
//
// Layout (big-endian): u8 version (kVipWireVersion), u8 kind (1: state), then for a state:
//   u64 view ring seq, u32 view ring representative  -- the regular view it was sent in
//   u64 config digest                                -- config_digest() of the sender's pools
//   u64 seen                                         -- vip messages it had processed in that view
//   u8 flags                                         -- bit 0: drained; other bits must be zero
//   u16 count, count x u16 pool numbers              -- pools healthy on the sender
//   u16 count, count x u16 address numbers           -- addresses the sender holds
// Both lists are strictly increasing, pool numbers < kMaxPools, address numbers < kMaxAddresses.
// decode_vip_message() never reads out of bounds and rejects anything else (another version, an
// unknown kind, trailing bytes) with a reason; whatever it accepts encodes back to the same bytes.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::vip {

constexpr std::uint8_t kVipWireVersion = 1;

struct VipState {
  RingId view;
  std::uint64_t config_digest = 0;
  std::uint64_t seen = 0;
  bool drained = false;
  std::vector<std::uint16_t> healthy_pools;
  std::vector<std::uint16_t> held;
  bool operator==(const VipState&) const = default;
};

Bytes encode_vip_state(const VipState& state);
Result<VipState> decode_vip_message(std::span<const std::uint8_t> bytes);

// The largest encoded state (every pool healthy, every address held).
constexpr std::size_t kMaxVipMessageBytes = 2 + 12 + 8 + 8 + 1 + 2 + 2 * 256 + 2 + 2 * 4096;

}  // namespace keel::vip
