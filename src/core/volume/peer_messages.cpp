// Encoding and decoding of the replication link's frames; peer_messages.hpp states the rules.
//
// Layout (all integers big-endian):
//   frame header  magic u32 | version u16 | type u8 | flags u8 (0) | body_bytes u32 | zero u32
//   Generations   current u64 | bitmap u64 | history u64 x kHistoryGenerations
//   Hello         protocol_version u32 | volume_digest u64 | node u32 | role u8 | disk u8 |
//                 Generations | primary_at_crash u8 | discard_local u8 | survived_primary u8 |
//                 dirty_blocks u64 | blank u8
//   BitmapWords   last u8 | count u32 | count x (index u64 | word u64)
//   DataWrite     sequence u64 | epoch u64 | offset u64 | zero_length u64 | fua u8 | payload
//   WriteAck      sequence u64 | error u32          BarrierAck  epoch u64 | error u32
//   Barrier       epoch u64 | checkpoint u8         ResyncDone  Generations
//   ResyncData    offset u64 | payload
//   ResyncAck     offset u64 | length u32 | error u32
//   VerifyRequest offset u64 | length u32
//   VerifyReply   offset u64 | length u32 | digest u64 | error u32
//   StateUpdate   role u8 | disk u8 | Generations
//   Refuse        reason u8 | text_length u16 | text
// The payload of DataWrite and ResyncData is the rest of the body: its length is body_bytes minus
// the fixed part (payload_offset()), so the link can read it straight into its own buffer.
//
// Every value has one encoding (booleans are 0 or 1, flags and the reserved word are 0, bitmap
// words are non-zero and strictly increasing), so decode() then encode() gives back the same
// bytes; the fuzz target checks this. encode() asserts what decode() reports.
#include "core/volume/peer_messages.hpp"

#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/common/assert.hpp"
#include "core/common/byte_io.hpp"
#include "core/common/problem_reader.hpp"

