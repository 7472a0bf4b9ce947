// Encoding and decoding of the ring's packets; wire.hpp states the format's rules.
//
// Layout (all integers big-endian; "list of X" is a u16 count followed by the items):
//   header       magic u16 | version u8 | type u8 | sender u32
//   RingId       seq u64 | rep u32
//   Message      ring RingId | seq u64 | origin u32 | flags u8 (bit 0: safe) | list of Chunk
//   Chunk        offset u32 | total_bytes u32 | length u32 | length bytes of data
//   McastPacket  has_recovered u8 | Message | Message (only if has_recovered)
//   Token        ring RingId | token_seq u64 | seq u64 | fcc u32 | backlog u32 |
//                recovery_pending u8 | stable_rotations u8 | list of u64 received_up_to |
//                list of u64 retransmit_requests
//   Join         ring_seq_seen u64 | list of u32 proc | list of u32 fail
//   CommitToken  ring RingId | token_seq u64 | list of CommitEntry
//   CommitEntry  node u32 | old_ring RingId | old_received_up_to u64 | old_high_seq u64 |
//                old_safe_up_to u64 | filled u8
//   Probe        ring RingId | list of u32 members | list of u32 heard
//   Wake         ring RingId
//   Leave        ring RingId
//
// Every value has exactly one encoding (booleans are 0 or 1, unused flag bits are 0, ordered lists
// are strictly increasing), so when decode(bytes) succeeds, encode() of the result gives back
// exactly `bytes`; the fuzz target checks this. The same checks guard both directions: encode()
// asserts them (a bad packet built here is a bug), decode() reports them (a bad packet received
// is an operating error).
#include "core/ring/wire.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>

#include "core/common/assert.hpp"
#include "core/common/problem_reader.hpp"
#include "core/ring/limits.hpp"

