// The simulated link's frames, read as io/replication_link.cpp reads them; volume_wire.hpp says
// why.
#include "sim/volume_wire.hpp"

#include <algorithm>
#include <string>
#include <variant>

namespace keel::sim {

namespace {

std::size_t size_of(const volume::Payload& payload) { return payload ? payload->size() : 0; }

}  // namespace

WireFrame to_wire(const volume::PeerMessage& message) {
  WireFrame frame{volume::encode_header(message), nullptr};
  if (const auto* write = std::get_if<volume::DataWrite>(&message)) frame.payload = write->data;
  if (const auto* data = std::get_if<volume::ResyncData>(&message)) frame.payload = data->data;
  return frame;
}

Result<volume::PeerMessage> from_wire(const WireFrame& frame, std::uint64_t volume_bytes) {
  const volume::Bytes& head = frame.head;
  auto header = volume::decode_frame_header(head.data(), head.size());
  if (!header.ok()) return header.error();
  const auto [type, body_bytes] = header.value();
  // What the real link would read as this frame's head and payload.
  const bool payload = volume::has_payload(type);
  const std::size_t fixed = payload ? volume::payload_offset(type) : body_bytes;
  const std::size_t sent_fixed = head.size() - volume::kFrameHeaderBytes;
  if (fixed != sent_fixed || body_bytes - fixed != size_of(frame.payload)) {
    return Error{"the header announces a body of " + std::to_string(body_bytes) +
                 " bytes with fixed fields of " + std::to_string(fixed) + "; sent " +
                 std::to_string(sent_fixed) + " bytes of fixed fields and a payload of " +
                 std::to_string(size_of(frame.payload))};
  }
  auto message = payload
                     ? volume::decode_split(head.data(), head.size(), frame.payload, volume_bytes)
                     : volume::decode(head.data(), head.size(), volume_bytes);
  if (!message.ok()) return message.error();
  const volume::Bytes again = volume::encode_header(message.value());
  if (again != head) {
    const auto first = std::mismatch(head.begin(), head.end(), again.begin(), again.end()).first;
    return Error{"decoded, it encodes to " + std::to_string(again.size()) + " bytes, not the " +
                 std::to_string(head.size()) + " sent (they differ from byte " +
                 std::to_string(first - head.begin()) + ")"};
  }
  return message;
}

}  // namespace keel::sim