namespace keel::volume {
namespace {

constexpr std::uint32_t kMagic = 0x4b564f4c;  // "KVOL"
constexpr std::size_t kDataWriteFixedBytes = 8 + 8 + 8 + 8 + 1;
constexpr std::size_t kResyncDataFixedBytes = 8;
constexpr std::size_t kBitmapWordBytes = 16;
constexpr std::size_t kMaxRefuseTextBytes = 1024;
constexpr int kMaxErrorNumber = 4095;  // errno values, as the kernel's MAX_ERRNO

static_assert(kFrameHeaderBytes == 4 + 2 + 1 + 1 + 4 + 4);
static_assert(kPeerProtocolVersion <= 0xffff);
static_assert(kDataWriteFixedBytes + kMaxDataBytes <= kMaxFrameBody);
static_assert(kResyncDataFixedBytes + kMaxDataBytes <= kMaxFrameBody);
static_assert(1 + 4 + kBitmapWordBytes * kMaxBitmapWordsPerFrame <= kMaxFrameBody);
static_assert(1 + 2 + kMaxRefuseTextBytes <= kMaxFrameBody);
static_assert(kMaxDataBytes % kBlockBytes == 0);

// The type byte is the variant index plus one (0 is never a type).
constexpr std::uint8_t kTypeCount = std::variant_size_v<PeerMessage>;
std::uint8_t type_of(const PeerMessage& message) {
  return static_cast<std::uint8_t>(message.index() + 1);
}
bool known_type(std::uint8_t type) { return type >= 1 && type <= kTypeCount; }
constexpr std::uint8_t kDataWriteType = 3;
constexpr std::uint8_t kResyncDataType = 7;
static_assert(
    std::is_same_v<std::variant_alternative_t<kDataWriteType - 1, PeerMessage>, DataWrite>);
static_assert(
    std::is_same_v<std::variant_alternative_t<kResyncDataType - 1, PeerMessage>, ResyncData>);

const char* type_name(std::uint8_t type) {
  static constexpr const char* kNames[] = {
      "unknown",       "Hello",       "BitmapWords", "DataWrite", "WriteAck",
      "Barrier",       "BarrierAck",  "ResyncData",  "ResyncAck", "ResyncDone",
      "VerifyRequest", "VerifyReply", "StateUpdate", "Refuse"};
  static_assert(std::size(kNames) == kTypeCount + 1);
  return known_type(type) ? kNames[type] : kNames[0];
}

std::size_t payload_size(const Payload& payload) { return payload ? payload->size() : 0; }

// ---- Checks shared by encode() (asserted) and decode() (reported) ----------------------------

using Problem = std::optional<std::string>;

std::string range_text(std::uint64_t offset, std::uint64_t length) {
  return "range at " + std::to_string(offset) + " of " + std::to_string(length) + " bytes";
}

// [offset, offset + length) within the volume, without overflow.
Problem check_range(std::uint64_t offset, std::uint64_t length, std::uint64_t volume_bytes) {
  if (length > volume_bytes || offset > volume_bytes - length) {
    return range_text(offset, length) + " exceeds the volume of " + std::to_string(volume_bytes);
  }
  return std::nullopt;
}

// A resync or verify range: whole blocks, not empty, at most kMaxDataBytes, within the volume.
Problem check_block_range(std::uint64_t offset, std::uint64_t length, std::uint64_t volume_bytes) {
  if (length == 0 || length > kMaxDataBytes) {
    return range_text(offset, length) + ": length not within 1.." + std::to_string(kMaxDataBytes);
  }
  if (offset % kBlockBytes != 0 || length % kBlockBytes != 0) {
    return range_text(offset, length) + " is not whole blocks";
  }
  return check_range(offset, length, volume_bytes);
}

Problem check_error(int error) {
  if (error >= 0 && error <= kMaxErrorNumber) return std::nullopt;
  return "error number " + std::to_string(error) + " out of range";
}

std::uint64_t volume_blocks(std::uint64_t volume_bytes) {
  return volume_bytes / kBlockBytes + (volume_bytes % kBlockBytes != 0 ? 1 : 0);
}

Problem check(const Hello& hello, std::uint64_t volume_bytes) {
  if (hello.node == kNoNode || hello.node == kAllNodes) {
    return "invalid node id " + std::to_string(hello.node);
  }
  if (hello.dirty_blocks > volume_blocks(volume_bytes)) {
    return "dirty_blocks " + std::to_string(hello.dirty_blocks) + " exceeds the volume";
  }
  return std::nullopt;
}

Problem check(const BitmapWords& bitmap, std::uint64_t volume_bytes) {
  if (bitmap.words.size() > kMaxBitmapWordsPerFrame) {
    return "more than " + std::to_string(kMaxBitmapWordsPerFrame) + " bitmap words";
  }
  const std::uint64_t blocks = volume_blocks(volume_bytes);
  const std::uint64_t words = (blocks + 63) / 64;
  for (std::size_t i = 0; i < bitmap.words.size(); ++i) {
    const auto [index, word] = bitmap.words[i];
    if (i > 0 && index <= bitmap.words[i - 1].first) {
      return std::string("bitmap words are not strictly increasing");
    }
    if (word == 0) return "bitmap word " + std::to_string(index) + " is zero";
    if (index >= words) return "bitmap word " + std::to_string(index) + " beyond the volume";
    const std::uint64_t valid_bits = blocks - index * 64;
    if (valid_bits < 64 && (word >> valid_bits) != 0) {
      return "bitmap word " + std::to_string(index) + " marks blocks beyond the volume";
    }
  }
  return std::nullopt;
}

Problem check(const DataWrite& write, std::uint64_t volume_bytes) {
  const std::size_t length = payload_size(write.data);
  if (write.zero_length != 0 && length != 0) {
    return std::string("a zeroing write carries a payload");
  }
  if (length > kMaxDataBytes) return "a write of " + std::to_string(length) + " bytes";
  return check_range(write.offset, write.zero_length != 0 ? write.zero_length : length,
                     volume_bytes);
}

Problem check(const WriteAck& ack, std::uint64_t) { return check_error(ack.error); }
Problem check(const Barrier&, std::uint64_t) { return std::nullopt; }
Problem check(const BarrierAck& ack, std::uint64_t) { return check_error(ack.error); }
Problem check(const ResyncData& data, std::uint64_t volume_bytes) {
  return check_block_range(data.offset, payload_size(data.data), volume_bytes);
}
Problem check(const ResyncAck& ack, std::uint64_t volume_bytes) {
  if (auto problem = check_error(ack.error)) return problem;
  return check_block_range(ack.offset, ack.length, volume_bytes);
}
Problem check(const ResyncDone&, std::uint64_t) { return std::nullopt; }
Problem check(const VerifyRequest& request, std::uint64_t volume_bytes) {
  return check_block_range(request.offset, request.length, volume_bytes);
}
Problem check(const VerifyReply& reply, std::uint64_t volume_bytes) {
  if (auto problem = check_error(reply.error)) return problem;
  return check_block_range(reply.offset, reply.length, volume_bytes);
}
Problem check(const StateUpdate&, std::uint64_t) { return std::nullopt; }
Problem check(const Refuse& refuse, std::uint64_t) {
  if (refuse.text.size() <= kMaxRefuseTextBytes) return std::nullopt;
  return "refusal text longer than " + std::to_string(kMaxRefuseTextBytes) + " bytes";
}

// ---- Encoding --------------------------------------------------------------------------------

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
  void u16(std::uint16_t v) { put_be(v, 2); }
  void u32(std::uint32_t v) { put_be(v, 4); }
  void u64(std::uint64_t v) { put_be(v, 8); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void error(int v) { u32(static_cast<std::uint32_t>(v)); }
  void generations(const Generations& g) {
    u64(g.current);
    u64(g.bitmap);
    for (Generation old : g.history) u64(old);
  }
  void text(std::string_view s) {
    const auto* begin = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), begin, begin + s.size());
  }

