#include "agent/control_frames.hpp"

#include "core/common/assert.hpp"

namespace keel::agent {

namespace {

void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

void put_u64(std::string& out, std::uint64_t value) {
  put_u32(out, static_cast<std::uint32_t>(value >> 32));
  put_u32(out, static_cast<std::uint32_t>(value));
}

void put_header(std::string& out, FrameType type, std::size_t body_bytes) {
  KEEL_ASSERT(body_bytes < 0xffffffffu);
  put_u32(out, static_cast<std::uint32_t>(body_bytes + 1));
  out.push_back(static_cast<char>(type));
}

}  // namespace

FrameParse parse_frame(std::span<const std::uint8_t> input, std::size_t max_frame_bytes) {
  FrameParse parse;
  if (input.size() < kFrameLengthBytes) return parse;
  ByteReader reader(input);
  const std::uint32_t length = reader.u32();
  if (length == 0 || length > max_frame_bytes) {
    parse.status = FrameParse::Status::invalid;
    parse.error = "frame length " + std::to_string(length) + " is not between 1 and " +
                  std::to_string(max_frame_bytes);
    return parse;
  }
  if (reader.remaining() < length) return parse;
  parse.status = FrameParse::Status::complete;
  parse.frame.type = reader.u8();
  parse.frame.body = reader.bytes(length - 1);
  KEEL_ASSERT(reader.ok());
  parse.consumed = kFrameLengthBytes + length;
  return parse;
}

void append_frame(std::string& out, FrameType type, std::span<const std::uint8_t> body) {
  put_header(out, type, body.size());
  out.append(reinterpret_cast<const char*>(body.data()), body.size());
}

void append_frame(std::string& out, FrameType type, std::string_view body) {
  put_header(out, type, body.size());
  out.append(body);
}

std::string message_event_frame(const ring::GroupMessage& message,
                                const ring::DeliveredMessage& carrier) {
  std::string out;
  out.reserve(kFrameLengthBytes + 1 + kMessageEventHeaderBytes + message.payload.size());
  put_header(out, FrameType::message_event, kMessageEventHeaderBytes + message.payload.size());
  put_u32(out, message.origin);
  put_u64(out, carrier.ring.seq);
  put_u32(out, carrier.ring.rep);
  put_u64(out, carrier.seq);
  put_u32(out, carrier.index);
  out.push_back(static_cast<char>(message.safe ? kMessageEventSafe : 0));
  out.append(reinterpret_cast<const char*>(message.payload.data()), message.payload.size());
  return out;
}

std::optional<MessageEvent> decode_message_event(std::span<const std::uint8_t> body) {
  ByteReader reader(body);
  MessageEvent event;
  event.origin = reader.u32();
  event.ring.seq = reader.u64();
  event.ring.rep = reader.u32();
  event.seq = reader.u64();
  event.index = reader.u32();
  const std::uint8_t flags = reader.u8();
  if (!reader.ok() || (flags & ~kMessageEventSafe) != 0) return std::nullopt;
  event.safe = (flags & kMessageEventSafe) != 0;
  event.payload = reader.bytes(reader.remaining());
  return event;
}

}  // namespace keel::agent
