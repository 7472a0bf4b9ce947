// libFuzzer target for the replication link's frame decoder (core/volume/peer_messages.hpp).
//
// The first input byte picks the volume size the decoder bounds offsets with (1 block to 4 GiB);
// the rest is a frame. decode() must never crash, read out of bounds or allocate beyond the
// frame's size. When it accepts a frame, the encoding being canonical means encode() gives back
// exactly those bytes, and the zero-copy path (decode_split() of the head and the payload tail)
// agrees with it. Seeds: fuzz/corpus/volume_wire/ (one valid frame of each message).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "core/volume/peer_messages.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "volume_wire_fuzz: %s\n", what);
  std::abort();
}

// The payload of a DataWrite or ResyncData, or none.
keel::volume::Payload payload_of(const keel::volume::PeerMessage& message) {
  if (const auto* write = std::get_if<keel::volume::DataWrite>(&message)) return write->data;
  if (const auto* data = std::get_if<keel::volume::ResyncData>(&message)) return data->data;
  return nullptr;
}

void check_split(const std::byte* frame, std::size_t size, std::uint64_t volume_bytes,
                 const keel::volume::Bytes& encoded) {
  using namespace keel::volume;
  auto header = decode_frame_header(frame, size);
  if (!header.ok()) fail("a decoded frame has a bad header");
  const std::uint8_t type = header.value().type;
  if (!has_payload(type)) return;
  const std::size_t head = kFrameHeaderBytes + payload_offset(type);
  if (head > size) fail("a decoded payload frame is shorter than its fixed part");
  auto tail = std::make_shared<Bytes>(frame + head, frame + size);
  auto split = decode_split(frame, head, tail, volume_bytes);
  if (!split.ok()) fail("decode_split() refuses what decode() accepts");
  if (encode(split.value()) != encoded) fail("decode_split() and decode() disagree");
  const Payload got = payload_of(split.value());
  if (!tail->empty() && got.get() != tail.get()) fail("decode_split() copied the payload");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace keel::volume;
  if (size == 0) return 0;
  const std::uint64_t volume_bytes = std::uint64_t{kBlockBytes} << (data[0] % 21);
  const auto* frame = reinterpret_cast<const std::byte*>(data + 1);
  const std::size_t frame_size = size - 1;
  auto decoded = decode(frame, frame_size, volume_bytes);
  if (!decoded.ok()) {
    if (decoded.error().message.empty()) fail("rejection without a reason");
    return 0;
  }
  const Bytes encoded = encode(decoded.value());
  if (encoded != Bytes(frame, frame + frame_size)) fail("encode(decode(x)) != x");
  const Bytes head = encode_header(decoded.value());
  if (head.size() > encoded.size() || !std::equal(head.begin(), head.end(), encoded.begin())) {
    fail("encode_header() is not a prefix of encode()");
  }
  check_split(frame, frame_size, volume_bytes, encoded);
  return 0;
}