 private:
  void put_be(std::uint64_t v, int width) {
    for (int i = width - 1; i >= 0; --i) out_.push_back(static_cast<std::byte>(v >> (8 * i)));
  }
  Bytes& out_;
};

void write(Writer& out, const Hello& hello) {
  out.u32(hello.protocol_version);
  out.u64(hello.volume_digest);
  out.u32(hello.node);
  out.u8(static_cast<std::uint8_t>(hello.role));
  out.u8(static_cast<std::uint8_t>(hello.disk));
  out.generations(hello.generations);
  out.boolean(hello.primary_at_crash);
  out.boolean(hello.discard_local);
  out.boolean(hello.survived_primary);
  out.u64(hello.dirty_blocks);
  out.boolean(hello.blank);
}
void write(Writer& out, const BitmapWords& bitmap) {
  out.boolean(bitmap.last);
  out.u32(static_cast<std::uint32_t>(bitmap.words.size()));
  for (const auto& [index, word] : bitmap.words) {
    out.u64(index);
    out.u64(word);
  }
}
void write(Writer& out, const DataWrite& write) {
  out.u64(write.sequence);
  out.u64(write.epoch);
  out.u64(write.offset);
  out.u64(write.zero_length);
  out.boolean(write.fua);
}
void write(Writer& out, const WriteAck& ack) {
  out.u64(ack.sequence);
  out.error(ack.error);
}
void write(Writer& out, const Barrier& barrier) {
  out.u64(barrier.epoch);
  out.boolean(barrier.checkpoint);
}
void write(Writer& out, const BarrierAck& ack) {
  out.u64(ack.epoch);
  out.error(ack.error);
}
void write(Writer& out, const ResyncData& data) { out.u64(data.offset); }
void write(Writer& out, const ResyncAck& ack) {
  out.u64(ack.offset);
  out.u32(ack.length);
  out.error(ack.error);
}
void write(Writer& out, const ResyncDone& done) { out.generations(done.generations); }
void write(Writer& out, const VerifyRequest& request) {
  out.u64(request.offset);
  out.u32(request.length);
}
void write(Writer& out, const VerifyReply& reply) {
  out.u64(reply.offset);
  out.u32(reply.length);
  out.u64(reply.digest);
  out.error(reply.error);
}
void write(Writer& out, const StateUpdate& update) {
  out.u8(static_cast<std::uint8_t>(update.role));
  out.u8(static_cast<std::uint8_t>(update.disk));
  out.generations(update.generations);
}
void write(Writer& out, const Refuse& refuse) {
  out.u8(static_cast<std::uint8_t>(refuse.reason));
  out.u16(static_cast<std::uint16_t>(refuse.text.size()));
  out.text(refuse.text);
}

