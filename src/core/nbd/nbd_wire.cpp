// Requests and replies of the transmission phase; nbd_wire.hpp states the rules.
//
// Layouts (big-endian):
//   request           magic u32 | flags u16 | type u16 | cookie u64 | offset u64 | length u32
//   simple reply      magic u32 | error u32 | cookie u64
//   structured chunk  magic u32 | flags u16 | type u16 | cookie u64 | length u32 | payload
//     OFFSET_DATA     offset u64 | data
//     ERROR           error u32 | message length u16 | message
//     NONE            (no payload)
#include "core/nbd/nbd_wire.hpp"

#include <algorithm>

#include "core/common/assert.hpp"

namespace keel::nbd {
namespace {

// Writes `value` big-endian into `width` bytes at `at`.
void put_be(std::uint8_t* at, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) {
    at[i] = static_cast<std::uint8_t>(value >> (8 * (width - 1 - i)));
  }
}

constexpr std::size_t kErrorChunkFixedBytes = 4 + 2;  // error, message length
static_assert(kMaxMessageBytes <= 0xffff, "an error chunk's message length is a u16");

// The flags each command accepts. FUA is accepted on every command (the protocol asks servers
// that advertise it to accept it anywhere, even where it has no effect).
std::uint16_t allowed_flags(const Request& request) {
  if (request.is(Command::write_zeroes)) return kCommandFlagFua | kCommandFlagNoHole;
  return kCommandFlagFua;
}

Verdict reply_error(std::uint32_t error, std::string reason, bool payload_follows) {
  return Verdict{Action::reply_error, error, std::move(reason), payload_follows};
}

Verdict check_range(const Request& request, const Session& session, bool payload_follows) {
  if (request.length == 0) return reply_error(kEinval, "zero-length request", payload_follows);
  if (request.offset > session.size_bytes ||
      request.length > session.size_bytes - request.offset) {  // offset + length, no overflow
    // The protocol asks for ENOSPC on writes past the end, EINVAL otherwise.
    const bool grows = request.is(Command::write) || request.is(Command::write_zeroes);
    return reply_error(grows ? kEnospc : kEinval,
                       "range " + std::to_string(request.offset) + "+" +
                           std::to_string(request.length) + " ends past the export's " +
                           std::to_string(session.size_bytes) + " bytes",
                       payload_follows);
  }
  return Verdict{Action::execute, kErrorNone, {}, payload_follows};
}

}  // namespace

Result<Request> decode_request(std::span<const std::uint8_t> header) {
  KEEL_ASSERT(header.size() == kRequestBytes);
  ByteReader reader(header);
  const std::uint32_t magic = reader.u32();
  Request request;
  request.flags = reader.u16();
  request.type = reader.u16();
  request.cookie = reader.u64();
  request.offset = reader.u64();
  request.length = reader.u32();
  KEEL_ASSERT(reader.at_end());
  if (magic != kRequestMagic) return Error{"bad request magic " + std::to_string(magic)};
  return request;
}

std::array<std::uint8_t, kRequestBytes> encode_request(const Request& request) {
  std::array<std::uint8_t, kRequestBytes> out{};
  put_be(&out[0], kRequestMagic, 4);
  put_be(&out[4], request.flags, 2);
  put_be(&out[6], request.type, 2);
  put_be(&out[8], request.cookie, 8);
  put_be(&out[16], request.offset, 8);
  put_be(&out[24], request.length, 4);
  return out;
}

Verdict check_request(const Request& request, const Session& session) {
  const bool payload_follows = request.is(Command::write);
  if (payload_follows && request.length > kMaximumPayloadBytes) {
    return Verdict{Action::close, kErrorNone,
                   "write of " + std::to_string(request.length) + " bytes exceeds the maximum " +
                       std::to_string(kMaximumPayloadBytes),
                   false};
  }
  // A disconnect never gets a reply, whatever flags came with it: an error reply would leave a
  // client that is closing its end with a connection still open.
  if (request.is(Command::disconnect)) return Verdict{Action::disconnect, kErrorNone, {}, false};
  if ((request.flags & ~allowed_flags(request)) != 0) {
    return reply_error(kEinval, "flags " + std::to_string(request.flags) + " not valid here",
                       payload_follows);
  }
  switch (static_cast<Command>(request.type)) {
    case Command::disconnect:  // above
    case Command::flush:
      return Verdict{};
    case Command::read:
      if (request.length > kMaximumPayloadBytes) {
        return reply_error(
            kEinval, "read of " + std::to_string(request.length) + " bytes exceeds the maximum",
            false);
      }
      return check_range(request, session, false);
    case Command::write:
    case Command::trim:
    case Command::write_zeroes:
      if (!session.writable) return reply_error(kEperm, "export is read-only", payload_follows);
      return check_range(request, session, payload_follows);
  }
  return reply_error(kEinval, "unknown command " + std::to_string(request.type), false);
}

