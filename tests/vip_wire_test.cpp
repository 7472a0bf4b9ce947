// The vip state message codec (src/core/vip/vip_wire.hpp): round trips and rejections.
#include "core/vip/vip_wire.hpp"

#include <gtest/gtest.h>

#include "core/vip/pools.hpp"

namespace keel::vip {
namespace {

VipState sample() {
  return VipState{RingId{77, 3}, 0x1122334455667788ull, 9, true, {0, 2}, {1, 5, 4095}};
}

TEST(VipWire, RoundTrips) {
  const VipState state = sample();
  const Bytes bytes = encode_vip_state(state);
  auto decoded = decode_vip_message(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), state);
  EXPECT_EQ(bytes[0], kVipWireVersion);
}

TEST(VipWire, LargestStateFitsItsBound) {
  VipState state;
  for (std::uint16_t p = 0; p < kMaxPools; ++p) state.healthy_pools.push_back(p);
  for (std::uint16_t a = 0; a < kMaxAddresses; ++a) state.held.push_back(a);
  const Bytes bytes = encode_vip_state(state);
  EXPECT_EQ(bytes.size(), kMaxVipMessageBytes);
  ASSERT_TRUE(decode_vip_message(bytes).ok());
}

TEST(VipWire, EveryTruncationIsRejected) {
  const Bytes bytes = encode_vip_state(sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_vip_message({bytes.data(), n}).ok()) << n;
  }
}

TEST(VipWire, RejectsTrailingBytesOtherVersionsAndKinds) {
  Bytes bytes = encode_vip_state(sample());
  Bytes longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_vip_message(longer).ok());
  Bytes version = bytes;
  version[0] = 2;
  EXPECT_NE(decode_vip_message(version).error().message.find("version"), std::string::npos);
  Bytes kind = bytes;
  kind[1] = 7;
  EXPECT_NE(decode_vip_message(kind).error().message.find("kind"), std::string::npos);
}

TEST(VipWire, RejectsUnknownFlags) {
  Bytes bytes = encode_vip_state(sample());
  bytes[2 + 12 + 8 + 8] = 0x03;  // the flags byte
  EXPECT_FALSE(decode_vip_message(bytes).ok());
}

TEST(VipWire, RejectsUnsortedDuplicateAndOutOfRangeLists) {
  const std::size_t lists = 2 + 12 + 8 + 8 + 1;
  VipState one;
  one.held = {4, 5};
  Bytes bytes = encode_vip_state(one);
  // held list: u16 count at lists + 2 (after the empty pool list), then 4, 5.
  Bytes swapped = bytes;
  std::swap(swapped[lists + 5], swapped[lists + 7]);  // 5, 4
  EXPECT_FALSE(decode_vip_message(swapped).ok());
  Bytes duplicate = bytes;
  duplicate[lists + 7] = 4;  // 4, 4
  EXPECT_FALSE(decode_vip_message(duplicate).ok());
  Bytes range = bytes;
  range[lists + 6] = 0x10;  // 0x1005 >= kMaxAddresses
  EXPECT_FALSE(decode_vip_message(range).ok());
  Bytes count = bytes;
  count[lists] = 0x02;  // 512 pools claimed
  EXPECT_FALSE(decode_vip_message(count).ok());
}

}  // namespace
}  // namespace keel::vip