const Payload* payload_of(const PeerMessage& message) {
  if (const auto* data = std::get_if<DataWrite>(&message)) return &data->data;
  if (const auto* data = std::get_if<ResyncData>(&message)) return &data->data;
  return nullptr;
}

// The header and the fixed part of the body; the header announces the payload's bytes too.
Bytes encode_head(const PeerMessage& message) {
  // Encoding has no volume size at hand: ranges are checked against the largest volume.
  const Problem problem = std::visit(
      [](const auto& body) { return check(body, std::numeric_limits<std::uint64_t>::max()); },
      message);
  KEEL_ASSERT(!problem);
  Bytes bytes;
  // Room for the header and the fixed fields of every frame of the data path (a DataWrite, the
  // acks, a Barrier) in one allocation: Writer appends a byte at a time.
  bytes.reserve(kFrameHeaderBytes + kDataWriteFixedBytes);
  Writer out(bytes);
  out.u32(kMagic);
  out.u16(static_cast<std::uint16_t>(kPeerProtocolVersion));
  out.u8(type_of(message));
  out.u8(0);
  out.u32(0);  // body_bytes, filled in below
  out.u32(0);
  std::visit([&](const auto& body) { write(out, body); }, message);
  const Payload* payload = payload_of(message);
  const std::size_t body =
      bytes.size() - kFrameHeaderBytes + (payload ? payload_size(*payload) : 0);
  KEEL_ASSERT(body <= kMaxFrameBody);
  for (int i = 0; i < 4; ++i) bytes[8 + i] = static_cast<std::byte>(body >> (8 * (3 - i)));
  return bytes;
}

// ---- Decoding --------------------------------------------------------------------------------

// A ByteReader that remembers why it failed; callers check ok() once at the end.
class Reader : public ProblemReader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : ProblemReader(in, "frame truncated") {}
  void fail_if(const Problem& problem) {
    if (problem) fail(*problem);
  }
  int error() {
    const std::uint32_t value = u32();
    if (value > static_cast<std::uint32_t>(kMaxErrorNumber)) {
      fail("error number " + std::to_string(value) + " out of range");
      return 0;
    }
    return static_cast<int>(value);
  }
  Role role() {
    const std::uint8_t value = u8();
    if (value > static_cast<std::uint8_t>(Role::Primary)) fail(bad_enum("role", value));
    return static_cast<Role>(value);
  }
  DiskState disk() {
    const std::uint8_t value = u8();
    if (value > static_cast<std::uint8_t>(DiskState::UpToDate)) fail(bad_enum("disk", value));
    return static_cast<DiskState>(value);
  }
  LinkState link() {
    const std::uint8_t value = u8();
    if (value > static_cast<std::uint8_t>(LinkState::Unrelated)) fail(bad_enum("reason", value));
    return static_cast<LinkState>(value);
  }
  Generations generations() {
    Generations g;
    g.current = u64();
    g.bitmap = u64();
    for (Generation& old : g.history) old = u64();
    return g;
  }

 private:
  static std::string bad_enum(std::string_view what, std::uint8_t value) {
    return "unknown " + std::string(what) + " " + std::to_string(value);
  }
};

Hello read_hello(Reader& in) {
  Hello hello;
  hello.protocol_version = in.u32();
  hello.volume_digest = in.u64();
  hello.node = in.u32();
  hello.role = in.role();
  hello.disk = in.disk();
  hello.generations = in.generations();
  hello.primary_at_crash = in.boolean("primary_at_crash");
  hello.discard_local = in.boolean("discard_local");
  hello.survived_primary = in.boolean("survived_primary");
  hello.dirty_blocks = in.u64();
  hello.blank = in.boolean("blank");
  return hello;
}

