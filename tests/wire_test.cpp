// Tests for the ring's wire codec: round trips, size bounds, and every rejection rule of decode()
// exercised by a hand-made malformed packet (built byte by byte, so the test does not depend on
// encode() to produce bad input).
#include "core/ring/wire.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ring/limits.hpp"

namespace keel::ring::wire {
namespace {

// ---- Helpers ---------------------------------------------------------------------------------

Bytes filled_bytes(std::size_t size, std::uint8_t first = 1) {
  Bytes bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(first + i);
  return bytes;
}

Chunk whole_chunk(Bytes data) {
  const auto total = static_cast<std::uint32_t>(data.size());
  return Chunk{0, total, std::move(data)};
}

Message message(NodeId origin, std::vector<Chunk> chunks, bool safe = false) {
  return Message{RingId{9, 2}, 1234, origin, safe, std::move(chunks)};
}

std::vector<NodeId> nodes_from(NodeId first, std::size_t count) {
  std::vector<NodeId> nodes;
  for (std::size_t i = 0; i < count; ++i) nodes.push_back(first + static_cast<NodeId>(i));
  return nodes;
}

// One valid packet of each type, with full lists where the type has them.
std::vector<Packet> sample_packets() {
  Token token{RingId{~0ull, kAllNodes - 1}, ~0ull, 77, ~0u, 3, true, 255, {}, {}};
  for (std::size_t i = 0; i < kMaxNodes; ++i) token.received_up_to.push_back(~0ull - i);
  for (std::size_t i = 0; i < kMaxRetransmitRequests; ++i) token.retransmit_requests.push_back(i);
  CommitToken commit{RingId{5, 1}, 8, {}};
  for (NodeId node : nodes_from(1, kMaxNodes)) {
    commit.entries.push_back(
        CommitEntry{node, RingId{4, node}, node * 10ull, node * 11ull, node * 9ull, node % 2 == 0});
  }
  McastPacket plain{message(3, {whole_chunk(filled_bytes(100))}, true), std::nullopt};
  McastPacket recovering{
      message(3, {}), message(4, {Chunk{0, 10, filled_bytes(4)}, Chunk{4, 10, filled_bytes(6)}})};
  return {
      Packet{1, plain},
      Packet{kAllNodes - 1, recovering},
      Packet{2, token},
      Packet{3, Join{42, nodes_from(1, kMaxNodes), nodes_from(kAllNodes - 3, 2)}},
      Packet{4, commit},
      Packet{5, Probe{RingId{}, nodes_from(10, kMaxNodes), {1, 5, 9}}},
      Packet{6, Wake{RingId{3, 3}}},
      Packet{7, Leave{RingId{3, 3}}},
  };
}

std::string decode_error(const Bytes& bytes) {
  auto result = decode(bytes);
  return result.ok() ? std::string("<decoded>") : result.error().message;
}

// decode() rejects `bytes` with a message containing `expected`.
::testing::AssertionResult rejects(const Bytes& bytes, std::string_view expected) {
  const std::string error = decode_error(bytes);
  if (error != "<decoded>" && error.find(expected) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected an error containing \"" << expected << "\", got \"" << error << "\"";
}

void expect_round_trip(const Packet& packet) {
  const Bytes bytes = encode(packet);
  auto decoded = decode(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), packet);
  EXPECT_EQ(encode(decoded.value()), bytes);
}

// Hand-made packets: the layout written out field by field.
Bytes header(PacketType type, NodeId sender = 7) {
  Bytes bytes;
  ByteWriter out(bytes);
  out.u16(kMagic);
  out.u8(kVersion);
  out.u8(static_cast<std::uint8_t>(type));
  out.u32(sender);
  return bytes;
}

void ring_id(ByteWriter& out) {
  out.u64(1);
  out.u32(1);
}

void u32_list(ByteWriter& out, const std::vector<std::uint32_t>& items) {
  out.u16(static_cast<std::uint16_t>(items.size()));
  for (std::uint32_t item : items) out.u32(item);
}

void u64_list(ByteWriter& out, const std::vector<std::uint64_t>& items) {
  out.u16(static_cast<std::uint16_t>(items.size()));
  for (std::uint64_t item : items) out.u64(item);
}

void message_head(ByteWriter& out, NodeId origin, std::uint8_t flags, std::uint16_t chunks) {
  ring_id(out);
  out.u64(1);  // seq
  out.u32(origin);
  out.u8(flags);
  out.u16(chunks);
}

void chunk(ByteWriter& out, std::uint32_t offset, std::uint32_t total, std::uint32_t length) {
  out.u32(offset);
  out.u32(total);
  out.u32(length);
  out.bytes(Bytes(length, 0xab));
}

// An mcast packet without a recovered message whose single chunk has the given fields.
Bytes mcast_with_chunk(std::uint32_t offset, std::uint32_t total, std::uint32_t length) {
  Bytes bytes = header(PacketType::mcast);
  ByteWriter out(bytes);
  out.u8(0);
  message_head(out, 3, 0, 1);
  chunk(out, offset, total, length);
  return bytes;
}

Bytes join_with(const std::vector<std::uint32_t>& proc, const std::vector<std::uint32_t>& fail) {
  Bytes bytes = header(PacketType::join);
  ByteWriter out(bytes);
  out.u64(5);
  u32_list(out, proc);
  u32_list(out, fail);
  return bytes;
}

Bytes probe_with(const std::vector<std::uint32_t>& members,
                 const std::vector<std::uint32_t>& heard) {
  Bytes bytes = header(PacketType::probe);
  ByteWriter out(bytes);
  ring_id(out);
  u32_list(out, members);
  u32_list(out, heard);
  return bytes;
}

Bytes token_with(const std::vector<std::uint64_t>& received, const std::vector<std::uint64_t>& asks,
                 std::uint8_t recovery_pending = 0) {
  Bytes bytes = header(PacketType::token);
  ByteWriter out(bytes);
  ring_id(out);
  out.u64(10);  // token_seq
  out.u64(20);  // seq
  out.u32(1);   // fcc
  out.u32(2);   // backlog
  out.u8(recovery_pending);
  out.u8(0);  // stable_rotations
  u64_list(out, received);
  u64_list(out, asks);
  return bytes;
}

struct RawEntry {
  std::uint32_t node;
  std::uint8_t filled = 0;
};

Bytes commit_with(const std::vector<RawEntry>& entries) {
  Bytes bytes = header(PacketType::commit_token);
  ByteWriter out(bytes);
  ring_id(out);
  out.u64(3);
  out.u16(static_cast<std::uint16_t>(entries.size()));
  for (const RawEntry& entry : entries) {
    out.u32(entry.node);
    ring_id(out);
    out.u64(4);  // old_received_up_to
    out.u64(5);  // old_high_seq
    out.u64(3);  // old_safe_up_to
    out.u8(entry.filled);
  }
  return bytes;
}

std::vector<std::uint32_t> ids(std::size_t count) { return nodes_from(1, count); }

std::vector<std::uint64_t> seqs(std::size_t count) {
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(100 + i);
  return out;
}

// ---- Round trips -----------------------------------------------------------------------------

TEST(WireRoundTrip, SamplesOfEveryType) {
  for (const Packet& packet : sample_packets()) expect_round_trip(packet);
}

TEST(WireRoundTrip, EmptyListsAndDefaults) {
  expect_round_trip(Packet{1, Token{}});
  expect_round_trip(Packet{1, Join{}});
  expect_round_trip(Packet{1, CommitToken{}});
  expect_round_trip(Packet{1, Probe{}});
  expect_round_trip(Packet{1, Wake{}});
  expect_round_trip(Packet{1, Leave{}});
  expect_round_trip(Packet{1, McastPacket{message(1, {}), std::nullopt}});
  expect_round_trip(Packet{1, McastPacket{message(1, {}), message(2, {})}});
}

TEST(WireRoundTrip, ZeroByteMessageAndPartialChunks) {
  expect_round_trip(Packet{1, McastPacket{message(1, {Chunk{0, 0, {}}}), std::nullopt}});
  const Chunk tail{kMaxApplicationMessageBytes - 3, kMaxApplicationMessageBytes, filled_bytes(3)};
  expect_round_trip(Packet{1, McastPacket{message(1, {tail}), std::nullopt}});
}

TEST(WireRoundTrip, MaxChunksPerMessage) {
  std::vector<Chunk> chunks;
  for (std::size_t i = 0; i < kMaxChunksPerMessage; ++i) chunks.push_back(whole_chunk({1, 2}));
  expect_round_trip(Packet{1, McastPacket{message(1, chunks), std::nullopt}});
  expect_round_trip(Packet{1, McastPacket{message(1, {}), message(2, chunks, true)}});
}

TEST(WireRoundTrip, DistinctPacketsEncodeDifferently) {
  const auto packets = sample_packets();
  for (std::size_t i = 0; i < packets.size(); ++i) {
    for (std::size_t j = i + 1; j < packets.size(); ++j) {
      EXPECT_NE(encode(packets[i]), encode(packets[j]));
    }
  }
}

TEST(WireEncode, HeaderLayout) {
  const Bytes bytes = encode(Packet{0x01020304, Wake{RingId{0x1112131415161718, 0x21222324}}});
  const Bytes expected = {0x4b, 0x4c, 1,    6,    1,    2,    3,    4,    0x11, 0x12,
                          0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24};
  EXPECT_EQ(bytes, expected);
}

// ---- Sizes -----------------------------------------------------------------------------------

std::size_t chunk_data_bytes(const McastPacket& mcast) {
  std::size_t total = 0;
  for (const Chunk& c : mcast.message.chunks) total += c.data.size();
  if (mcast.recovered) {
    for (const Chunk& c : mcast.recovered->chunks) total += c.data.size();
  }
  return total;
}

TEST(WireSize, RecoveredMcastWithinOverhead) {
  for (std::size_t chunks : {0, 1, 2, 17, 256}) {
    std::vector<Chunk> list(chunks, whole_chunk(filled_bytes(5)));
    const McastPacket mcast{message(kAllNodes - 1, {}), message(kAllNodes - 1, list)};
    const std::size_t size = encode(Packet{kAllNodes - 1, mcast}).size();
    EXPECT_LE(size - chunk_data_bytes(mcast), kMcastOverheadBytes + chunks * kChunkOverheadBytes)
        << chunks << " chunks";
  }
}

TEST(WireSize, PlainMcastWithinOverhead) {
  std::vector<Chunk> list(3, whole_chunk(filled_bytes(100)));
  const McastPacket mcast{message(1, list), std::nullopt};
  const std::size_t size = encode(Packet{1, mcast}).size();
  EXPECT_LE(size - chunk_data_bytes(mcast), kMcastOverheadBytes + 3 * kChunkOverheadBytes);
}

TEST(WireSize, EachChunkCostsAtMostItsOverhead) {
  const Packet one{1, McastPacket{message(1, {whole_chunk({1})}), std::nullopt}};
  const Packet two{1, McastPacket{message(1, {whole_chunk({1}), whole_chunk({1})}), std::nullopt}};
  EXPECT_LE(encode(two).size() - encode(one).size(), kChunkOverheadBytes + 1);
}

TEST(WireSize, FullPacketOfDataFitsSmallestPacketSize) {
  const std::size_t room = kMinPacketBytes - kMcastOverheadBytes - kChunkOverheadBytes;
  const McastPacket mcast{message(1, {}), message(2, {whole_chunk(filled_bytes(room))})};
  EXPECT_LE(encode(Packet{1, mcast}).size(), kMinPacketBytes);
}

TEST(WireSize, FullControlPacketsFitSmallestPacketSize) {
  for (const Packet& packet : sample_packets()) {
    if (std::holds_alternative<McastPacket>(packet.body)) continue;
    EXPECT_LE(encode(packet).size(), kMinPacketBytes) << packet.body.index();
  }
}

// ---- Header rejections -----------------------------------------------------------------------

TEST(WireReject, ShortInput) {
  EXPECT_TRUE(rejects({}, "shorter than a header"));
  EXPECT_TRUE(rejects({0x4b, 0x4c, 1, 6, 0, 0, 0}, "shorter than a header"));
}

TEST(WireReject, BadMagic) {
  Bytes bytes = encode(Packet{1, Wake{}});
  bytes[0] = 0x4c;
  EXPECT_TRUE(rejects(bytes, "bad magic 0x4c4c"));
}

TEST(WireReject, UnsupportedVersion) {
  Bytes bytes = encode(Packet{1, Wake{}});
  bytes[2] = 2;
  EXPECT_TRUE(rejects(bytes, "unsupported version 2"));
  bytes[2] = 0;
  EXPECT_TRUE(rejects(bytes, "unsupported version 0"));
}

TEST(WireReject, UnknownType) {
  Bytes bytes = encode(Packet{1, Wake{}});
  bytes[3] = 0;
  EXPECT_TRUE(rejects(bytes, "unknown packet type 0"));
  bytes[3] = 8;
  EXPECT_TRUE(rejects(bytes, "unknown packet type 8"));
}

TEST(WireReject, InvalidSender) {
  Bytes bytes = header(PacketType::wake, kNoNode);
  ByteWriter out(bytes);
  ring_id(out);
  EXPECT_TRUE(rejects(bytes, "invalid sender 0"));
  bytes = header(PacketType::wake, kAllNodes);
  ByteWriter again(bytes);
  ring_id(again);
  EXPECT_TRUE(rejects(bytes, "invalid sender 4294967295"));
}

TEST(WireReject, TrailingBytes) {
  for (const Packet& packet : sample_packets()) {
    Bytes bytes = encode(packet);
    bytes.push_back(0);
    EXPECT_TRUE(rejects(bytes, "1 trailing bytes"));
  }
}

// Every proper prefix of a valid packet is rejected, and decoding it reads nothing beyond it
// (the prefix is copied to its own allocation so that AddressSanitizer would catch an overread).
TEST(WireReject, TruncationAtEveryOffset) {
  for (const Packet& packet : sample_packets()) {
    const Bytes bytes = encode(packet);
    for (std::size_t size = 0; size < bytes.size(); ++size) {
      const Bytes prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
      EXPECT_FALSE(decode(prefix).ok()) << "prefix of " << size << " bytes decoded";
    }
  }
}

// ---- Node lists ------------------------------------------------------------------------------

TEST(WireReject, HandMadeBaselinesDecode) {
  EXPECT_TRUE(decode(join_with(ids(kMaxNodes), {})).ok());
  EXPECT_TRUE(decode(probe_with({}, ids(kMaxNodes))).ok());
  EXPECT_TRUE(decode(token_with(seqs(kMaxNodes), seqs(kMaxRetransmitRequests), 1)).ok());
  std::vector<RawEntry> entries;
  for (std::uint32_t node : ids(kMaxNodes)) entries.push_back({node, 1});
  EXPECT_TRUE(decode(commit_with(entries)).ok());
  EXPECT_TRUE(decode(mcast_with_chunk(0, 5, 5)).ok());
}

TEST(WireReject, InvalidNodeIdInList) {
  EXPECT_TRUE(rejects(join_with({0, 1}, {}), "join: proc list holds invalid node id 0"));
  EXPECT_TRUE(
      rejects(join_with({1}, {2, kAllNodes}), "fail list holds invalid node id 4294967295"));
  EXPECT_TRUE(rejects(probe_with({0}, {}), "probe: member list holds invalid node id 0"));
  EXPECT_TRUE(rejects(probe_with({}, {kAllNodes}), "heard list holds invalid node id"));
}

TEST(WireReject, NodeListNotStrictlyIncreasing) {
  EXPECT_TRUE(rejects(join_with({1, 1}, {}), "proc list is not strictly increasing"));
  EXPECT_TRUE(rejects(join_with({}, {3, 2}), "fail list is not strictly increasing"));
  EXPECT_TRUE(rejects(probe_with({1, 3, 2}, {}), "member list is not strictly increasing"));
  EXPECT_TRUE(rejects(probe_with({}, {5, 5}), "heard list is not strictly increasing"));
}

TEST(WireReject, NodeListTooLong) {
  EXPECT_TRUE(rejects(join_with(ids(kMaxNodes + 1), {}), "proc list longer than 28"));
  EXPECT_TRUE(rejects(probe_with({}, ids(kMaxNodes + 1)), "heard list longer than 28"));
}

// A huge count with no items behind it is refused by its limit, before any allocation.
TEST(WireReject, HugeCountWithoutItems) {
  Bytes bytes = header(PacketType::join);
  ByteWriter out(bytes);
  out.u64(5);
  out.u16(0xffff);
  EXPECT_TRUE(rejects(bytes, "proc list longer than 28"));
}

// A count within its limit but beyond the bytes left is a truncated packet.
TEST(WireReject, CountBeyondRemainingBytes) {
  Bytes bytes = join_with({1, 2}, {});
  bytes.erase(bytes.end() - 2 - 4, bytes.end());  // drop the fail list and the last proc item
  bytes.push_back(0);
  bytes.push_back(0);  // six bytes follow the count of two proc items: fewer than they need
  EXPECT_TRUE(rejects(bytes, "join: packet truncated"));
}

// ---- Token -----------------------------------------------------------------------------------

TEST(WireReject, TokenLists) {
  EXPECT_TRUE(rejects(token_with(seqs(kMaxNodes + 1), {}), "token: received_up_to list longer"));
  EXPECT_TRUE(rejects(token_with({}, seqs(kMaxRetransmitRequests + 1)),
                      "token: retransmit request list longer than 64"));
  EXPECT_TRUE(
      rejects(token_with({}, {4, 4}), "retransmit request list is not strictly increasing"));
  EXPECT_TRUE(
      rejects(token_with({}, {5, 4}), "retransmit request list is not strictly increasing"));
}

TEST(WireReject, TokenReceivedUpToNeedNotBeSorted) {
  EXPECT_TRUE(decode(token_with({9, 3, 3}, {})).ok());
}

TEST(WireReject, NonCanonicalBoolean) {
  EXPECT_TRUE(rejects(token_with({}, {}, 2), "recovery_pending is not a boolean (2)"));
  EXPECT_TRUE(rejects(commit_with({{1, 0}, {2, 255}}), "filled is not a boolean (255)"));
  Bytes bytes = mcast_with_chunk(0, 1, 1);
  bytes[kHeaderBytes] = 2;  // has_recovered
  EXPECT_TRUE(rejects(bytes, "has_recovered is not a boolean (2)"));
}

// ---- Commit token ----------------------------------------------------------------------------

TEST(WireReject, CommitEntries) {
  EXPECT_TRUE(rejects(commit_with({{0}}), "commit token: entry for invalid node id 0"));
  EXPECT_TRUE(rejects(commit_with({{kAllNodes}}), "entry for invalid node id 4294967295"));
  EXPECT_TRUE(rejects(commit_with({{2}, {2}}), "entry list is not strictly increasing by node"));
  EXPECT_TRUE(rejects(commit_with({{3}, {1}}), "entry list is not strictly increasing by node"));
  std::vector<RawEntry> entries;
  for (std::uint32_t node : ids(kMaxNodes + 1)) entries.push_back({node});
  EXPECT_TRUE(rejects(commit_with(entries), "entry list longer than 28"));
}

// ---- Mcast -----------------------------------------------------------------------------------

TEST(WireReject, MessageOrigin) {
  for (NodeId origin : {kNoNode, kAllNodes}) {
    Bytes bytes = header(PacketType::mcast);
    ByteWriter out(bytes);
    out.u8(0);
    message_head(out, origin, 0, 0);
    EXPECT_TRUE(rejects(bytes, "mcast: message has invalid origin " + std::to_string(origin)));
  }
}

TEST(WireReject, MessageFlags) {
  for (std::uint8_t flags : {0x02, 0x80, 0xff}) {
    Bytes bytes = header(PacketType::mcast);
    ByteWriter out(bytes);
    out.u8(0);
    message_head(out, 1, flags, 0);
    EXPECT_TRUE(rejects(bytes, "message flags have unknown bits"));
  }
}

TEST(WireReject, TooManyChunks) {
  Bytes bytes = header(PacketType::mcast);
  ByteWriter out(bytes);
  out.u8(0);
  message_head(out, 1, 0, kMaxChunksPerMessage + 1);
  for (std::size_t i = 0; i <= kMaxChunksPerMessage; ++i) chunk(out, 0, 1, 1);
  EXPECT_TRUE(rejects(bytes, "mcast: chunk list longer than 256"));
}

TEST(WireReject, ChunkRanges) {
  EXPECT_TRUE(rejects(mcast_with_chunk(0xffffffff, 10, 2), "exceeds total_bytes 10"));
  EXPECT_TRUE(rejects(mcast_with_chunk(0xfffffffe, 0xffffffff, 4), "total_bytes 4294967295"));
  EXPECT_TRUE(rejects(mcast_with_chunk(8, 10, 3), "chunk at offset 8 with 3 bytes exceeds"));
  EXPECT_TRUE(rejects(mcast_with_chunk(0, 4, 5), "exceeds total_bytes 4"));
  EXPECT_TRUE(rejects(mcast_with_chunk(1, 0, 0), "exceeds total_bytes 0"));
  EXPECT_TRUE(rejects(mcast_with_chunk(0, kMaxApplicationMessageBytes + 1, 1),
                      "chunk total_bytes 1048577 exceeds 1048576"));
  EXPECT_TRUE(rejects(mcast_with_chunk(3, 10, 0), "empty chunk of a non-empty message"));
  EXPECT_TRUE(decode(mcast_with_chunk(0, 0, 0)).ok());
  EXPECT_TRUE(decode(mcast_with_chunk(7, 10, 3)).ok());
}

TEST(WireReject, ChunkLengthBeyondPacket) {
  Bytes bytes = mcast_with_chunk(0, 100, 10);
  bytes.pop_back();
  EXPECT_TRUE(rejects(bytes, "mcast: packet truncated"));
}

TEST(WireReject, RecoveredMessageWithOuterChunks) {
  Bytes bytes = header(PacketType::mcast);
  ByteWriter out(bytes);
  out.u8(1);
  message_head(out, 1, 0, 1);
  chunk(out, 0, 1, 1);
  message_head(out, 2, 0, 0);
  EXPECT_TRUE(rejects(bytes, "carrying a recovered message has chunks"));
}

TEST(WireReject, RecoveredMessageIsChecked) {
  Bytes bytes = header(PacketType::mcast);
  ByteWriter out(bytes);
  out.u8(1);
  message_head(out, 1, 0, 0);
  message_head(out, 0, 0, 0);
  EXPECT_TRUE(rejects(bytes, "message has invalid origin 0"));
}

// ---- encode() asserts what decode() rejects ----------------------------------------------------

TEST(WireEncodeDeath, RejectsInvalidPackets) {
  EXPECT_DEATH(encode(Packet{0, Wake{}}), "invalid sender");
  EXPECT_DEATH(encode(Packet{1, Join{1, {2, 1}, {}}}), "proc list is not strictly increasing");
  EXPECT_DEATH(encode(Packet{1, Probe{{}, {}, {0}}}), "heard list holds invalid node id 0");
  EXPECT_DEATH(encode(Packet{1, Token{{}, 0, 0, 0, 0, false, 0, {}, seqs(65)}}), "longer than 64");
  EXPECT_DEATH(encode(Packet{1, CommitToken{{}, 0, {CommitEntry{}}}}), "invalid node id 0");
  const McastPacket both{message(1, {whole_chunk({1})}), message(2, {})};
  EXPECT_DEATH(encode(Packet{1, both}), "carrying a recovered message has chunks");
  const McastPacket beyond{message(1, {Chunk{2, 3, {1, 2}}}), std::nullopt};
  EXPECT_DEATH(encode(Packet{1, beyond}), "exceeds total_bytes 3");
  EXPECT_DEATH(encode(Packet{1, McastPacket{message(0, {}), std::nullopt}}), "invalid origin 0");
}

}  // namespace
}  // namespace keel::ring::wire
