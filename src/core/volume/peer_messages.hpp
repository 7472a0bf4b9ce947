// PeerMessage: what the two replicas of a volume say to each other over the replication link
// (a TCP stream per volume, see io/replication_link). encode()/decode() give the wire form:
// a 16-byte frame header (magic, type, flags, body length) then the body, big-endian; data
// payloads travel as the frame's tail so that the link can send them from the request's buffer
// without copying (encode_header() gives the bytes before the payload).
//
// decode() is the only parser of peer input: it bounds-checks every length against kMaxFrameBody
// and the volume geometry the caller passes, and returns an error for anything malformed (the
// link is then closed). It is fuzzed (fuzz/volume_wire_fuzz.cpp), and the volume simulator sends
// every message through it as the link does (sim/volume_wire.hpp).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "core/common/result.hpp"
#include "core/volume/types.hpp"

namespace keel::volume {

// 2: Hello carries survived_primary; 3: Barrier carries checkpoint
constexpr std::uint32_t kPeerProtocolVersion = 5;
constexpr std::size_t kFrameHeaderBytes = 16;
constexpr std::uint32_t kMaxDataBytes = 32u << 20;  // one write, as NBD's maximum request
constexpr std::uint32_t kMaxFrameBody = kMaxDataBytes + 64;
constexpr std::size_t kMaxBitmapWordsPerFrame = 8192;

// First message on a fresh connection, both ways.
struct Hello {
  std::uint32_t protocol_version = kPeerProtocolVersion;
  std::uint64_t volume_digest = 0;  // name and size: refuses a peer configured differently
  NodeId node = kNoNode;
  Role role = Role::Secondary;
  DiskState disk = DiskState::Inconsistent;
  Generations generations;
  bool primary_at_crash = false;
  bool discard_local = false;
  bool survived_primary = false;  // ConnectSide::survived_primary (generations.hpp)
  std::uint64_t dirty_blocks = 0;
  bool blank = false;  // PersistentState::blank
};

// The sender's dirty bitmap words (index, word), sent after Hello when a resync is planned.
struct BitmapWords {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> words;
  bool last = false;
};

// An application write (or zeroing: TRIM and WRITE_ZEROES) replicated from the primary, in
// issue order. `epoch` counts barriers: the secondary starts no write of epoch e+1 before the
// barrier ending epoch e is durable, so its copy is always a prefix of the primary's at epoch
// granularity.
struct DataWrite {
  std::uint64_t sequence = 0;
  std::uint64_t epoch = 0;
  std::uint64_t offset = 0;
  std::uint64_t zero_length = 0;  // non-zero: write zeroes over this many bytes, no payload
  bool fua = false;               // acknowledge only once durable
  Payload data;                   // the bytes (empty for zeroing)
};
struct WriteAck {
  std::uint64_t sequence = 0;
  int error = 0;
};

// Ends `epoch`: acknowledged once every write of the epoch is durable on the secondary.
struct Barrier {
  std::uint64_t epoch = 0;
  // Inserted by the primary to bound its transfer log, not for an application's flush: the
  // secondary goes on applying later writes while it makes the epoch durable (no application
  // ordering rests on this boundary).
  bool checkpoint = false;
};
struct BarrierAck {
  std::uint64_t epoch = 0;
  int error = 0;
};

// Resync: blocks of the source's copy for the target, and the target's acknowledgement.
struct ResyncData {
  std::uint64_t offset = 0;
  Payload data;
};
struct ResyncAck {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  int error = 0;
};
// The source has sent every block; the target becomes UpToDate with these generations once its
// writes are durable.
struct ResyncDone {
  Generations generations;
};

// Online verify: the primary asks for a digest of a range of the secondary's copy.
struct VerifyRequest {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};
struct VerifyReply {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t digest = 0;
  int error = 0;  // the read failed: no digest, the chunk was not compared
};

// A role or disk state change outside the handshake (promote, demote, outdated).
struct StateUpdate {
  Role role = Role::Secondary;
  DiskState disk = DiskState::Inconsistent;
  Generations generations;
};

// Why the sender refuses this connection (split brain, unrelated data, two primaries, ...): the
// receiver shows it in status and does not reconnect until something changes.
struct Refuse {
  LinkState reason = LinkState::StandAlone;
  std::string text;
};

using PeerMessage =
    std::variant<Hello, BitmapWords, DataWrite, WriteAck, Barrier, BarrierAck, ResyncData,
                 ResyncAck, ResyncDone, VerifyRequest, VerifyReply, StateUpdate, Refuse>;

// The whole frame, payload included (tests, small messages).
Bytes encode(const PeerMessage& message);
// The frame without the payload bytes of DataWrite/ResyncData (which follow it on the wire).
Bytes encode_header(const PeerMessage& message);
// The body length a frame header announces, or an error for a bad magic/type/length.
struct FrameHeader {
  std::uint8_t type = 0;
  std::uint32_t body_bytes = 0;
};
Result<FrameHeader> decode_frame_header(const std::byte* bytes, std::size_t size);
// A whole frame (header + body). `volume_bytes` bounds offsets and lengths.
Result<PeerMessage> decode(const std::byte* bytes, std::size_t size, std::uint64_t volume_bytes);
// Without a copy of the payload: the link reads the frame header and the fixed part of the body
// (payload_offset(type) bytes of it; for types without payload the whole body), then reads the
// payload tail straight into its own buffer and hands both here.
std::size_t payload_offset(std::uint8_t type);  // 0 for types without payload
bool has_payload(std::uint8_t type);
Result<PeerMessage> decode_split(const std::byte* head, std::size_t head_size, Payload payload,
                                 std::uint64_t volume_bytes);

// A 64-bit digest of a block range's bytes (FNV-1a), for verify.
std::uint64_t digest_bytes(const std::byte* bytes, std::size_t size);

}  // namespace keel::volume
