// Binary frames on the control socket (docs/control-protocol.md, "Binary frames"): the bulk
// alternative to one JSON line per message. A `send_stream` connection carries message frames
// from the client; a `listen` with "format":"binary" carries event frames to it. Both directions
// share one framing: a 4-byte big-endian length N, then N bytes: a type byte and the body.
//
// The parser takes bytes as they arrive and never reads past them: a frame is complete,
// incomplete (more bytes needed) or invalid (a length of 0 or above the bound, which no later
// bytes can fix). Decoders check every length they read. Encoders append to a std::string, the
// control session's output unit.
//
// Thread-safety: pure functions and constants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"
#include "core/ring/events.hpp"
#include "core/ring/groups.hpp"

namespace keel::agent {

constexpr std::size_t kFrameLengthBytes = 4;

enum class FrameType : std::uint8_t {
  // Client to agent, on a send_stream connection: the body is the message.
  agreed_message = 0x01,
  safe_message = 0x02,
  // Agent to client: one JSON object, exactly as the line protocol would send it (a view, a
  // group view, or a final error reply).
  json_event = 0x10,
  // Agent to client, on a binary listen stream: a delivered message (MessageFrame).
  message_event = 0x11,
};

// A message event's fixed fields before the payload: origin, ring seq, ring representative, seq,
// index, flags.
constexpr std::size_t kMessageEventHeaderBytes = 4 + 8 + 4 + 8 + 4 + 1;
constexpr std::uint8_t kMessageEventSafe = 0x01;  // the only flag; the others are zero

struct Frame {
  std::uint8_t type = 0;  // a FrameType, or an unknown value for the caller to refuse
  std::span<const std::uint8_t> body;
};

struct FrameParse {
  enum class Status { complete, incomplete, invalid };
  Status status = Status::incomplete;
  Frame frame;               // when complete
  std::size_t consumed = 0;  // when complete: the frame's bytes, length included
  std::string error;         // when invalid
};

// The frame at the start of `input`. `max_frame_bytes` bounds N (type byte and body).
FrameParse parse_frame(std::span<const std::uint8_t> input, std::size_t max_frame_bytes);

// Appends one frame.
void append_frame(std::string& out, FrameType type, std::span<const std::uint8_t> body);
void append_frame(std::string& out, FrameType type, std::string_view body);

// A delivered message as a message_event frame.
struct MessageEvent {
  NodeId origin = kNoNode;
  RingId ring;
  std::uint64_t seq = 0;
  std::uint32_t index = 0;
  bool safe = false;
  std::span<const std::uint8_t> payload;  // points into the decoded body
};

std::string message_event_frame(const ring::GroupMessage& message,
                                const ring::DeliveredMessage& carrier);
// The body of a message_event frame; nothing if it is too short or has unknown flags.
std::optional<MessageEvent> decode_message_event(std::span<const std::uint8_t> body);

}  // namespace keel::agent