namespace keel::ring::wire {
namespace {

// Sizes of the fixed parts of the layout above.
constexpr std::size_t kRingIdBytes = 8 + 4;
constexpr std::size_t kMessageFixedBytes = kRingIdBytes + 8 + 4 + 1 + 2;  // up to the chunks
constexpr std::size_t kChunkHeaderBytes = 4 + 4 + 4;
constexpr std::size_t kCommitEntryBytes = 4 + kRingIdBytes + 8 + 8 + 8 + 1;
constexpr std::uint8_t kFlagSafe = 0x01;

static_assert(kHeaderBytes == 2 + 1 + 1 + 4, "magic, version, type, sender");
// The largest fixed part of an mcast packet: the header, has_recovered and two message headers
// (the outer message has no chunks when it carries a recovered one).
static_assert(kHeaderBytes + 1 + 2 * kMessageFixedBytes <= kMcastOverheadBytes);
static_assert(kChunkHeaderBytes <= kChunkOverheadBytes);
// List counts travel as u16; chunk offsets and sizes as u32.
static_assert(kMaxNodes <= 0xffff && kMaxRetransmitRequests <= 0xffff);
static_assert(kMaxChunksPerMessage <= 0xffff);
static_assert(kMaxApplicationMessageBytes <= std::numeric_limits<std::uint32_t>::max());

// The largest control packets, with every list full. Each must fit in the smallest packet size
// the tunables accept (limits.hpp), as the ring never splits them.
constexpr std::size_t kLargestTokenBytes = kHeaderBytes + kRingIdBytes + 8 + 8 + 4 + 4 + 1 + 1 + 2 +
                                           8 * kMaxNodes + 2 + 8 * kMaxRetransmitRequests;
constexpr std::size_t kLargestJoinBytes = kHeaderBytes + 8 + 2 * (2 + 4 * kMaxNodes);
constexpr std::size_t kLargestProbeBytes = kHeaderBytes + kRingIdBytes + 2 * (2 + 4 * kMaxNodes);
constexpr std::size_t kLargestCommitTokenBytes =
    kHeaderBytes + kRingIdBytes + 8 + 2 + kCommitEntryBytes * kMaxNodes;
static_assert(kLargestTokenBytes <= kMinPacketBytes);
static_assert(kLargestJoinBytes <= kMinPacketBytes);
static_assert(kLargestProbeBytes <= kMinPacketBytes);
static_assert(kLargestCommitTokenBytes <= kMinPacketBytes);

// ---- Checks shared by encode() (asserted) and decode() (reported) ----------------------------

using Problem = std::optional<std::string>;

bool valid_node(NodeId id) { return id != kNoNode && id != kAllNodes; }

template <typename T, typename Key>
bool strictly_increasing(const std::vector<T>& items, Key key) {
  return std::adjacent_find(items.begin(), items.end(), [&](const T& a, const T& b) {
           return key(a) >= key(b);
         }) == items.end();
}

Problem check_count(std::size_t count, std::size_t limit, std::string_view what) {
  if (count <= limit) return std::nullopt;
  return std::string(what) + " longer than " + std::to_string(limit);
}

Problem check_node_list(const std::vector<NodeId>& nodes, std::string_view what) {
  if (auto problem = check_count(nodes.size(), kMaxNodes, what)) return problem;
  for (NodeId id : nodes) {
    if (!valid_node(id)) return std::string(what) + " holds invalid node id " + std::to_string(id);
  }
  if (!strictly_increasing(nodes, [](NodeId id) { return id; })) {
    return std::string(what) + " is not strictly increasing";
  }
  return std::nullopt;
}

// A chunk covers [offset, offset + length) of a message of total_bytes bytes.
Problem check_chunk_range(std::uint64_t offset, std::uint64_t total_bytes, std::uint64_t length) {
  if (total_bytes > kMaxApplicationMessageBytes) {
    return "chunk total_bytes " + std::to_string(total_bytes) + " exceeds " +
           std::to_string(kMaxApplicationMessageBytes);
  }
  if (length > total_bytes || offset > total_bytes - length) {  // offset + length, no overflow
    return "chunk at offset " + std::to_string(offset) + " with " + std::to_string(length) +
           " bytes exceeds total_bytes " + std::to_string(total_bytes);
  }
  if (length == 0 && total_bytes != 0) return std::string("empty chunk of a non-empty message");
  return std::nullopt;
}

Problem check_message(const Message& message) {
  if (!valid_node(message.origin)) {
    return "message has invalid origin " + std::to_string(message.origin);
  }
  if (auto problem = check_count(message.chunks.size(), kMaxChunksPerMessage, "chunk list")) {
    return problem;
  }
  for (const Chunk& chunk : message.chunks) {
    if (auto problem = check_chunk_range(chunk.offset, chunk.total_bytes, chunk.data.size())) {
      return problem;
    }
  }
  return std::nullopt;
}

Problem check(const McastPacket& mcast) {
  if (auto problem = check_message(mcast.message)) return problem;
  if (!mcast.recovered) return std::nullopt;
  if (!mcast.message.chunks.empty()) {
    return std::string("message carrying a recovered message has chunks of its own");
  }
  return check_message(*mcast.recovered);
}

Problem check(const Token& token) {
  if (auto problem = check_count(token.received_up_to.size(), kMaxNodes, "received_up_to list")) {
    return problem;
  }
  const auto& requests = token.retransmit_requests;
  if (auto problem =
          check_count(requests.size(), kMaxRetransmitRequests, "retransmit request list")) {
    return problem;
  }
  if (!strictly_increasing(requests, [](std::uint64_t seq) { return seq; })) {
    return std::string("retransmit request list is not strictly increasing");
  }
  return std::nullopt;
}

Problem check(const Join& join) {
  if (auto problem = check_node_list(join.proc, "proc list")) return problem;
  return check_node_list(join.fail, "fail list");
}

Problem check(const CommitToken& commit) {
  if (auto problem = check_count(commit.entries.size(), kMaxNodes, "entry list")) return problem;
  for (const CommitEntry& entry : commit.entries) {
    if (!valid_node(entry.node)) return "entry for invalid node id " + std::to_string(entry.node);
  }
  if (!strictly_increasing(commit.entries, [](const CommitEntry& e) { return e.node; })) {
    return std::string("entry list is not strictly increasing by node");
  }
  return std::nullopt;
}

Problem check(const Probe& probe) {
  if (auto problem = check_node_list(probe.members, "member list")) return problem;
  return check_node_list(probe.heard, "heard list");
}

Problem check(const Wake&) { return std::nullopt; }
Problem check(const Leave&) { return std::nullopt; }

PacketType type_of(const McastPacket&) { return PacketType::mcast; }
PacketType type_of(const Token&) { return PacketType::token; }
PacketType type_of(const Join&) { return PacketType::join; }
PacketType type_of(const CommitToken&) { return PacketType::commit_token; }
PacketType type_of(const Probe&) { return PacketType::probe; }
PacketType type_of(const Wake&) { return PacketType::wake; }
PacketType type_of(const Leave&) { return PacketType::leave; }

const char* type_name(PacketType type) {
  switch (type) {
    case PacketType::mcast:
      return "mcast";
    case PacketType::token:
      return "token";
    case PacketType::join:
      return "join";
    case PacketType::commit_token:
      return "commit token";
    case PacketType::probe:
      return "probe";
    case PacketType::wake:
      return "wake";
    case PacketType::leave:
      return "leave";
  }
  return "unknown";
}

bool known_type(std::uint8_t type) {
  return type >= static_cast<std::uint8_t>(PacketType::mcast) &&
         type <= static_cast<std::uint8_t>(PacketType::leave);
}

// ---- Encoding --------------------------------------------------------------------------------

void write(ByteWriter& out, RingId ring) {
  out.u64(ring.seq);
  out.u32(ring.rep);
}

void write_u64_list(ByteWriter& out, const std::vector<std::uint64_t>& items) {
  out.u16(static_cast<std::uint16_t>(items.size()));
  for (std::uint64_t item : items) out.u64(item);
}

void write_node_list(ByteWriter& out, const std::vector<NodeId>& nodes) {
  out.u16(static_cast<std::uint16_t>(nodes.size()));
  for (NodeId node : nodes) out.u32(node);
}

void write(ByteWriter& out, const Message& message) {
  write(out, message.ring);
  out.u64(message.seq);
  out.u32(message.origin);
  out.u8(message.safe ? kFlagSafe : 0);
  out.u16(static_cast<std::uint16_t>(message.chunks.size()));
  for (const Chunk& chunk : message.chunks) {
    out.u32(chunk.offset);
    out.u32(chunk.total_bytes);
    out.u32(static_cast<std::uint32_t>(chunk.data.size()));
    out.bytes(chunk.data);
  }
}

void write(ByteWriter& out, const McastPacket& mcast) {
  out.u8(mcast.recovered ? 1 : 0);
  write(out, mcast.message);
  if (mcast.recovered) write(out, *mcast.recovered);
}

void write(ByteWriter& out, const Token& token) {
  write(out, token.ring);
  out.u64(token.token_seq);
  out.u64(token.seq);
  out.u32(token.fcc);
  out.u32(token.backlog);
  out.u8(token.recovery_pending ? 1 : 0);
  out.u8(token.stable_rotations);
  write_u64_list(out, token.received_up_to);
  write_u64_list(out, token.retransmit_requests);
}

void write(ByteWriter& out, const Join& join) {
  out.u64(join.ring_seq_seen);
  write_node_list(out, join.proc);
  write_node_list(out, join.fail);
}

void write(ByteWriter& out, const CommitToken& commit) {
  write(out, commit.ring);
  out.u64(commit.token_seq);
  out.u16(static_cast<std::uint16_t>(commit.entries.size()));
  for (const CommitEntry& entry : commit.entries) {
    out.u32(entry.node);
    write(out, entry.old_ring);
    out.u64(entry.old_received_up_to);
    out.u64(entry.old_high_seq);
    out.u64(entry.old_safe_up_to);
    out.u8(entry.filled ? 1 : 0);
  }
}

void write(ByteWriter& out, const Probe& probe) {
  write(out, probe.ring);
  write_node_list(out, probe.members);
  write_node_list(out, probe.heard);
}

void write(ByteWriter& out, const Wake& wake) { write(out, wake.ring); }
void write(ByteWriter& out, const Leave& leave) { write(out, leave.ring); }

// The most bytes encode() may produce for `mcast`, by the overhead constants in wire.hpp.
std::size_t mcast_size_bound(const McastPacket& mcast) {
  std::size_t bound = kMcastOverheadBytes;
  for (const Message* message : {&mcast.message, mcast.recovered ? &*mcast.recovered : nullptr}) {
    if (message == nullptr) continue;
    for (const Chunk& chunk : message->chunks) bound += kChunkOverheadBytes + chunk.data.size();
  }
  return bound;
}

// ---- Decoding --------------------------------------------------------------------------------

std::string hex(unsigned value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%x", value);
  return text;
}

// A ByteReader that also remembers why it failed. Once failed, every read returns zero or empty
// and nothing more is allocated, so callers check ok() once at the end.
class Reader : public ProblemReader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : ProblemReader(in, "packet truncated") {}

