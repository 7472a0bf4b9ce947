// The NBD transmission phase as pure code: request headers and their checks, a streaming request
// reader, and reply encoders.
//
// A request is a 28-byte header (magic 0x25609513, command flags u16, type u16, cookie u64,
// offset u64, length u32), followed for WRITE by `length` bytes of payload. check_request()
// decides what the server does with a decoded header:
//   - close the connection: bad magic (decode fails), or a WRITE longer than
//     kMaximumPayloadBytes (its payload cannot be skipped cheaply);
//   - reply with an error and go on: a READ longer than the maximum or of zero bytes, a range past
//     the end of the export (EINVAL; ENOSPC for writes, as the protocol asks), a write, trim or
//     write_zeroes on a read-only export (EPERM), an unknown command or a flag that does not
//     apply (EINVAL);
//   - disconnect (NBD_CMD_DISC): stop reading, finish what is in flight, close;
//   - execute.
// A WRITE's payload follows whatever the verdict (short of closing) and must be read off the
// stream before the next header.
//
// Replies: a simple reply (magic, error, cookie), or once structured replies are negotiated, READ
// gets one OFFSET_DATA chunk with the DONE flag (or one ERROR chunk); other commands keep simple
// replies, which the protocol allows.
//
// Thread-safety: plain functions and values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/nbd/nbd_handshake.hpp"
#include "core/nbd/nbd_protocol.hpp"

namespace keel::nbd {

struct Request {
  std::uint16_t flags = 0;
  std::uint16_t type = 0;  // a Command, or an unknown number
  std::uint64_t cookie = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;

  bool is(Command command) const { return type == static_cast<std::uint16_t>(command); }
  bool fua() const { return (flags & kCommandFlagFua) != 0; }
  bool operator==(const Request&) const = default;
};

// Decodes a request header (exactly kRequestBytes); an Error means a bad magic: close.
Result<Request> decode_request(std::span<const std::uint8_t> header);
std::array<std::uint8_t, kRequestBytes> encode_request(const Request& request);

enum class Action : std::uint8_t { execute, reply_error, disconnect, close };

struct Verdict {
  Action action = Action::execute;
  std::uint32_t error = kErrorNone;  // for reply_error: an NBD error value
  std::string reason;                // for reply_error and close: for the log and error chunks
  bool payload_follows = false;      // `length` payload bytes follow the header (WRITE)
};

Verdict check_request(const Request& request, const Session& session);

// What one request on the stream amounts to, for callers that take whole requests (tests, the
// fuzz target); the server reads payloads straight into their own buffers instead.
struct ReadRequest {
  Request request;
  Verdict verdict;
  Bytes payload;  // a WRITE's data (also when the verdict is an error)
};

// Splits a byte stream into requests, whatever the fragmentation. Stops for good after a close
// verdict (a bad magic or an oversized write) or a disconnect.
class RequestReader {
 public:
  explicit RequestReader(Session session) : session_(session) {}

  // Consumes what it can of `bytes` and appends completed requests to `out`; returns the number
  // of bytes consumed (less than bytes.size() only once stopped).
  std::size_t feed(std::span<const std::uint8_t> bytes, std::vector<ReadRequest>& out);
  bool stopped() const { return stopped_; }

 private:
  void on_header(std::vector<ReadRequest>& out);

  Session session_;
  Bytes header_;
  ReadRequest pending_;  // a WRITE waiting for its payload
  std::size_t payload_left_ = 0;
  bool stopped_ = false;
};

// ---- Replies ----------------------------------------------------------------------------------
std::array<std::uint8_t, kSimpleReplyBytes> encode_simple_reply(std::uint64_t cookie,
                                                                std::uint32_t error);
// The header of an OFFSET_DATA chunk carrying `data_bytes` of data read at `offset`; the data
// follows it on the wire (sent from the device's buffer).
std::array<std::uint8_t, kOffsetDataHeaderBytes> encode_offset_data_header(std::uint64_t cookie,
                                                                           std::uint64_t offset,
                                                                           std::uint32_t data_bytes,
                                                                           bool done);
std::array<std::uint8_t, kStructuredReplyBytes> encode_none_reply(std::uint64_t cookie);
// An ERROR chunk with the DONE flag; `message` is cut to kMaxMessageBytes.
Bytes encode_error_reply(std::uint64_t cookie, std::uint32_t error, std::string_view message);

}  // namespace keel::nbd
