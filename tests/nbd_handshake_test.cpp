// The NBD server's negotiation (src/core/nbd/nbd_handshake.hpp): every option, fragmentation,
// refusals and hostile input.
#include "core/nbd/nbd_handshake.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keel::nbd {
namespace {

constexpr std::uint64_t kSize = 64ull << 20;

ExportInfo volume_export() {
  return ExportInfo{"vol", "mirrored volume vol", kSize, true, true, ""};
}

struct OptionReply {
  std::uint32_t option = 0;
  std::uint32_t type = 0;
  Bytes data;
  std::string text() const { return std::string(data.begin(), data.end()); }
};

// Splits the server's option replies; fails the test on anything else.
std::vector<OptionReply> parse_replies(const Bytes& bytes) {
  std::vector<OptionReply> replies;
  ByteReader reader(bytes);
  while (reader.ok() && reader.remaining() > 0) {
    EXPECT_EQ(reader.u64(), kOptionReplyMagic);
    OptionReply reply;
    reply.option = reader.u32();
    reply.type = reader.u32();
    const auto data = reader.bytes(reader.u32());
    reply.data.assign(data.begin(), data.end());
    replies.push_back(reply);
  }
  EXPECT_TRUE(reader.at_end());
  return replies;
}

// The client's side of a negotiation, as bytes.
class ClientBytes {
 public:
  explicit ClientBytes(std::uint32_t flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes) {
    ByteWriter(bytes_).u32(flags);
  }
  ClientBytes& option(Option option, const Bytes& data = {}) {
    return raw_option(static_cast<std::uint32_t>(option), data);
  }
  ClientBytes& raw_option(std::uint32_t option, const Bytes& data) {
    ByteWriter writer(bytes_);
    writer.u64(kOptionMagic);
    writer.u32(option);
    writer.u32(static_cast<std::uint32_t>(data.size()));
    writer.bytes(data);
    return *this;
  }
  ClientBytes& info(Option option, const std::string& name, std::vector<Info> requests) {
    Bytes data;
    ByteWriter writer(data);
    writer.u32(static_cast<std::uint32_t>(name.size()));
    writer.bytes({reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
    writer.u16(static_cast<std::uint16_t>(requests.size()));
    for (Info request : requests) writer.u16(static_cast<std::uint16_t>(request));
    return this->option(option, data);
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

Bytes text_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

// Feeds everything at once; returns what the server sends.
Bytes feed_all(Handshake& handshake, const Bytes& bytes) {
  auto step = handshake.feed(bytes);
  EXPECT_EQ(step.consumed, bytes.size());
  return step.to_send;
}

TEST(NbdHandshake, GreetingIsFixedNewstyleWithNoZeroes) {
  const Bytes greeting = Handshake::greeting();
  ASSERT_EQ(greeting.size(), kGreetingBytes);
  ByteReader reader(greeting);
  EXPECT_EQ(reader.u64(), kNbdMagic);
  EXPECT_EQ(reader.u64(), kOptionMagic);
  EXPECT_EQ(reader.u16(), kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST(NbdHandshake, GoFedByteByByteNegotiatesStructuredReplies) {
  ClientBytes client;
  client.option(Option::structured_reply)
      .info(Option::go, "vol", {Info::name, Info::description, Info::block_size});
  Handshake handshake(volume_export());
  Bytes sent;
  for (std::uint8_t byte : client.bytes()) {
    ASSERT_TRUE(handshake.negotiating());
    auto step = handshake.feed({&byte, 1});
    EXPECT_EQ(step.consumed, 1u);
    sent.insert(sent.end(), step.to_send.begin(), step.to_send.end());
  }
  ASSERT_EQ(handshake.state(), HandshakeState::transmission);
  EXPECT_EQ(handshake.bytes_wanted(), 0u);
  const Session& session = handshake.session();
  EXPECT_TRUE(session.structured_replies);
  EXPECT_TRUE(session.writable);
  EXPECT_EQ(session.size_bytes, kSize);

  const auto replies = parse_replies(sent);
  ASSERT_EQ(replies.size(), 6u);
  EXPECT_EQ(replies[0].type, kRepAck);
  EXPECT_EQ(replies[0].option, static_cast<std::uint32_t>(Option::structured_reply));
  for (std::size_t i = 1; i < 5; ++i) EXPECT_EQ(replies[i].type, kRepInfo) << i;
  ByteReader export_info(replies[1].data);
  EXPECT_EQ(export_info.u16(), static_cast<std::uint16_t>(Info::export_info));
  EXPECT_EQ(export_info.u64(), kSize);
  const std::uint16_t flags = export_info.u16();
  EXPECT_EQ(flags, kTransmitHasFlags | kTransmitSendFlush | kTransmitSendFua | kTransmitSendTrim |
                       kTransmitSendWriteZeroes | kTransmitCanMultiConn);
  EXPECT_EQ(flags, session.transmission_flags);
  ByteReader block_size(replies[2].data);
  EXPECT_EQ(block_size.u16(), static_cast<std::uint16_t>(Info::block_size));
  EXPECT_EQ(block_size.u32(), kMinimumBlockBytes);
  EXPECT_EQ(block_size.u32(), 4096u);
  EXPECT_EQ(block_size.u32(), 32u << 20);
  EXPECT_EQ(replies[3].text().substr(2), "vol");
  EXPECT_EQ(replies[4].text().substr(2), "mirrored volume vol");
  EXPECT_EQ(replies[5].type, kRepAck);
  EXPECT_EQ(replies[5].option, static_cast<std::uint32_t>(Option::go));
}

TEST(NbdHandshake, BytesAfterGoAreLeftForTheRequestReader) {
  ClientBytes client;
  client.info(Option::go, "", {});  // the default export
  Bytes stream = client.bytes();
  stream.insert(stream.end(), {1, 2, 3, 4, 5});
  Handshake handshake(volume_export());
  auto step = handshake.feed(stream);
  EXPECT_EQ(step.consumed, stream.size() - 5);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
  EXPECT_FALSE(handshake.session().structured_replies);
}

TEST(NbdHandshake, ListNamesTheExport) {
  ClientBytes client;
  client.option(Option::list).option(Option::list, text_bytes("x"));
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].type, kRepServer);
  ByteReader server(replies[0].data);
  EXPECT_EQ(server.u32(), 3u);
  const auto rest = server.bytes(server.remaining());
  EXPECT_EQ(std::string(rest.begin(), rest.end()), "volmirrored volume vol");
  EXPECT_EQ(replies[1].type, kRepAck);
  EXPECT_EQ(replies[2].type, kRepErrInvalid);  // LIST takes no data
  EXPECT_TRUE(handshake.negotiating());
}

TEST(NbdHandshake, InfoKeepsNegotiatingThenExportNameEnds) {
  ClientBytes client;
  client.info(Option::info, "vol", {}).option(Option::export_name, text_bytes("vol"));
  Handshake handshake(volume_export());
  const Bytes sent = feed_all(handshake, client.bytes());
  ASSERT_EQ(handshake.state(), HandshakeState::transmission);
  // INFO: export, block size, ack (80 bytes in all); then EXPORT_NAME's size and flags, and no
  // zero padding because both sides said NO_ZEROES.
  const std::size_t info_bytes = 3 * kOptionReplyHeaderBytes + (2 + 8 + 2) + (2 + 12);
  ASSERT_EQ(sent.size(), info_bytes + kExportNameTrailerBytes);
  const auto replies = parse_replies(Bytes(sent.begin(), sent.begin() + info_bytes));
  EXPECT_EQ(replies.back().type, kRepAck);
  ByteReader trailer({sent.data() + info_bytes, kExportNameTrailerBytes});
  EXPECT_EQ(trailer.u64(), kSize);
  EXPECT_EQ(trailer.u16(), handshake.session().transmission_flags);
}

TEST(NbdHandshake, ExportNamePadsWithZeroesForOldClients) {
  ClientBytes client(kClientFlagFixedNewstyle);
  client.option(Option::export_name, text_bytes("vol"));
  Handshake handshake(volume_export());
  const Bytes sent = feed_all(handshake, client.bytes());
  EXPECT_EQ(sent.size(), kExportNameTrailerBytes + kExportNameZeroBytes);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
}

TEST(NbdHandshake, AbortIsAcknowledgedThenCloses) {
  ClientBytes client;
  client.option(Option::abort);
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kRepAck);
  EXPECT_EQ(handshake.state(), HandshakeState::closed);
  EXPECT_EQ(handshake.close_reason(), CloseReason::client_abort);
}

TEST(NbdHandshake, UnknownOptionsAreUnsupportedAndNegotiationGoesOn) {
  ClientBytes client;
  client.raw_option(99, text_bytes("whatever"))
      .option(Option::starttls)
      .info(Option::go, "vol", {});
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_GE(replies.size(), 2u);
  EXPECT_EQ(replies[0].type, kRepErrUnsup);
  EXPECT_EQ(replies[0].option, 99u);
  EXPECT_EQ(replies[1].type, kRepErrUnsup);
  EXPECT_EQ(replies.back().type, kRepAck);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
}

TEST(NbdHandshake, UnavailableExportIsRefusedAtGoWithTheReason) {
  ExportInfo secondary = volume_export();
  secondary.unavailable_reason = "volume vol: this node is secondary; the primary is b1";
  ClientBytes client;
  client.info(Option::go, "vol", {}).info(Option::info, "", {});
  Handshake handshake(secondary);
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_EQ(replies.size(), 2u);
  for (const OptionReply& reply : replies) {
    EXPECT_EQ(reply.type, kRepErrUnknown);
    EXPECT_EQ(reply.text(), secondary.unavailable_reason);
  }
  EXPECT_TRUE(handshake.negotiating());  // the client may try again, or abort
  // Promoted meanwhile: the next GO succeeds.
  handshake.set_export(volume_export());
  ClientBytes again(0);
  again.info(Option::go, "vol", {});
  const Bytes tail(again.bytes().begin() + kClientFlagsBytes, again.bytes().end());
  feed_all(handshake, tail);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
}

TEST(NbdHandshake, UnavailableOrUnknownExportNameCloses) {
  ExportInfo secondary = volume_export();
  secondary.unavailable_reason = "secondary";
  ClientBytes client;
  client.option(Option::export_name, text_bytes("vol"));
  Handshake refused(secondary);
  EXPECT_TRUE(feed_all(refused, client.bytes()).empty());
  EXPECT_EQ(refused.close_reason(), CloseReason::export_refused);

  ClientBytes other;
  other.option(Option::export_name, text_bytes("other"));
  Handshake unknown(volume_export());
  EXPECT_TRUE(feed_all(unknown, other.bytes()).empty());
  EXPECT_EQ(unknown.close_reason(), CloseReason::export_refused);
}

TEST(NbdHandshake, UnknownNameAtGoNamesTheServedExport) {
  ClientBytes client;
  client.info(Option::go, "other", {});
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kRepErrUnknown);
  EXPECT_NE(replies[0].text().find("'vol'"), std::string::npos) << replies[0].text();
}

TEST(NbdHandshake, ReadOnlyExportAdvertisesIt) {
  ExportInfo read_only = volume_export();
  read_only.writable = false;
  read_only.can_multi_conn = false;
  const std::uint16_t flags = transmission_flags(read_only);
  EXPECT_NE(flags & kTransmitReadOnly, 0);
  EXPECT_EQ(flags & kTransmitCanMultiConn, 0);
  EXPECT_NE(flags & kTransmitHasFlags, 0);
}

TEST(NbdHandshake, MalformedGoDataIsInvalid) {
  Bytes data;
  ByteWriter writer(data);
  writer.u32(1000);  // a name longer than the data
  writer.bytes(text_bytes("vol"));
  ClientBytes client;
  client.option(Option::go, data);
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kRepErrInvalid);
  EXPECT_TRUE(handshake.negotiating());
}

// Well-formed data that asks for more than the server takes is too big, not invalid; either way
// negotiation goes on.
TEST(NbdHandshake, LongNameOrManyInfoRequestsAreTooBig) {
  std::vector<Info> many(kMaxInfoRequests + 1, Info::block_size);
  ClientBytes client;
  client.info(Option::go, std::string(kMaxStringBytes + 4, 'v'), {})
      .info(Option::info, "vol", many)
      .info(Option::go, "vol", {});
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_GE(replies.size(), 3u);
  EXPECT_EQ(replies[0].type, kRepErrTooBig);
  EXPECT_EQ(replies[1].type, kRepErrTooBig);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
}

TEST(NbdHandshake, OversizedOptionIsSkippedAndRefused) {
  ClientBytes client;
  client.raw_option(static_cast<std::uint32_t>(Option::go), Bytes(kMaxOptionDataBytes + 1, 7))
      .info(Option::go, "vol", {});
  Handshake handshake(volume_export());
  const auto replies = parse_replies(feed_all(handshake, client.bytes()));
  ASSERT_GE(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kRepErrTooBig);
  EXPECT_EQ(handshake.state(), HandshakeState::transmission);
}

TEST(NbdHandshake, HostileInputCloses) {
  ClientBytes bad_flags(0x80);
  Handshake flags(volume_export());
  feed_all(flags, bad_flags.bytes());
  EXPECT_EQ(flags.close_reason(), CloseReason::protocol_error);

  ClientBytes client;
  Bytes stream = client.bytes();
  stream.insert(stream.end(), 16, 0xab);  // an option header with a bad magic
  Handshake magic(volume_export());
  magic.feed(stream);
  EXPECT_EQ(magic.close_reason(), CloseReason::protocol_error);

  ClientBytes looping;
  for (std::size_t i = 0; i <= kMaxOptionsPerHandshake; ++i) looping.option(Option::list);
  Handshake loop(volume_export());
  loop.feed(looping.bytes());
  EXPECT_EQ(loop.close_reason(), CloseReason::protocol_error);
  EXPECT_EQ(loop.options_seen(), kMaxOptionsPerHandshake + 1);
}

}  // namespace
}  // namespace keel::nbd
