// The NBD protocol's numbers (doc/proto.md of NetworkBlockDevice/nbd) and keel's limits on them.
//
// Only what keel's server speaks is named here: fixed newstyle negotiation with the INFO/GO and
// STRUCTURED_REPLY options, and the READ, WRITE, DISC, FLUSH, TRIM and WRITE_ZEROES commands. All
// integers travel big-endian. The error values are the protocol's own (they happen to equal
// Linux errno values, but the protocol defines them; io/ maps errno onto them explicitly).
//
// Thread-safety: constants only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::nbd {

// ---- Handshake ------------------------------------------------------------------------------
constexpr std::uint64_t kNbdMagic = 0x4e42444d41474943;     // "NBDMAGIC"
constexpr std::uint64_t kOptionMagic = 0x49484156454f5054;  // "IHAVEOPT"
constexpr std::uint64_t kOptionReplyMagic = 0x0003e889045565a9;

// Handshake flags (server) and client flags.
constexpr std::uint16_t kFlagFixedNewstyle = 1u << 0;
constexpr std::uint16_t kFlagNoZeroes = 1u << 1;
constexpr std::uint32_t kClientFlagFixedNewstyle = 1u << 0;
constexpr std::uint32_t kClientFlagNoZeroes = 1u << 1;
constexpr std::uint32_t kKnownClientFlags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

enum class Option : std::uint32_t {
  export_name = 1,
  abort = 2,
  list = 3,
  starttls = 5,
  info = 6,
  go = 7,
  structured_reply = 8,
  list_meta_context = 9,
  set_meta_context = 10,
};

constexpr std::uint32_t kRepAck = 1;
constexpr std::uint32_t kRepServer = 2;
constexpr std::uint32_t kRepInfo = 3;
constexpr std::uint32_t kRepErrorBit = 1u << 31;
constexpr std::uint32_t kRepErrUnsup = kRepErrorBit | 1;
constexpr std::uint32_t kRepErrPolicy = kRepErrorBit | 2;
constexpr std::uint32_t kRepErrInvalid = kRepErrorBit | 3;
// "The requested export is not available": both a name this server does not serve and the one
// it serves while the device refuses I/O (a secondary). The message says which.
constexpr std::uint32_t kRepErrUnknown = kRepErrorBit | 6;
constexpr std::uint32_t kRepErrShutdown = kRepErrorBit | 7;
constexpr std::uint32_t kRepErrTooBig = kRepErrorBit | 9;

enum class Info : std::uint16_t { export_info = 0, name = 1, description = 2, block_size = 3 };

// ---- Transmission ---------------------------------------------------------------------------
constexpr std::uint16_t kTransmitHasFlags = 1u << 0;
constexpr std::uint16_t kTransmitReadOnly = 1u << 1;
constexpr std::uint16_t kTransmitSendFlush = 1u << 2;
constexpr std::uint16_t kTransmitSendFua = 1u << 3;
constexpr std::uint16_t kTransmitSendTrim = 1u << 5;
constexpr std::uint16_t kTransmitSendWriteZeroes = 1u << 6;
constexpr std::uint16_t kTransmitCanMultiConn = 1u << 8;

constexpr std::uint32_t kRequestMagic = 0x25609513;
constexpr std::uint32_t kSimpleReplyMagic = 0x67446698;
constexpr std::uint32_t kStructuredReplyMagic = 0x668e33ef;

enum class Command : std::uint16_t {
  read = 0,
  write = 1,
  disconnect = 2,
  flush = 3,
  trim = 4,
  write_zeroes = 6,
};
constexpr std::size_t kCommandKinds = 7;  // counters are indexed by the command's number

constexpr std::uint16_t kCommandFlagFua = 1u << 0;
constexpr std::uint16_t kCommandFlagNoHole = 1u << 1;

