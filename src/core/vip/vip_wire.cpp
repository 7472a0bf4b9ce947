#include "core/vip/vip_wire.hpp"

#include <string>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"
#include "core/vip/pools.hpp"

namespace keel::vip {

namespace {

constexpr std::uint8_t kKindState = 1;
constexpr std::uint8_t kFlagDrained = 1;

static_assert(kMaxPools <= 0xffff && kMaxAddresses <= 0xffff);
static_assert(kMaxVipMessageBytes <= ring::kMaxApplicationMessageBytes);

bool strictly_increasing_below(const std::vector<std::uint16_t>& list, std::size_t limit) {
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] >= limit) return false;
    if (i > 0 && list[i - 1] >= list[i]) return false;
  }
  return true;
}

void put_list(ByteWriter& out, const std::vector<std::uint16_t>& list) {
  out.u16(static_cast<std::uint16_t>(list.size()));
  for (std::uint16_t v : list) out.u16(v);
}

// Reads a list of at most `limit` strictly increasing numbers below `limit`.
bool get_list(ByteReader& in, std::size_t limit, std::vector<std::uint16_t>& list) {
  const std::uint16_t count = in.u16();
  if (!in.ok() || count > limit || in.remaining() < 2u * count) return false;
  list.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) list.push_back(in.u16());
  return in.ok() && strictly_increasing_below(list, limit);
}

}  // namespace

Bytes encode_vip_state(const VipState& state) {
  KEEL_ASSERT(strictly_increasing_below(state.healthy_pools, kMaxPools));
  KEEL_ASSERT(strictly_increasing_below(state.held, kMaxAddresses));
  Bytes bytes;
  ByteWriter out(bytes);
  out.u8(kVipWireVersion);
  out.u8(kKindState);
  out.u64(state.view.seq);
  out.u32(state.view.rep);
  out.u64(state.config_digest);
  out.u64(state.seen);
  out.u8(state.drained ? kFlagDrained : 0);
  put_list(out, state.healthy_pools);
  put_list(out, state.held);
  KEEL_ASSERT(bytes.size() <= kMaxVipMessageBytes);
  return bytes;
}

Result<VipState> decode_vip_message(std::span<const std::uint8_t> bytes) {
  ByteReader in(bytes);
  const std::uint8_t version = in.u8();
  const std::uint8_t kind = in.u8();
  if (!in.ok()) return Error{"vip message: truncated header"};
  if (version != kVipWireVersion) {
    return Error{"vip message: unsupported version " + std::to_string(version)};
  }
  if (kind != kKindState) return Error{"vip message: unknown kind " + std::to_string(kind)};
  VipState state;
  state.view.seq = in.u64();
  state.view.rep = in.u32();
  state.config_digest = in.u64();
  state.seen = in.u64();
  const std::uint8_t flags = in.u8();
  if (!in.ok()) return Error{"vip state: truncated"};
  if ((flags & ~kFlagDrained) != 0) return Error{"vip state: unknown flags"};
  state.drained = (flags & kFlagDrained) != 0;
  if (!get_list(in, kMaxPools, state.healthy_pools)) return Error{"vip state: bad pool list"};
  if (!get_list(in, kMaxAddresses, state.held)) return Error{"vip state: bad address list"};
  if (!in.at_end()) return Error{"vip state: trailing bytes"};
  return state;
}

}  // namespace keel::vip
