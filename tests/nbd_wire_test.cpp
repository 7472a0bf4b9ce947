// The NBD transmission phase as pure code (src/core/nbd/nbd_wire.hpp): request decoding and
// checks, the streaming reader, reply encoding.
#include "core/nbd/nbd_wire.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace keel::nbd {
namespace {

constexpr std::uint64_t kExportSize = 1ull << 30;

const Session kWritable{kExportSize, true, true, 0};
const Session kReadOnly{kExportSize, false, false, 0};

Request request(Command command, std::uint64_t offset, std::uint32_t length,
                std::uint16_t flags = 0) {
  return Request{flags, static_cast<std::uint16_t>(command), 0x1122334455667788, offset, length};
}

TEST(NbdWire, RequestRoundTripsAndBadMagicIsRefused) {
  const Request sent = request(Command::write, 4096, 512, kCommandFlagFua);
  auto bytes = encode_request(sent);
  EXPECT_EQ(bytes[0], 0x25);
  EXPECT_EQ(bytes[3], 0x13);
  auto decoded = decode_request(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), sent);
  EXPECT_TRUE(decoded.value().fua());
  bytes[0] ^= 0xff;
  EXPECT_FALSE(decode_request(bytes).ok());
}

TEST(NbdWire, ValidRequestsExecute) {
  EXPECT_EQ(check_request(request(Command::read, 0, 4096), kWritable).action, Action::execute);
  EXPECT_EQ(check_request(request(Command::read, kExportSize - 1, 1), kWritable).action,
            Action::execute);
  const Verdict write = check_request(request(Command::write, kExportSize - 512, 512), kWritable);
  EXPECT_EQ(write.action, Action::execute);
  EXPECT_TRUE(write.payload_follows);
  EXPECT_EQ(check_request(request(Command::flush, 0, 0), kWritable).action, Action::execute);
  EXPECT_EQ(check_request(request(Command::trim, 0, 1u << 29), kWritable).action,
            Action::execute);  // no payload, so no payload limit
  const auto zeroes = request(Command::write_zeroes, 0, 4096, kCommandFlagNoHole | kCommandFlagFua);
  EXPECT_EQ(check_request(zeroes, kWritable).action, Action::execute);
  // FUA is accepted on every command, even where it means nothing.
  EXPECT_EQ(check_request(request(Command::read, 0, 1, kCommandFlagFua), kWritable).action,
            Action::execute);
  EXPECT_EQ(check_request(request(Command::disconnect, 0, 0), kWritable).action,
            Action::disconnect);
}

TEST(NbdWire, OversizedWriteClosesButOversizedReadIsAnError) {
  const Verdict write =
      check_request(request(Command::write, 0, kMaximumPayloadBytes + 1), kWritable);
  EXPECT_EQ(write.action, Action::close);
  const Verdict huge = check_request(request(Command::write, 0, 0xffffffff), kReadOnly);
  EXPECT_EQ(huge.action, Action::close);  // before the read-only check: the payload is unknown
  const Verdict read =
      check_request(request(Command::read, 0, kMaximumPayloadBytes + 1), kWritable);
  EXPECT_EQ(read.action, Action::reply_error);
  EXPECT_EQ(read.error, kEinval);
  EXPECT_EQ(check_request(request(Command::write, 0, kMaximumPayloadBytes), kWritable).action,
            Action::execute);
}

TEST(NbdWire, RangesPastTheEndAreErrorsNotCloses) {
  const Verdict read = check_request(request(Command::read, kExportSize, 1), kWritable);
  EXPECT_EQ(read.action, Action::reply_error);
  EXPECT_EQ(read.error, kEinval);
  const Verdict overflow = check_request(
      request(Command::read, std::numeric_limits<std::uint64_t>::max(), 2), kWritable);
  EXPECT_EQ(overflow.error, kEinval);
  const Verdict trim = check_request(request(Command::trim, kExportSize - 1, 2), kWritable);
  EXPECT_EQ(trim.error, kEinval);
  // Writes past the end are ENOSPC, as the protocol asks, and their payload is still read.
  const Verdict write = check_request(request(Command::write, kExportSize - 1, 2), kWritable);
  EXPECT_EQ(write.action, Action::reply_error);
  EXPECT_EQ(write.error, kEnospc);
  EXPECT_TRUE(write.payload_follows);
  EXPECT_EQ(check_request(request(Command::write_zeroes, kExportSize, 1), kWritable).error,
            kEnospc);
  EXPECT_EQ(check_request(request(Command::read, 0, 0), kWritable).error, kEinval);
}

TEST(NbdWire, ReadOnlyExportRefusesChangesWithEperm) {
  for (Command command : {Command::write, Command::trim, Command::write_zeroes}) {
    const Verdict verdict = check_request(request(command, 0, 512), kReadOnly);
    EXPECT_EQ(verdict.action, Action::reply_error);
    EXPECT_EQ(verdict.error, kEperm);
    EXPECT_EQ(verdict.payload_follows, command == Command::write);
  }
  EXPECT_EQ(check_request(request(Command::read, 0, 512), kReadOnly).action, Action::execute);
  EXPECT_EQ(check_request(request(Command::flush, 0, 0), kReadOnly).action, Action::execute);
}