  RingId ring_id() {
    RingId ring;
    ring.seq = u64();
    ring.rep = u32();
    return ring;
  }

  // Reads a list count. It must be within `limit`, and the items (at least `item_bytes` each)
  // must fit in what is left, before anyone reserves memory for them.
  std::size_t count(std::size_t limit, std::size_t item_bytes, std::string_view what) {
    const std::size_t items = u16();
    if (auto problem = check_count(items, limit, what)) {
      fail(*problem);
      return 0;
    }
    if (items * item_bytes > remaining()) {
      fail_truncated();
      return 0;
    }
    return items;
  }

  std::vector<NodeId> node_list(std::string_view what) {
    std::vector<NodeId> nodes(count(kMaxNodes, 4, what));
    for (NodeId& node : nodes) node = u32();
    return nodes;
  }

  std::vector<std::uint64_t> u64_list(std::size_t limit, std::string_view what) {
    std::vector<std::uint64_t> items(count(limit, 8, what));
    for (std::uint64_t& item : items) item = u64();
    return items;
  }

  Chunk chunk() {
    Chunk chunk;
    chunk.offset = u32();
    chunk.total_bytes = u32();
    const std::uint32_t length = u32();
    if (!ok()) return chunk;
    if (auto problem = check_chunk_range(chunk.offset, chunk.total_bytes, length)) {
      fail(*problem);
      return chunk;
    }
    const auto data = bytes(length);  // empty, and the reader failed, if truncated
    chunk.data.assign(data.begin(), data.end());
    return chunk;
  }

