// The replication link's frames (src/core/volume/peer_messages.hpp): round trips of every
// message, the split (zero-copy) path, and rejections of truncated, malformed and out-of-range
// frames, the fuzz target's seeds, and the simulated link's use of them (sim/volume_wire.hpp).
#include "sim/volume_wire.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/volume/peer_messages.hpp"

namespace keel::volume {
namespace {

constexpr std::uint64_t kVolumeBytes = 1u << 20;  // 256 blocks, 4 bitmap words

Payload bytes_of(std::size_t size, std::uint8_t seed) {
  auto data = std::make_shared<Bytes>(size);
  for (std::size_t i = 0; i < size; ++i) (*data)[i] = static_cast<std::byte>(i * 7 + seed);
  return data;
}

Generations sample_generations() {
  Generations g;
  g.current = 0x1111222233334444ull;
  g.bitmap = 0x5555666677778888ull;
  g.history = {0x9999aaaabbbbccccull, 7};
  return g;
}

std::vector<PeerMessage> every_message() {
  Hello hello;
  hello.volume_digest = 0xfeedfacecafebeefull;
  hello.node = 2;
  hello.role = Role::Primary;
  hello.disk = DiskState::UpToDate;
  hello.generations = sample_generations();
  hello.primary_at_crash = true;
  hello.survived_primary = true;
  hello.dirty_blocks = 17;
  BitmapWords words{{{0, 1}, {2, 0x8000000000000001ull}, {3, ~0ull}}, true};
  DataWrite write{9, 3, 8192, 0, true, bytes_of(5000, 1)};
  DataWrite zeroes{10, 3, 4096, 65536, false, nullptr};
  return {hello,
          words,
          write,
          zeroes,
          WriteAck{9, 5},
          Barrier{3},
          BarrierAck{3, 0},
          ResyncData{kVolumeBytes - 8192, bytes_of(8192, 2)},
          ResyncAck{kVolumeBytes - 8192, 8192, 0},
          ResyncDone{sample_generations()},
          VerifyRequest{0, 65536},
          VerifyReply{0, 65536, 0x0123456789abcdefull},
          StateUpdate{Role::Secondary, DiskState::Outdated, sample_generations()},
          Refuse{LinkState::SplitBrain, "both sides wrote as primary"},
          Barrier{4, true},
          VerifyReply{65536, 65536, 0, 5}};  // the peer's read failed
}

Result<PeerMessage> decode_all(const Bytes& bytes) {
  return decode(bytes.data(), bytes.size(), kVolumeBytes);
}

TEST(VolumeWire, EveryMessageRoundTrips) {
  for (const PeerMessage& message : every_message()) {
    const Bytes bytes = encode(message);
    auto decoded = decode_all(bytes);
    ASSERT_TRUE(decoded.ok()) << message.index() << ": " << decoded.error().message;
    EXPECT_EQ(decoded.value().index(), message.index());
    EXPECT_EQ(encode(decoded.value()), bytes) << message.index();
    auto header = decode_frame_header(bytes.data(), bytes.size());
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header.value().body_bytes, bytes.size() - kFrameHeaderBytes);
  }
}

TEST(VolumeWire, FieldsSurvive) {
  const auto messages = every_message();
  auto hello = decode_all(encode(messages[0]));
  ASSERT_TRUE(hello.ok());
  const auto& h = std::get<Hello>(hello.value());
  EXPECT_EQ(h.volume_digest, 0xfeedfacecafebeefull);
  EXPECT_EQ(h.node, 2u);
  EXPECT_EQ(h.role, Role::Primary);
  EXPECT_EQ(h.generations, sample_generations());
  EXPECT_TRUE(h.primary_at_crash);
  EXPECT_FALSE(h.discard_local);
  EXPECT_TRUE(h.survived_primary);
  EXPECT_EQ(h.dirty_blocks, 17u);
  auto write = decode_all(encode(messages[2]));
  ASSERT_TRUE(write.ok());
  const auto& w = std::get<DataWrite>(write.value());
  EXPECT_EQ(w.sequence, 9u);
  EXPECT_EQ(w.epoch, 3u);
  EXPECT_EQ(w.offset, 8192u);
  EXPECT_TRUE(w.fua);
  ASSERT_TRUE(w.data);
  EXPECT_EQ(*w.data, *bytes_of(5000, 1));
  auto refuse = decode_all(encode(messages[13]));
  ASSERT_TRUE(refuse.ok());
  EXPECT_EQ(std::get<Refuse>(refuse.value()).text, "both sides wrote as primary");
  EXPECT_EQ(std::get<Refuse>(refuse.value()).reason, LinkState::SplitBrain);
  auto flush = decode_all(encode(messages[5]));
  auto checkpoint = decode_all(encode(messages[14]));
  ASSERT_TRUE(flush.ok() && checkpoint.ok());
  EXPECT_FALSE(std::get<Barrier>(flush.value()).checkpoint);
  EXPECT_TRUE(std::get<Barrier>(checkpoint.value()).checkpoint);
  EXPECT_EQ(std::get<Barrier>(checkpoint.value()).epoch, 4u);
  auto unread = decode_all(encode(messages[15]));
  ASSERT_TRUE(unread.ok());
  EXPECT_EQ(std::get<VerifyReply>(unread.value()).offset, 65536u);
  EXPECT_EQ(std::get<VerifyReply>(unread.value()).error, 5);
}

TEST(VolumeWire, SplitDecodingTakesThePayloadWithoutACopy) {
  for (const PeerMessage& message : every_message()) {
    const Bytes head = encode_header(message);
    auto header = decode_frame_header(head.data(), head.size());
    ASSERT_TRUE(header.ok());
    const std::uint8_t type = header.value().type;
    if (!has_payload(type)) {
      EXPECT_EQ(head, encode(message));
      continue;
    }
    EXPECT_EQ(head.size(), kFrameHeaderBytes + payload_offset(type));
    const Payload* payload = std::get_if<DataWrite>(&message) ? &std::get<DataWrite>(message).data
                                                              : &std::get<ResyncData>(message).data;
    auto decoded = decode_split(head.data(), head.size(), *payload, kVolumeBytes);
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    const Payload& got = std::get_if<DataWrite>(&decoded.value())
                             ? std::get<DataWrite>(decoded.value()).data
                             : std::get<ResyncData>(decoded.value()).data;
    EXPECT_EQ(got.get(), payload->get());  // the same buffer
    // A payload of another length than announced is refused.
    auto longer = std::make_shared<Bytes>((*payload ? (*payload)->size() : 0) + 1);
    EXPECT_FALSE(decode_split(head.data(), head.size(), longer, kVolumeBytes).ok());
  }
}

TEST(VolumeWire, EveryTruncationFailsCleanly) {
  for (const PeerMessage& message : every_message()) {
    const Bytes bytes = encode(message);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(decode(bytes.data(), n, kVolumeBytes).ok()) << message.index() << " " << n;
    }
    // Truncated with a header that agrees with the shorter length.
    for (std::size_t n = kFrameHeaderBytes; n < bytes.size(); ++n) {
      Bytes shorter(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      const std::uint32_t body = static_cast<std::uint32_t>(n - kFrameHeaderBytes);
      for (int i = 0; i < 4; ++i) shorter[8 + i] = static_cast<std::byte>(body >> (8 * (3 - i)));
      auto decoded = decode_all(shorter);
      // A payload may lose bytes and still be a valid (shorter) write or resync block.
      if (decoded.ok()) {
        EXPECT_TRUE(std::holds_alternative<DataWrite>(message) ||
                    std::holds_alternative<ResyncData>(message))
            << message.index() << " " << n;
      }
    }
  }
}

TEST(VolumeWire, RejectsBadHeaders) {
  const Bytes good = encode(Barrier{1});
  Bytes magic = good;
  magic[0] = std::byte{0};
  EXPECT_NE(decode_all(magic).error().message.find("magic"), std::string::npos);
  Bytes version = good;
  version[5] = std::byte{kPeerProtocolVersion + 1};
  EXPECT_NE(decode_all(version).error().message.find("version"), std::string::npos);
  for (int type : {0, 14, 255}) {
    Bytes bad = good;
    bad[6] = static_cast<std::byte>(type);
    EXPECT_NE(decode_all(bad).error().message.find("type"), std::string::npos) << type;
  }
  Bytes flags = good;
  flags[7] = std::byte{1};
  EXPECT_FALSE(decode_all(flags).ok());
  Bytes huge = good;
  huge[8] = std::byte{0x7f};
  EXPECT_FALSE(decode_frame_header(huge.data(), huge.size()).ok());
  Bytes trailing = good;
  trailing.push_back(std::byte{0});
  trailing[11] = static_cast<std::byte>(std::to_integer<int>(good[11]) + 1);  // one byte more
  EXPECT_NE(decode_all(trailing).error().message.find("trailing"), std::string::npos);
}

// Replaces the byte at `at` of the encoding of `message` and decodes.
Result<PeerMessage> patched(const PeerMessage& message, std::size_t at, std::uint8_t value) {
  Bytes bytes = encode(message);
  bytes.at(at) = static_cast<std::byte>(value);
  return decode_all(bytes);
}

TEST(VolumeWire, RejectsBadEnumsAndBooleans) {
  const auto messages = every_message();
  const std::size_t body = kFrameHeaderBytes;
  EXPECT_FALSE(patched(messages[0], body + 16, 2).ok());       // Hello role
  EXPECT_FALSE(patched(messages[0], body + 17, 3).ok());       // Hello disk
  EXPECT_FALSE(patched(messages[0], body + 18 + 32, 2).ok());  // primary_at_crash
  EXPECT_FALSE(patched(messages[0], body + 18 + 34, 2).ok());  // survived_primary
  EXPECT_FALSE(patched(messages[1], body, 2).ok());            // BitmapWords last
  EXPECT_FALSE(patched(messages[2], body + 32, 2).ok());       // DataWrite fua
  EXPECT_FALSE(patched(messages[12], body, 2).ok());           // StateUpdate role
  EXPECT_FALSE(patched(messages[12], body + 1, 3).ok());       // StateUpdate disk
  EXPECT_FALSE(patched(messages[13], body, 7).ok());           // Refuse reason
  EXPECT_FALSE(patched(WriteAck{1, 0}, body + 8, 0x80).ok());  // error out of range
  EXPECT_TRUE(patched(messages[13], body, 6).ok());            // Unrelated is fine
  EXPECT_FALSE(patched(messages[14], body + 8, 2).ok());       // Barrier checkpoint
}

void put_be(Bytes& bytes, std::size_t at, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) {
    bytes.at(at + static_cast<std::size_t>(i)) =
        static_cast<std::byte>(value >> (8 * (width - 1 - i)));
  }
}