BitmapWords read_bitmap_words(Reader& in) {
  BitmapWords bitmap;
  bitmap.last = in.boolean("last");
  const std::uint32_t count = in.u32();
  if (!in.ok()) return bitmap;
  if (count > kMaxBitmapWordsPerFrame) {
    in.fail(std::to_string(count) + " bitmap words in one frame");
    return bitmap;
  }
  if (count * kBitmapWordBytes > in.remaining()) {
    in.fail("frame truncated");
    return bitmap;
  }
  bitmap.words.resize(count);
  for (auto& [index, word] : bitmap.words) {
    index = in.u64();
    word = in.u64();
  }
  return bitmap;
}

// The fixed part of the payload messages; the caller attaches the payload.
DataWrite read_data_write(Reader& in) {
  DataWrite write;
  write.sequence = in.u64();
  write.epoch = in.u64();
  write.offset = in.u64();
  write.zero_length = in.u64();
  write.fua = in.boolean("fua");
  return write;
}

PeerMessage read_body(Reader& in, std::uint8_t type) {
  switch (type) {
    case 1:
      return read_hello(in);
    case 2:
      return read_bitmap_words(in);
    case kDataWriteType:
      return read_data_write(in);
    case 4:
      return WriteAck{in.u64(), in.error()};
    case 5: {
      Barrier barrier;
      barrier.epoch = in.u64();
      barrier.checkpoint = in.boolean("checkpoint");
      return barrier;
    }
    case 6:
      return BarrierAck{in.u64(), in.error()};
    case kResyncDataType:
      return ResyncData{in.u64(), nullptr};
    case 8:
      return ResyncAck{in.u64(), in.u32(), in.error()};
    case 9:
      return ResyncDone{in.generations()};
    case 10:
      return VerifyRequest{in.u64(), in.u32()};
    case 11:
      return VerifyReply{in.u64(), in.u32(), in.u64(), in.error()};
    case 12:
      return StateUpdate{in.role(), in.disk(), in.generations()};
    case 13: {
      Refuse refuse;
      refuse.reason = in.link();
      const std::uint16_t length = in.u16();
      if (length > kMaxRefuseTextBytes) in.fail("refusal text of " + std::to_string(length));
      const auto text = in.bytes(in.ok() ? length : 0);
      refuse.text.assign(text.begin(), text.end());
      return refuse;
    }
  }
  detail::assert_failed("known frame type", __FILE__, __LINE__);
}

std::span<const std::uint8_t> as_u8(const std::byte* bytes, std::size_t size) {
  return {reinterpret_cast<const std::uint8_t*>(bytes), size};
}

// Decodes the fixed part of a body of `type` (the whole body without its payload), attaches
// `payload` to the payload types, and checks the result against the volume.
Result<PeerMessage> decode_body(std::uint8_t type, std::span<const std::uint8_t> fixed,
                                Payload payload, std::uint64_t volume_bytes) {
  const std::string name = type_name(type);
  Reader in(fixed);
  PeerMessage message = read_body(in, type);
  if (!in.ok()) return Error{name + ": " + in.problem()};
  if (in.remaining() != 0) {
    return Error{name + ": " + std::to_string(in.remaining()) + " trailing bytes"};
  }
  if (auto* write = std::get_if<DataWrite>(&message)) {
    write->data = std::move(payload);
  } else if (auto* data = std::get_if<ResyncData>(&message)) {
    data->data = std::move(payload);
  }
  const Problem problem =
      std::visit([&](const auto& body) { return check(body, volume_bytes); }, message);
  if (problem) return Error{name + ": " + *problem};
  return message;
}

}  // namespace

Bytes encode(const PeerMessage& message) {
  Bytes bytes = encode_head(message);
  if (const Payload* payload = payload_of(message); payload && *payload) {
    bytes.insert(bytes.end(), (*payload)->begin(), (*payload)->end());
  }
  return bytes;
}