  Message message() {
    Message message;
    message.ring = ring_id();
    message.seq = u64();
    message.origin = u32();
    const std::uint8_t flags = u8();
    if ((flags & ~kFlagSafe) != 0) fail("message flags have unknown bits (" + hex(flags) + ")");
    message.safe = (flags & kFlagSafe) != 0;
    const std::size_t chunks = count(kMaxChunksPerMessage, kChunkHeaderBytes, "chunk list");
    message.chunks.reserve(chunks);
    for (std::size_t i = 0; i < chunks && ok(); ++i) message.chunks.push_back(chunk());
    return message;
  }
};

McastPacket read_mcast(Reader& in) {
  McastPacket mcast;
  const bool has_recovered = in.boolean("has_recovered");
  mcast.message = in.message();
  if (has_recovered && in.ok()) mcast.recovered = in.message();
  return mcast;
}

Token read_token(Reader& in) {
  Token token;
  token.ring = in.ring_id();
  token.token_seq = in.u64();
  token.seq = in.u64();
  token.fcc = in.u32();
  token.backlog = in.u32();
  token.recovery_pending = in.boolean("recovery_pending");
  token.stable_rotations = in.u8();
  token.received_up_to = in.u64_list(kMaxNodes, "received_up_to list");
  token.retransmit_requests = in.u64_list(kMaxRetransmitRequests, "retransmit request list");
  return token;
}

Join read_join(Reader& in) {
  Join join;
  join.ring_seq_seen = in.u64();
  join.proc = in.node_list("proc list");
  join.fail = in.node_list("fail list");
  return join;
}

CommitToken read_commit_token(Reader& in) {
  CommitToken commit;
  commit.ring = in.ring_id();
  commit.token_seq = in.u64();
  commit.entries.resize(in.count(kMaxNodes, kCommitEntryBytes, "entry list"));
  for (CommitEntry& entry : commit.entries) {
    entry.node = in.u32();
    entry.old_ring = in.ring_id();
    entry.old_received_up_to = in.u64();
    entry.old_high_seq = in.u64();
    entry.old_safe_up_to = in.u64();
    entry.filled = in.boolean("filled");
  }
  return commit;
}

Probe read_probe(Reader& in) {
  Probe probe;
  probe.ring = in.ring_id();
  probe.members = in.node_list("member list");
  probe.heard = in.node_list("heard list");
  return probe;
}

Wake read_wake(Reader& in) { return Wake{in.ring_id()}; }
Leave read_leave(Reader& in) { return Leave{in.ring_id()}; }

Body read_body(Reader& in, PacketType type) {
  switch (type) {
    case PacketType::mcast:
      return read_mcast(in);
    case PacketType::token:
      return read_token(in);
    case PacketType::join:
      return read_join(in);
    case PacketType::commit_token:
      return read_commit_token(in);
    case PacketType::probe:
      return read_probe(in);
    case PacketType::wake:
      return read_wake(in);
    case PacketType::leave:
      return read_leave(in);
  }
  // decode() accepts only known types before it gets here.
  detail::assert_failed("known packet type", __FILE__, __LINE__);
}

}  // namespace