TEST(NbdWire, UnknownCommandsAndFlagsAreEinval) {
  Request cache = request(Command::read, 0, 512);
  cache.type = 5;  // NBD_CMD_CACHE: not offered
  EXPECT_EQ(check_request(cache, kWritable).error, kEinval);
  cache.type = 0xffff;
  EXPECT_EQ(check_request(cache, kWritable).error, kEinval);
  EXPECT_EQ(check_request(request(Command::write, 0, 512, kCommandFlagNoHole), kWritable).error,
            kEinval);
  const Verdict df = check_request(request(Command::read, 0, 512, 1u << 2), kWritable);
  EXPECT_EQ(df.action, Action::reply_error);
  EXPECT_EQ(df.error, kEinval);
  // A disconnect is never answered, even with flags it has no use for.
  EXPECT_EQ(check_request(request(Command::disconnect, 0, 0, 1u << 1), kWritable).action,
            Action::disconnect);
}

// Drives the reader with `stream` cut into pieces of `piece` bytes.
std::vector<ReadRequest> read_all(const Bytes& stream, std::size_t piece, std::size_t& consumed) {
  RequestReader reader(kWritable);
  std::vector<ReadRequest> out;
  consumed = 0;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    const std::size_t n = std::min(piece, stream.size() - at);
    consumed += reader.feed({stream.data() + at, n}, out);
  }
  return out;
}

TEST(NbdWire, ReaderSplitsAFragmentedStream) {
  Bytes stream;
  const auto append = [&](const Request& r) {
    const auto bytes = encode_request(r);
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  };
  append(request(Command::write, 0, 5));
  stream.insert(stream.end(), {1, 2, 3, 4, 5});
  append(request(Command::read, 0, 4096));
  append(request(Command::write, kExportSize, 3));  // ENOSPC, its payload still on the stream
  stream.insert(stream.end(), {7, 8, 9});
  append(request(Command::disconnect, 0, 0));
  stream.insert(stream.end(), {0xde, 0xad});  // after DISC: not the reader's

  for (std::size_t piece : {std::size_t{1}, std::size_t{3}, std::size_t{29}, stream.size()}) {
    std::size_t consumed = 0;
    const auto requests = read_all(stream, piece, consumed);
    ASSERT_EQ(requests.size(), 4u) << piece;
    EXPECT_EQ(requests[0].payload, (Bytes{1, 2, 3, 4, 5}));
    EXPECT_EQ(requests[1].verdict.action, Action::execute);
    EXPECT_EQ(requests[2].verdict.error, kEnospc);
    EXPECT_EQ(requests[2].payload, (Bytes{7, 8, 9}));
    EXPECT_EQ(requests[3].verdict.action, Action::disconnect);
    EXPECT_EQ(consumed, stream.size() - 2) << piece;
  }
}

TEST(NbdWire, ReaderStopsAtBadMagic) {
  Bytes stream(kRequestBytes, 0);
  RequestReader reader(kWritable);
  std::vector<ReadRequest> out;
  reader.feed(stream, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].verdict.action, Action::close);
  EXPECT_TRUE(reader.stopped());
  EXPECT_EQ(reader.feed(stream, out), 0u);
}

TEST(NbdWire, SimpleReply) {
  const auto reply = encode_simple_reply(0x0102030405060708, kEio);
  ByteReader reader(reply);
  EXPECT_EQ(reader.u32(), kSimpleReplyMagic);
  EXPECT_EQ(reader.u32(), kEio);
  EXPECT_EQ(reader.u64(), 0x0102030405060708u);
}

TEST(NbdWire, StructuredReplies) {
  const auto data = encode_offset_data_header(42, 1 << 20, 4096, true);
  ByteReader chunk(data);
  EXPECT_EQ(chunk.u32(), kStructuredReplyMagic);
  EXPECT_EQ(chunk.u16(), kReplyFlagDone);
  EXPECT_EQ(chunk.u16(), kReplyTypeOffsetData);
  EXPECT_EQ(chunk.u64(), 42u);
  EXPECT_EQ(chunk.u32(), 4096u + 8);  // the offset counts in the chunk's length
  EXPECT_EQ(chunk.u64(), 1u << 20);
  EXPECT_TRUE(chunk.at_end());

  const auto none = encode_none_reply(43);
  ByteReader end(none);
  EXPECT_EQ(end.u32(), kStructuredReplyMagic);
  EXPECT_EQ(end.u16(), kReplyFlagDone);
  EXPECT_EQ(end.u16(), kReplyTypeNone);
  EXPECT_EQ(end.u64(), 43u);
  EXPECT_EQ(end.u32(), 0u);

  const Bytes error = encode_error_reply(44, kEio, "disk failed");
  ByteReader failed(error);
  EXPECT_EQ(failed.u32(), kStructuredReplyMagic);
  EXPECT_EQ(failed.u16(), kReplyFlagDone);
  EXPECT_EQ(failed.u16(), kReplyTypeError);
  EXPECT_EQ(failed.u64(), 44u);
  EXPECT_EQ(failed.u32(), 4u + 2 + 11);
  EXPECT_EQ(failed.u32(), kEio);
  EXPECT_EQ(failed.u16(), 11u);
  const auto text = failed.bytes(11);
  EXPECT_EQ(std::string(text.begin(), text.end()), "disk failed");
  EXPECT_TRUE(failed.at_end());

  const Bytes long_error = encode_error_reply(45, kEio, std::string(5000, 'x'));
  EXPECT_EQ(long_error.size(), kStructuredReplyBytes + 6 + kMaxMessageBytes);
}

}  // namespace
}  // namespace keel::nbd