std::size_t RequestReader::feed(std::span<const std::uint8_t> bytes,
                                std::vector<ReadRequest>& out) {
  std::size_t consumed = 0;
  while (consumed < bytes.size() && !stopped_) {
    const auto rest = bytes.subspan(consumed);
    if (payload_left_ > 0) {
      const std::size_t take = std::min(payload_left_, rest.size());
      pending_.payload.insert(pending_.payload.end(), rest.begin(), rest.begin() + take);
      payload_left_ -= take;
      consumed += take;
      if (payload_left_ == 0) out.push_back(std::move(pending_));
      continue;
    }
    const std::size_t take = std::min(kRequestBytes - header_.size(), rest.size());
    header_.insert(header_.end(), rest.begin(), rest.begin() + take);
    consumed += take;
    if (header_.size() == kRequestBytes) on_header(out);
  }
  return consumed;
}

void RequestReader::on_header(std::vector<ReadRequest>& out) {
  auto decoded = decode_request(header_);
  header_.clear();
  if (!decoded.ok()) {
    stopped_ = true;
    out.push_back(ReadRequest{
        Request{}, Verdict{Action::close, kErrorNone, decoded.error().message, false}, {}});
    return;
  }
  ReadRequest next{decoded.value(), check_request(decoded.value(), session_), {}};
  const Action action = next.verdict.action;
  if (action == Action::close || action == Action::disconnect) stopped_ = true;
  if (next.verdict.payload_follows && next.request.length > 0) {
    KEEL_ASSERT(next.request.length <= kMaximumPayloadBytes);
    payload_left_ = next.request.length;
    pending_ = std::move(next);
    pending_.payload.reserve(payload_left_);
    return;
  }
  out.push_back(std::move(next));
}

std::array<std::uint8_t, kSimpleReplyBytes> encode_simple_reply(std::uint64_t cookie,
                                                                std::uint32_t error) {
  std::array<std::uint8_t, kSimpleReplyBytes> out{};
  put_be(&out[0], kSimpleReplyMagic, 4);
  put_be(&out[4], error, 4);
  put_be(&out[8], cookie, 8);
  return out;
}

namespace {
void put_chunk_header(std::uint8_t* at, std::uint16_t flags, std::uint16_t type,
                      std::uint64_t cookie, std::uint32_t length) {
  put_be(at, kStructuredReplyMagic, 4);
  put_be(at + 4, flags, 2);
  put_be(at + 6, type, 2);
  put_be(at + 8, cookie, 8);
  put_be(at + 16, length, 4);
}
}  // namespace

std::array<std::uint8_t, kOffsetDataHeaderBytes> encode_offset_data_header(std::uint64_t cookie,
                                                                           std::uint64_t offset,
                                                                           std::uint32_t data_bytes,
                                                                           bool done) {
  KEEL_ASSERT(data_bytes <= kMaximumPayloadBytes);
  std::array<std::uint8_t, kOffsetDataHeaderBytes> out{};
  put_chunk_header(out.data(), done ? kReplyFlagDone : 0, kReplyTypeOffsetData, cookie,
                   data_bytes + 8);
  put_be(&out[kStructuredReplyBytes], offset, 8);
  return out;
}

std::array<std::uint8_t, kStructuredReplyBytes> encode_none_reply(std::uint64_t cookie) {
  std::array<std::uint8_t, kStructuredReplyBytes> out{};
  put_chunk_header(out.data(), kReplyFlagDone, kReplyTypeNone, cookie, 0);
  return out;
}

Bytes encode_error_reply(std::uint64_t cookie, std::uint32_t error, std::string_view message) {
  KEEL_ASSERT(error != kErrorNone);
  message = message.substr(0, kMaxMessageBytes);
  Bytes out(kStructuredReplyBytes + kErrorChunkFixedBytes + message.size());
  put_chunk_header(out.data(), kReplyFlagDone, kReplyTypeError, cookie,
                   static_cast<std::uint32_t>(kErrorChunkFixedBytes + message.size()));
  put_be(&out[kStructuredReplyBytes], error, 4);
  put_be(&out[kStructuredReplyBytes + 4], message.size(), 2);
  std::copy(message.begin(), message.end(), out.begin() + kStructuredReplyBytes + 6);
  return out;
}

}  // namespace keel::nbd
