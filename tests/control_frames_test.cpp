// Tests for the control socket's binary frames: frames parse whole or not at all, arriving in any
// pieces; a length of 0 or above the bound is refused; message events round-trip and refuse
// short bodies and unknown flags.
#include "agent/control_frames.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keel::agent {
namespace {

using ::testing::HasSubstr;

std::span<const std::uint8_t> as_bytes(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string body_of(const Frame& frame) {
  return std::string(frame.body.begin(), frame.body.end());
}

TEST(ControlFrames, AppendedFrameHasBigEndianLengthTypeAndBody) {
  std::string out;
  append_frame(out, FrameType::agreed_message, std::string_view("hello"));
  EXPECT_EQ(out, std::string("\x00\x00\x00\x06\x01hello", 10));
}

TEST(ControlFrames, ParsesConsecutiveFrames) {
  std::string input;
  append_frame(input, FrameType::agreed_message, std::string_view("one"));
  append_frame(input, FrameType::safe_message, std::string_view(""));
  append_frame(input, FrameType::agreed_message, std::string_view("three"));
  std::vector<std::pair<std::uint8_t, std::string>> frames;
  for (auto rest = as_bytes(input);;) {
    const FrameParse parse = parse_frame(rest, 100);
    if (parse.status != FrameParse::Status::complete) {
      EXPECT_EQ(parse.status, FrameParse::Status::incomplete);
      EXPECT_TRUE(rest.empty());
      break;
    }
    frames.emplace_back(parse.frame.type, body_of(parse.frame));
    rest = rest.subspan(parse.consumed);
  }
  const std::vector<std::pair<std::uint8_t, std::string>> expected{
      {0x01, "one"}, {0x02, ""}, {0x01, "three"}};
  EXPECT_EQ(frames, expected);
}

TEST(ControlFrames, EveryProperPrefixIsIncomplete) {
  std::string input;
  append_frame(input, FrameType::agreed_message, std::string_view("a message"));
  for (std::size_t size = 0; size < input.size(); ++size) {
    EXPECT_EQ(parse_frame(as_bytes(input.substr(0, size)), 100).status,
              FrameParse::Status::incomplete)
        << size << " bytes";
  }
  const FrameParse whole = parse_frame(as_bytes(input), 100);
  ASSERT_EQ(whole.status, FrameParse::Status::complete);
  EXPECT_EQ(whole.consumed, input.size());
  EXPECT_EQ(body_of(whole.frame), "a message");
}

TEST(ControlFrames, LengthAtTheBoundIsTakenAboveItRefused) {
  std::string at_bound;
  append_frame(at_bound, FrameType::agreed_message, std::string(9, 'x'));
  EXPECT_EQ(parse_frame(as_bytes(at_bound), 10).status, FrameParse::Status::complete);
  const FrameParse above = parse_frame(as_bytes(at_bound), 9);
  EXPECT_EQ(above.status, FrameParse::Status::invalid);
  EXPECT_THAT(above.error, HasSubstr("frame length 10"));
  // Refused from the length alone, before the body arrives.
  EXPECT_EQ(parse_frame(as_bytes(std::string("\x7f\xff\xff\xff", 4)), 1u << 20).status,
            FrameParse::Status::invalid);
}

TEST(ControlFrames, ZeroLengthIsRefused) {
  const FrameParse parse = parse_frame(as_bytes(std::string(4, '\0')), 100);
  EXPECT_EQ(parse.status, FrameParse::Status::invalid);
  EXPECT_THAT(parse.error, HasSubstr("frame length 0"));
}

TEST(ControlFrames, MessageEventRoundTrips) {
  const ring::GroupMessage message{"orders", 3, true, Bytes{0x00, 0xff, 'h', 'i'}};
  const ring::DeliveredMessage carrier{3, RingId{1795699227257620, 2}, 77, 4, true, {}};
  const std::string frame = message_event_frame(message, carrier);
  const FrameParse parse = parse_frame(as_bytes(frame), 1u << 20);
  ASSERT_EQ(parse.status, FrameParse::Status::complete);
  EXPECT_EQ(parse.consumed, frame.size());
  EXPECT_EQ(parse.frame.type, static_cast<std::uint8_t>(FrameType::message_event));
  EXPECT_EQ(parse.frame.body.size(), kMessageEventHeaderBytes + 4);
  const auto event = decode_message_event(parse.frame.body);
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->origin, 3u);
  EXPECT_EQ(event->ring, (RingId{1795699227257620, 2}));
  EXPECT_EQ(event->seq, 77u);
  EXPECT_EQ(event->index, 4u);
  EXPECT_TRUE(event->safe);
  EXPECT_EQ(Bytes(event->payload.begin(), event->payload.end()), message.payload);
}

TEST(ControlFrames, MessageEventRefusesShortBodiesAndUnknownFlags) {
  const ring::GroupMessage message{"g", 1, false, Bytes{}};
  const ring::DeliveredMessage carrier{1, RingId{5, 1}, 9, 0, false, {}};
  const std::string frame = message_event_frame(message, carrier);
  const auto body = as_bytes(frame).subspan(kFrameLengthBytes + 1);
  ASSERT_EQ(body.size(), kMessageEventHeaderBytes);
  const auto empty = decode_message_event(body);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->payload.empty());
  EXPECT_FALSE(empty->safe);
  for (std::size_t size = 0; size < body.size(); ++size) {
    EXPECT_FALSE(decode_message_event(body.first(size)).has_value()) << size << " bytes";
  }
  std::string flagged(body.begin(), body.end());
  flagged.back() = 0x02;
  EXPECT_FALSE(decode_message_event(as_bytes(flagged)).has_value());
}

}  // namespace
}  // namespace keel::agent