// encode() asserts what decode() rejects, so a bad frame is a good one with a field replaced.
bool fails_patched(const PeerMessage& message, std::size_t body_at, std::uint64_t value,
                   int width) {
  Bytes bytes = encode(message);
  put_be(bytes, kFrameHeaderBytes + body_at, value, width);
  return !decode_all(bytes).ok();
}

TEST(VolumeWire, RejectsOutOfRangeOffsetsAndLengths) {
  auto fails = [](const PeerMessage& message, std::uint64_t volume = kVolumeBytes) {
    const Bytes bytes = encode(message);
    return !decode(bytes.data(), bytes.size(), volume).ok();
  };
  EXPECT_TRUE(fails(DataWrite{1, 0, kVolumeBytes - 4096, 0, false, bytes_of(4097, 0)}));
  EXPECT_TRUE(fails_patched(DataWrite{1, 0, 0, 0, false, bytes_of(100, 0)}, 16, ~0ull - 10, 8));
  EXPECT_TRUE(fails(DataWrite{1, 0, 4096, kVolumeBytes, false, nullptr}));
  EXPECT_FALSE(fails(DataWrite{1, 0, 0, kVolumeBytes, false, nullptr}));
  EXPECT_FALSE(fails(DataWrite{1, 0, 512, 0, false, bytes_of(512, 0)}));  // unaligned is fine
  EXPECT_TRUE(fails(ResyncData{kVolumeBytes, bytes_of(4096, 0)}));
  EXPECT_TRUE(fails_patched(ResyncData{0, bytes_of(4096, 0)}, 0, 512, 8));  // not a boundary
  EXPECT_TRUE(fails_patched(ResyncAck{0, 4096, 0}, 8, 0, 4));               // empty
  EXPECT_TRUE(fails_patched(ResyncAck{0, 4096, 0}, 8, 4095, 4));            // not whole blocks
  EXPECT_TRUE(fails(VerifyRequest{kVolumeBytes - 4096, 8192}));
  EXPECT_TRUE(fails_patched(VerifyRequest{0, 4096}, 8, kMaxDataBytes + kBlockBytes, 4));
  EXPECT_TRUE(fails_patched(VerifyReply{4096, 4096, 0}, 8, 100, 4));
  EXPECT_TRUE(fails(BitmapWords{{{4, 1}}, true}));        // word 4 is past 256 blocks
  EXPECT_TRUE(fails(BitmapWords{{{0, 2}}, true}, 4096));  // bit 1 past a one-block volume
  EXPECT_FALSE(fails(BitmapWords{{{0, 1}}, true}, 4096));
  EXPECT_TRUE(fails_patched(BitmapWords{{{1, 1}, {2, 2}}, true}, 5 + 16, 1, 8));  // repeated
  EXPECT_TRUE(fails_patched(BitmapWords{{{1, 1}}, true}, 5 + 8, 0, 8));           // zero word
  Hello hello;
  hello.node = 1;
  hello.dirty_blocks = 257;
  EXPECT_TRUE(fails(hello));
  hello.dirty_blocks = 0;
  EXPECT_FALSE(fails(hello));
  EXPECT_TRUE(fails_patched(hello, 12, kNoNode, 4));
}