constexpr std::uint16_t kReplyFlagDone = 1u << 0;
constexpr std::uint16_t kReplyTypeNone = 0;
constexpr std::uint16_t kReplyTypeOffsetData = 1;
constexpr std::uint16_t kReplyTypeError = (1u << 15) | 1;

// Error values of replies.
constexpr std::uint32_t kErrorNone = 0;
constexpr std::uint32_t kEperm = 1;
constexpr std::uint32_t kEio = 5;
constexpr std::uint32_t kEnomem = 12;
constexpr std::uint32_t kEinval = 22;
constexpr std::uint32_t kEnospc = 28;
constexpr std::uint32_t kEoverflow = 75;
constexpr std::uint32_t kEnotsup = 95;
constexpr std::uint32_t kEshutdown = 108;

// ---- Wire sizes -----------------------------------------------------------------------------
constexpr std::size_t kGreetingBytes = 8 + 8 + 2;  // NBDMAGIC, IHAVEOPT, handshake flags
constexpr std::size_t kClientFlagsBytes = 4;
constexpr std::size_t kOptionHeaderBytes = 8 + 4 + 4;           // IHAVEOPT, option, length
constexpr std::size_t kOptionReplyHeaderBytes = 8 + 4 + 4 + 4;  // magic, option, type, length
constexpr std::size_t kExportNameTrailerBytes = 8 + 2;          // size, transmission flags
constexpr std::size_t kExportNameZeroBytes = 124;               // unless both sides said NO_ZEROES
constexpr std::size_t kRequestBytes = 4 + 2 + 2 + 8 + 8 + 4;
constexpr std::size_t kSimpleReplyBytes = 4 + 4 + 8;
constexpr std::size_t kStructuredReplyBytes = 4 + 2 + 2 + 8 + 4;
constexpr std::size_t kOffsetDataHeaderBytes = kStructuredReplyBytes + 8;  // + the data offset
static_assert(kGreetingBytes == 18 && kOptionHeaderBytes == 16 && kOptionReplyHeaderBytes == 20);
static_assert(kRequestBytes == 28 && kSimpleReplyBytes == 16 && kStructuredReplyBytes == 20);

// ---- keel's limits --------------------------------------------------------------------------
// The protocol caps names and descriptions at 4096 bytes.
constexpr std::size_t kMaxStringBytes = 4096;
// The INFO/GO option: name length, name, count of requests, requests. Requests are u16 each; a
// client asking for more than kMaxInfoRequests is refused as invalid.
constexpr std::size_t kMaxInfoRequests = 64;
constexpr std::size_t kMaxOptionDataBytes = 4 + kMaxStringBytes + 2 + 2 * kMaxInfoRequests;
// A negotiation that goes on for more options than this is a client looping: closed.
constexpr std::size_t kMaxOptionsPerHandshake = 64;
// An option reply's text (an error message) is bounded so that its length fits the header.
constexpr std::size_t kMaxMessageBytes = 1024;

// Block sizes advertised with NBD_INFO_BLOCK_SIZE. Any alignment works (minimum 1); 4 KiB is the
// volume's block (the dirty bitmap's unit); 32 MiB bounds a read or write payload.
constexpr std::uint32_t kMinimumBlockBytes = 1;
constexpr std::uint32_t kPreferredBlockBytes = 4096;
constexpr std::uint32_t kMaximumPayloadBytes = 32u << 20;
static_assert(kMinimumBlockBytes <= kPreferredBlockBytes);
static_assert(kPreferredBlockBytes <= kMaximumPayloadBytes);
static_assert(kMaximumPayloadBytes % kPreferredBlockBytes == 0);
// A read reply carries all its data in one OFFSET_DATA chunk, whose u32 length includes the
// 8-byte offset.
static_assert(kMaximumPayloadBytes <= 0xffffffffu - 8);
// Requests read ahead and served concurrently on one connection.
constexpr std::size_t kMaxRequestsInFlight = 64;

}  // namespace keel::nbd