Bytes encode_header(const PeerMessage& message) { return encode_head(message); }

Result<FrameHeader> decode_frame_header(const std::byte* bytes, std::size_t size) {
  if (size < kFrameHeaderBytes) {
    return Error{"frame of " + std::to_string(size) + " bytes is shorter than a header"};
  }
  ByteReader in(as_u8(bytes, kFrameHeaderBytes));
  const std::uint32_t magic = in.u32();
  const std::uint16_t version = in.u16();
  FrameHeader header;
  header.type = in.u8();
  const std::uint8_t flags = in.u8();
  header.body_bytes = in.u32();
  const std::uint32_t reserved = in.u32();
  if (magic != kMagic) return Error{"bad magic " + std::to_string(magic)};
  if (version != kPeerProtocolVersion) {
    return Error{"unsupported protocol version " + std::to_string(version)};
  }
  if (!known_type(header.type)) return Error{"unknown frame type " + std::to_string(header.type)};
  if (flags != 0 || reserved != 0) return Error{"reserved header bits are set"};
  if (header.body_bytes > kMaxFrameBody) {
    return Error{"frame body of " + std::to_string(header.body_bytes) + " bytes is too long"};
  }
  if (header.body_bytes < payload_offset(header.type)) {
    return Error{std::string(type_name(header.type)) + ": body shorter than its fixed fields"};
  }
  return header;
}

Result<PeerMessage> decode(const std::byte* bytes, std::size_t size, std::uint64_t volume_bytes) {
  auto header = decode_frame_header(bytes, size);
  if (!header.ok()) return header.error();
  const auto [type, body_bytes] = header.value();
  if (size - kFrameHeaderBytes != body_bytes) {
    return Error{std::string(type_name(type)) + ": frame of " + std::to_string(size) +
                 " bytes announces a body of " + std::to_string(body_bytes)};
  }
  const std::size_t fixed = has_payload(type) ? payload_offset(type) : body_bytes;
  Payload payload;
  if (has_payload(type) && body_bytes > fixed) {
    const std::byte* tail = bytes + kFrameHeaderBytes + fixed;
    payload = std::make_shared<const Bytes>(tail, tail + (body_bytes - fixed));
  }
  return decode_body(type, as_u8(bytes + kFrameHeaderBytes, fixed), std::move(payload),
                     volume_bytes);
}

std::size_t payload_offset(std::uint8_t type) {
  if (type == kDataWriteType) return kDataWriteFixedBytes;
  if (type == kResyncDataType) return kResyncDataFixedBytes;
  return 0;
}

bool has_payload(std::uint8_t type) { return payload_offset(type) != 0; }

Result<PeerMessage> decode_split(const std::byte* head, std::size_t head_size, Payload payload,
                                 std::uint64_t volume_bytes) {
  auto header = decode_frame_header(head, head_size);
  if (!header.ok()) return header.error();
  const auto [type, body_bytes] = header.value();
  const std::string name = type_name(type);
  if (!has_payload(type)) return Error{name + ": has no payload"};
  const std::size_t fixed = payload_offset(type);
  if (head_size != kFrameHeaderBytes + fixed) {
    return Error{name + ": head of " + std::to_string(head_size) + " bytes, want " +
                 std::to_string(kFrameHeaderBytes + fixed)};
  }
  if (payload_size(payload) != body_bytes - fixed) {
    return Error{name + ": payload of " + std::to_string(payload_size(payload)) +
                 " bytes, the header announces " + std::to_string(body_bytes - fixed)};
  }
  if (payload_size(payload) == 0) payload = nullptr;
  return decode_body(type, as_u8(head + kFrameHeaderBytes, fixed), std::move(payload),
                     volume_bytes);
}

std::uint64_t digest_bytes(const std::byte* bytes, std::size_t size) {
  std::uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a offset basis
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= static_cast<std::uint8_t>(bytes[i]);
    hash *= 0x100000001b3ull;  // FNV prime
  }
  return hash;
}

}  // namespace keel::volume