TEST(VolumeWire, RejectsAResyncBlockOfPartialBlocks) {
  Bytes bytes = encode(ResyncData{0, bytes_of(4096, 0)});
  bytes.resize(kFrameHeaderBytes + 8 + 1000);
  put_be(bytes, 8, 8 + 1000, 4);
  EXPECT_NE(decode_all(bytes).error().message.find("whole blocks"), std::string::npos);
}

TEST(VolumeWire, RejectsOversizedCountsBeforeAllocating) {
  Bytes bytes = encode(BitmapWords{{}, true});
  // count = kMaxBitmapWordsPerFrame + 1, with no words behind it.
  const auto count = static_cast<std::uint32_t>(kMaxBitmapWordsPerFrame + 1);
  for (int i = 0; i < 4; ++i) {
    bytes[kFrameHeaderBytes + 1 + i] = static_cast<std::byte>(count >> (8 * (3 - i)));
  }
  EXPECT_FALSE(decode_all(bytes).ok());
  Bytes text = encode(Refuse{LinkState::Unrelated, ""});
  text[kFrameHeaderBytes + 1] = std::byte{0xff};  // a text length of 65280
  EXPECT_FALSE(decode_all(text).ok());
}

TEST(VolumeWire, DigestIsFnv1a) {
  auto digest = [](const std::string& text) {
    return digest_bytes(reinterpret_cast<const std::byte*>(text.data()), text.size());
  };
  EXPECT_EQ(digest(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(digest("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(digest("foobar"), 0x85944171f73967e8ull);
}

// The fuzz target starts from these seeds (a size byte, then a frame): a seed of an older protocol
// version is refused at the header, and the fuzzer would never reach the bodies from it.
TEST(VolumeWire, FuzzSeedsAreFramesOfThisVersion) {
  const std::filesystem::path corpus =
      std::filesystem::path(KEEL_SOURCE_DIR) / "fuzz" / "corpus" / "volume_wire";
  std::size_t seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    ASSERT_GT(bytes.size(), 1u) << entry.path();
    auto decoded = decode(reinterpret_cast<const std::byte*>(bytes.data()) + 1, bytes.size() - 1,
                          std::uint64_t{4} << 30);
    EXPECT_TRUE(decoded.ok()) << entry.path() << ": " << decoded.error().message;
    ++seeds;
  }
  EXPECT_GE(seeds, 14u);
}

// The simulator's link carries every message as the real one: header and fixed fields, then the
// payload from the sender's own buffer.
TEST(VolumeWire, TheSimulatedLinkCarriesEveryMessage) {
  for (const PeerMessage& message : every_message()) {
    const sim::WireFrame frame = sim::to_wire(message);
    EXPECT_EQ(frame.head, encode_header(message)) << message.index();
    auto carried = sim::from_wire(frame, kVolumeBytes);
    ASSERT_TRUE(carried.ok()) << message.index() << ": " << carried.error().message;
    EXPECT_EQ(encode(carried.value()), encode(message)) << message.index();
    if (const auto* write = std::get_if<DataWrite>(&carried.value()); write && write->data) {
      EXPECT_EQ(write->data.get(), frame.payload.get());
    }
  }
}

// A frame the real link would misread fails in the simulator, naming the message's type.
TEST(VolumeWire, TheSimulatedLinkReportsAFrameItCannotCarry) {
  const auto messages = every_message();
  sim::WireFrame longer = sim::to_wire(messages[2]);  // a DataWrite
  longer.payload = bytes_of(5001, 1);
  auto misframed = sim::from_wire(longer, kVolumeBytes);
  ASSERT_FALSE(misframed.ok());
  EXPECT_NE(misframed.error().message.find("announces"), std::string::npos);
  sim::WireFrame fua = sim::to_wire(messages[2]);
  fua.head.back() = std::byte{2};  // the fua boolean
  auto bad = sim::from_wire(fua, kVolumeBytes);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("DataWrite"), std::string::npos);
  auto smaller = sim::from_wire(sim::to_wire(messages[7]), 8192);  // a ResyncData at 1 MiB - 8 KiB
  ASSERT_FALSE(smaller.ok());
  EXPECT_NE(smaller.error().message.find("ResyncData"), std::string::npos);
}

}  // namespace
}  // namespace keel::volume