Bytes encode(const Packet& packet) {
  const PacketType type = std::visit([](const auto& body) { return type_of(body); }, packet.body);
  Problem problem = std::visit([](const auto& body) { return check(body); }, packet.body);
  if (!valid_node(packet.sender)) problem = "invalid sender " + std::to_string(packet.sender);
  if (problem) {
    std::fprintf(stderr, "keel: encoding bad %s: %s\n", type_name(type), problem->c_str());
  }
  KEEL_ASSERT(!problem);

  Bytes bytes;
  ByteWriter out(bytes);
  out.u16(kMagic);
  out.u8(kVersion);
  out.u8(static_cast<std::uint8_t>(type));
  out.u32(packet.sender);
  KEEL_ASSERT(out.size() == kHeaderBytes);
  std::visit([&](const auto& body) { write(out, body); }, packet.body);
  if (const auto* mcast = std::get_if<McastPacket>(&packet.body)) {
    KEEL_ASSERT(bytes.size() <= mcast_size_bound(*mcast));
  }
  return bytes;
}

Result<Packet> decode(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kHeaderBytes) {
    return Error{"packet of " + std::to_string(bytes.size()) + " bytes is shorter than a header"};
  }
  Reader in(bytes);
  const std::uint16_t magic = in.u16();
  const std::uint8_t version = in.u8();
  const std::uint8_t type_byte = in.u8();
  Packet packet;
  packet.sender = in.u32();
  if (magic != kMagic) return Error{"bad magic " + hex(magic)};
  if (version != kVersion) return Error{"unsupported version " + std::to_string(version)};
  if (!known_type(type_byte)) return Error{"unknown packet type " + std::to_string(type_byte)};
  if (!valid_node(packet.sender)) return Error{"invalid sender " + std::to_string(packet.sender)};

  const auto type = static_cast<PacketType>(type_byte);
  const std::string name = type_name(type);
  packet.body = read_body(in, type);
  if (!in.ok()) return Error{name + ": " + in.problem()};
  if (in.remaining() != 0) {
    return Error{name + ": " + std::to_string(in.remaining()) + " trailing bytes"};
  }
  Problem problem = std::visit([](const auto& body) { return check(body); }, packet.body);
  if (problem) return Error{name + ": " + *problem};
  return packet;
}

}  // namespace keel::ring::wire
