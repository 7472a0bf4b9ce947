// The fixed newstyle negotiation; nbd_handshake.hpp states its rules.
//
// Layouts (big-endian):
//   greeting       NBDMAGIC u64 | IHAVEOPT u64 | handshake flags u16
//   client flags   u32
//   option         IHAVEOPT u64 | option u32 | length u32 | length bytes of data
//   option reply   kOptionReplyMagic u64 | option u32 | reply type u32 | length u32 | data
//   INFO/GO data   name length u32 | name | request count u16 | requests u16 each
//   REP_SERVER     name length u32 | name | description
//   REP_INFO       info type u16 | EXPORT: size u64, flags u16 | NAME/DESCRIPTION: text |
//                  BLOCK_SIZE: minimum u32, preferred u32, maximum u32
//   EXPORT_NAME    reply: size u64 | transmission flags u16 | 124 zero bytes unless NO_ZEROES
#include "core/nbd/nbd_handshake.hpp"

#include <algorithm>
#include <string_view>
#include <vector>

#include "core/common/assert.hpp"

namespace keel::nbd {
namespace {

std::span<const std::uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string quoted(std::string_view name) {
  // A client's name is arbitrary bytes; the message keeps it short.
  constexpr std::size_t kShown = 64;
  std::string shown(name.substr(0, kShown));
  if (name.size() > kShown) shown += "...";
  return "'" + shown + "'";
}

}  // namespace

std::uint16_t transmission_flags(const ExportInfo& info) {
  std::uint16_t flags = kTransmitHasFlags | kTransmitSendFlush | kTransmitSendFua |
                        kTransmitSendTrim | kTransmitSendWriteZeroes;
  if (!info.writable) flags |= kTransmitReadOnly;
  if (info.can_multi_conn) flags |= kTransmitCanMultiConn;
  return flags;
}

void append_option_reply(Bytes& out, std::uint32_t option, std::uint32_t type,
                         std::span<const std::uint8_t> data) {
  KEEL_ASSERT(data.size() <= kMaxOptionDataBytes + kMaxStringBytes);
  ByteWriter writer(out);
  writer.u64(kOptionReplyMagic);
  writer.u32(option);
  writer.u32(type);
  writer.u32(static_cast<std::uint32_t>(data.size()));
  writer.bytes(data);
}

void append_option_error(Bytes& out, std::uint32_t option, std::uint32_t type,
                         std::string_view message) {
  KEEL_ASSERT((type & kRepErrorBit) != 0);
  append_option_reply(out, option, type, as_bytes(message.substr(0, kMaxMessageBytes)));
}

Handshake::Handshake(ExportInfo info) : info_(std::move(info)), unit_bytes_(kClientFlagsBytes) {
  unit_.reserve(kOptionHeaderBytes);
}

Bytes Handshake::greeting() {
  Bytes out;
  ByteWriter writer(out);
  writer.u64(kNbdMagic);
  writer.u64(kOptionMagic);
  writer.u16(kFlagFixedNewstyle | kFlagNoZeroes);
  KEEL_ASSERT(out.size() == kGreetingBytes);
  return out;
}

std::size_t Handshake::bytes_wanted() const {
  switch (state_) {
    case HandshakeState::client_flags:
    case HandshakeState::option_header:
    case HandshakeState::option_data:
    case HandshakeState::option_skip:
      KEEL_ASSERT(unit_bytes_ > unit_.size());
      return unit_bytes_ - unit_.size();
    case HandshakeState::transmission:
    case HandshakeState::closed:
      return 0;
  }
  return 0;
}

const Session& Handshake::session() const {
  KEEL_ASSERT(state_ == HandshakeState::transmission);
  return session_;
}

HandshakeStep Handshake::feed(std::span<const std::uint8_t> bytes) {
  HandshakeStep step;
  while (step.consumed < bytes.size() && negotiating()) {
    const std::size_t take = std::min(bytes_wanted(), bytes.size() - step.consumed);
    if (state_ == HandshakeState::option_skip) {
      unit_bytes_ -= take;  // skipped data is counted down, never kept
    } else {
      const auto piece = bytes.subspan(step.consumed, take);
      unit_.insert(unit_.end(), piece.begin(), piece.end());
    }
    step.consumed += take;
    if (unit_.size() == unit_bytes_) on_unit_complete(step.to_send);
  }
  return step;
}

void Handshake::on_unit_complete(Bytes& out) {
  switch (state_) {
    case HandshakeState::client_flags:
      on_client_flags();
      if (state_ == HandshakeState::client_flags) expect_option_header();
      return;
    case HandshakeState::option_header:
      return on_option_header(out);
    case HandshakeState::option_data:
      on_option(out);
      return finish_option();
    case HandshakeState::option_skip:
      append_option_error(out, option_, kRepErrTooBig, "option data too long");
      return finish_option();
    case HandshakeState::transmission:
    case HandshakeState::closed:
      KEEL_ASSERT(false);
  }
}

void Handshake::expect_option_header() {
  unit_.clear();
  state_ = HandshakeState::option_header;
  unit_bytes_ = kOptionHeaderBytes;
}

// After an option: the next one, unless the option ended the negotiation.
void Handshake::finish_option() {
  if (state_ == HandshakeState::option_data || state_ == HandshakeState::option_skip) {
    expect_option_header();
  } else {
    unit_.clear();
  }
}

void Handshake::on_client_flags() {
  ByteReader reader(unit_);
  const std::uint32_t flags = reader.u32();
  KEEL_ASSERT(reader.at_end());
  if ((flags & ~kKnownClientFlags) != 0) {
    // The protocol says the server must drop a client that sets flags it did not advertise.
    return close(CloseReason::protocol_error,
                 "client flags 0x" + std::to_string(flags) + " include unknown bits");
  }
  // A client without FIXED_NEWSTYLE is served anyway (the protocol allows it); it will most
  // likely send EXPORT_NAME, which works the same in both variants.
  no_zeroes_ = (flags & kClientFlagNoZeroes) != 0;
}

void Handshake::on_option_header(Bytes& out) {
  ByteReader reader(unit_);
  const std::uint64_t magic = reader.u64();
  option_ = reader.u32();
  const std::uint32_t length = reader.u32();
  KEEL_ASSERT(reader.at_end());
  unit_.clear();
  if (magic != kOptionMagic) return close(CloseReason::protocol_error, "bad option magic");
  if (++options_seen_ > kMaxOptionsPerHandshake) {
    return close(CloseReason::protocol_error,
                 "more than " + std::to_string(kMaxOptionsPerHandshake) + " options");
  }
  if (length > kMaxOptionDataBytes) {
    if (option_ == static_cast<std::uint32_t>(Option::export_name)) {
      return close(CloseReason::export_refused, "export name longer than the protocol allows");
    }
    state_ = HandshakeState::option_skip;
    unit_bytes_ = length;
    return;
  }
  state_ = HandshakeState::option_data;
  unit_bytes_ = length;
  if (length == 0) {  // nothing to wait for
    on_option(out);
    finish_option();
  }
}

void Handshake::on_option(Bytes& out) {
  switch (static_cast<Option>(option_)) {
    case Option::export_name:
      return on_export_name(out);
    case Option::abort:
      append_option_reply(out, option_, kRepAck, {});
      return close(CloseReason::client_abort, "client aborted the negotiation");
    case Option::list:
      return on_list(out);
    case Option::info:
      return on_info(out, /*go=*/false);
    case Option::go:
      return on_info(out, /*go=*/true);
    case Option::structured_reply:
      if (!unit_.empty()) {
        return append_option_error(out, option_, kRepErrInvalid, "option takes no data");
      }
      structured_replies_ = true;
      return append_option_reply(out, option_, kRepAck, {});
    default:
      return append_option_error(out, option_, kRepErrUnsup,
                                 "option " + std::to_string(option_) + " is not supported");
  }
}

void Handshake::on_export_name(Bytes& out) {
  const std::string name(unit_.begin(), unit_.end());
  if (!name.empty() && name != info_.name) {
    return close(CloseReason::export_refused, "no export named " + quoted(name));
  }
  if (!info_.unavailable_reason.empty()) {
    return close(CloseReason::export_refused, info_.unavailable_reason);
  }
  enter_transmission();
  ByteWriter writer(out);
  writer.u64(session_.size_bytes);
  writer.u16(session_.transmission_flags);
  if (!no_zeroes_) out.resize(out.size() + kExportNameZeroBytes, 0);
}

void Handshake::on_list(Bytes& out) {
  if (!unit_.empty()) {
    return append_option_error(out, option_, kRepErrInvalid, "NBD_OPT_LIST takes no data");
  }
  Bytes server;
  ByteWriter writer(server);
  writer.u32(static_cast<std::uint32_t>(info_.name.size()));
  writer.bytes(as_bytes(info_.name));
  writer.bytes(as_bytes(info_.description));
  append_option_reply(out, option_, kRepServer, server);
  append_option_reply(out, option_, kRepAck, {});
}

void Handshake::on_info(Bytes& out, bool go) {
  ByteReader reader(unit_);
  const std::uint32_t name_bytes = reader.u32();
  const auto name = reader.bytes(std::min<std::size_t>(name_bytes, kMaxOptionDataBytes));
  const std::uint16_t count = reader.u16();
  std::vector<std::uint16_t> requests;
  for (std::uint16_t i = 0; i < count && reader.ok() && i < kMaxInfoRequests; ++i) {
    requests.push_back(reader.u16());
  }
  if (name_bytes > kMaxStringBytes || count > kMaxInfoRequests) {
    // Well formed but more than this server takes: too big, as docs/nbd.md promises; a length
    // that does not add up is invalid.
    const bool well_formed =
        reader.ok() && unit_.size() == 4 + std::size_t{name_bytes} + 2 + 2 * std::size_t{count};
    return append_option_error(
        out, option_, well_formed ? kRepErrTooBig : kRepErrInvalid,
        "NBD_OPT_INFO/GO asks for a name of " + std::to_string(name_bytes) + " bytes and " +
            std::to_string(count) + " info requests; this server takes at most " +
            std::to_string(kMaxStringBytes) + " and " + std::to_string(kMaxInfoRequests));
  }
  if (!reader.at_end()) {
    return append_option_error(out, option_, kRepErrInvalid, "malformed NBD_OPT_INFO/GO data");
  }
  const std::string requested(name.begin(), name.end());
  if (!requested.empty() && requested != info_.name) {
    return append_option_error(
        out, option_, kRepErrUnknown,
        "no export named " + quoted(requested) + "; this server serves " + quoted(info_.name));
  }
  if (!info_.unavailable_reason.empty()) {
    return append_option_error(out, option_, kRepErrUnknown, info_.unavailable_reason);
  }
  reply_info(out, requests);
  append_option_reply(out, option_, kRepAck, {});
  if (go) enter_transmission();
}

void Handshake::reply_info(Bytes& out, std::span<const std::uint16_t> requests) {
  const auto wanted = [&](Info info) {
    return std::find(requests.begin(), requests.end(), static_cast<std::uint16_t>(info)) !=
           requests.end();
  };
  const auto send = [&](Info info, auto&& write_body) {
    Bytes data;
    ByteWriter writer(data);
    writer.u16(static_cast<std::uint16_t>(info));
    write_body(writer);
    append_option_reply(out, option_, kRepInfo, data);
  };
  send(Info::export_info, [&](ByteWriter& w) {
    w.u64(info_.size_bytes);
    w.u16(transmission_flags(info_));
  });
  // Always sent: clients that did not ask still learn the limits.
  send(Info::block_size, [](ByteWriter& w) {
    w.u32(kMinimumBlockBytes);
    w.u32(kPreferredBlockBytes);
    w.u32(kMaximumPayloadBytes);
  });
  if (wanted(Info::name)) {
    send(Info::name, [&](ByteWriter& w) { w.bytes(as_bytes(info_.name)); });
  }
  if (wanted(Info::description) && !info_.description.empty()) {
    send(Info::description, [&](ByteWriter& w) { w.bytes(as_bytes(info_.description)); });
  }
}

void Handshake::enter_transmission() {
  KEEL_ASSERT(info_.unavailable_reason.empty());
  session_ =
      Session{info_.size_bytes, info_.writable, structured_replies_, transmission_flags(info_)};
  state_ = HandshakeState::transmission;
  unit_bytes_ = 0;
}

void Handshake::close(CloseReason reason, std::string message) {
  KEEL_ASSERT(reason != CloseReason::none);
  state_ = HandshakeState::closed;
  unit_bytes_ = 0;
  close_reason_ = reason;
  close_message_ = std::move(message);
}

}  // namespace keel::nbd
