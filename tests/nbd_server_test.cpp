// The NBD server against real clients (nbdinfo, nbdcopy, qemu-img, nbdsh) and a hostile raw
// client, serving a FileBlockDevice in-process on a Unix socket. Needs the Debian packages
// libnbd-bin, python3-libnbd and qemu-utils; a test whose tool is missing skips itself.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/nbd/nbd_handshake.hpp"
#include "core/nbd/nbd_wire.hpp"
#include "file_test_support.hpp"
#include "io/nbd_connection.hpp"
#include "nbd_test_support.hpp"

namespace keel::testing {
namespace {

// nbdsh runs `python3 -m nbd`: the system's python3, which has python3-libnbd, not another one
// earlier in PATH.
const std::vector<std::string> kNbdsh = {"env", "PATH=/usr/bin:/bin", "nbdsh"};

std::vector<std::string> nbdsh(const std::string& uri, const std::string& script) {
  std::vector<std::string> argv = kNbdsh;
  argv.insert(argv.end(), {"-u", uri, "-c", script});
  return argv;
}

#define REQUIRE_TOOL(tool) \
  if (!have_tool(tool)) GTEST_SKIP() << tool << " is not installed"

// Writes `bytes` of seeded random data to `path`.
void write_random_file(const std::string& path, std::uint64_t bytes, std::uint32_t seed) {
  std::mt19937_64 random(seed);
  std::ofstream out(path, std::ios::binary);
  std::vector<std::uint64_t> block(1 << 16);
  for (std::uint64_t done = 0; done < bytes; done += block.size() * 8) {
    for (auto& word : block) word = random();
    out.write(
        reinterpret_cast<const char*>(block.data()),
        static_cast<std::streamsize>(std::min<std::uint64_t>(block.size() * 8, bytes - done)));
  }
  ASSERT_TRUE(out.good());
}

using NbdServerTest = NbdServerFixture;

TEST_F(NbdServerTest, SocketIsPrivateAndRemovedOnClose) {
  start_server();
  struct stat info {};
  ASSERT_EQ(::stat(socket_path_.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  stop_server();
  EXPECT_NE(::stat(socket_path_.c_str(), &info), 0);
}

TEST_F(NbdServerTest, NbdinfoShowsSizeBlockSizesAndFlags) {
  REQUIRE_TOOL("nbdinfo");
  start_server();
  const auto result = run({"nbdinfo", "--json", uri()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto info = nlohmann::json::parse(result.out);
  EXPECT_EQ(info["protocol"], "newstyle-fixed");
  EXPECT_EQ(info["structured"], true);
  ASSERT_EQ(info["exports"].size(), 1u);
  const auto& volume = info["exports"][0];
  EXPECT_EQ(volume["export-name"], kExport);
  EXPECT_EQ(volume["export-size"], kVolumeBytes);
  EXPECT_EQ(volume["block_size_minimum"], 1);
  EXPECT_EQ(volume["block_size_preferred"], 4096);
  EXPECT_EQ(volume["block_size_maximum"], 32 << 20);
  EXPECT_EQ(volume["is_read_only"], false);
  for (const char* flag : {"can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"}) {
    EXPECT_EQ(volume[flag], true) << flag;
  }
  EXPECT_EQ(volume["can_cache"], false);
}

TEST_F(NbdServerTest, NbdinfoListShowsTheExportAndItsDescription) {
  REQUIRE_TOOL("nbdinfo");
  start_server();
  const auto result = run({"nbdinfo", "--list", "nbd+unix:///?socket=" + socket_path_});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("export=\"vol\""), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("test volume"), std::string::npos) << result.out;
}

TEST_F(NbdServerTest, ReadOnlyExportRefusesWrites) {
  REQUIRE_TOOL("nbdsh");
  start_server(/*read_only=*/true);
  const auto result = run(nbdsh(uri(),
                                "assert h.is_read_only()\n"
                                "try:\n"
                                "    h.pwrite(b'x' * 512, 0)\n"
                                "    raise SystemExit('write succeeded')\n"
                                "except nbd.Error as e:\n"
                                "    assert e.errno == 'EPERM', e\n"));
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
}

TEST_F(NbdServerTest, NbdcopyRoundTripsSixtyFourMegabytes) {
  REQUIRE_TOOL("nbdcopy");
  start_server();
  const std::string in = dir_ + "/in.img";
  const std::string out = dir_ + "/out.img";
  write_random_file(in, kVolumeBytes, 1);
  auto copy_in = run({"nbdcopy", "--flush", in, uri()});
  ASSERT_EQ(copy_in.exit_code, 0) << copy_in.err;
  auto copy_out = run({"nbdcopy", uri(), out});
  ASSERT_EQ(copy_out.exit_code, 0) << copy_out.err;
  const std::string sent = read_file(in);
  ASSERT_EQ(sent.size(), kVolumeBytes);
  EXPECT_TRUE(read_file(out) == sent) << "copied back differs";
  EXPECT_TRUE(read_file(data_path_) == sent) << "backing file differs";
  const auto counters = stats();
  EXPECT_GE(counters.bytes_written, kVolumeBytes);
  EXPECT_GE(counters.bytes_read, kVolumeBytes);
  // nbdcopy reads in large requests: those went out by sendfile, and came back intact above.
  EXPECT_GT(counters.zero_copy_reads, 0u);
  EXPECT_GE(counters.request_count(nbd::Command::flush), 1u);
  EXPECT_EQ(counters.protocol_errors, 0u);
  EXPECT_EQ(counters.error_replies, 0u);
}

TEST_F(NbdServerTest, QemuImgConvertsAndCompares) {
  REQUIRE_TOOL("qemu-img");
  start_server();
  const std::string image = dir_ + "/qemu.img";
  write_random_file(image, kVolumeBytes, 2);
  auto convert = run({"qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", image, uri()});
  ASSERT_EQ(convert.exit_code, 0) << convert.err;
  const std::string legacy = "nbd:unix:" + socket_path_ + ":exportname=" + kExport;
  auto compare = run({"qemu-img", "compare", "-f", "raw", "-F", "raw", image, legacy});
  EXPECT_EQ(compare.exit_code, 0) << compare.out << compare.err;
  // And a difference is seen as one.
  write_random_file(image, 4096, 3);
  auto differ = run({"qemu-img", "compare", "-f", "raw", "-F", "raw", image, legacy});
  EXPECT_EQ(differ.exit_code, 1) << differ.out << differ.err;
}

TEST_F(NbdServerTest, TrimZeroesFuaAndFlushFromNbdsh) {
  REQUIRE_TOOL("nbdsh");
  start_server();
  const auto result = run(nbdsh(uri(),
                                "assert h.can_trim() and h.can_zero() and h.can_fua()\n"
                                "h.pwrite(b'\\xff' * 65536, 0)\n"
                                "h.trim(32768, 0)\n"
                                "assert h.pread(65536, 0) == bytes(32768) + b'\\xff' * 32768\n"
                                "h.zero(4096, 40960, nbd.CMD_FLAG_NO_HOLE)\n"
                                "assert h.pread(8192, 36864) == b'\\xff' * 4096 + bytes(4096)\n"
                                "h.pwrite(b'\\xab' * 4096, 1 << 20, nbd.CMD_FLAG_FUA)\n"
                                "h.zero(4096, 2 << 20, nbd.CMD_FLAG_FUA)\n"
                                "h.trim(4096, 3 << 20, nbd.CMD_FLAG_FUA)\n"
                                "h.flush()\n"
                                "h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_BOUNDS)\n"
                                "try:\n"
                                "    h.pread(2, (64 << 20) - 1)\n"
                                "    raise SystemExit('read past the end succeeded')\n"
                                "except nbd.Error as e:\n"
                                "    assert e.errno == 'EINVAL', e\n"
                                "h.shutdown()\n"));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::string data = read_file(data_path_);
  ASSERT_EQ(data.size(), kVolumeBytes);
  EXPECT_EQ(data.substr(0, 32768), std::string(32768, '\0'));
  EXPECT_EQ(data.substr(32768, 8192), std::string(8192, '\xff'));
  EXPECT_EQ(data.substr(40960, 4096), std::string(4096, '\0'));
  EXPECT_EQ(data.substr(1 << 20, 4096), std::string(4096, '\xab'));
  const auto counters = stats();
  EXPECT_EQ(counters.request_count(nbd::Command::trim), 2u);
  EXPECT_EQ(counters.request_count(nbd::Command::write_zeroes), 2u);
  EXPECT_EQ(counters.request_count(nbd::Command::disconnect), 1u);
  EXPECT_EQ(counters.error_replies, 1u);  // the read past the end (the client checks off)
}

// A large read goes out by sendfile after its chunk header. When the file cannot give the bytes
// (here it ended early), that read alone fails with EIO and the connection serves on.
TEST_F(NbdServerTest, AFailedZeroCopyReadIsAnErrorAndTheConnectionServesOn) {
  REQUIRE_TOOL("nbdsh");
  start_server();
  ASSERT_EQ(::truncate(data_path_.c_str(), kVolumeBytes / 2), 0);
  const auto result = run(nbdsh(uri(),
                                "try:\n"
                                "    h.pread(1 << 20, 48 << 20)\n"
                                "    raise SystemExit('a read past the file succeeded')\n"
                                "except nbd.Error as e:\n"
                                "    assert e.errno == 'EIO', e\n"
                                "h.pwrite(b'\\x5a' * (1 << 20), 0)\n"
                                "assert h.pread(1 << 20, 0) == b'\\x5a' * (1 << 20)\n"
                                "h.shutdown()\n"));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const auto counters = stats();
  EXPECT_EQ(counters.device_errors, 1u);
  EXPECT_EQ(counters.error_replies, 1u);
  EXPECT_EQ(counters.zero_copy_reads, 2u);
}

TEST_F(NbdServerTest, SecondaryIsRefusedAtGoWithAClearMessage) {
  REQUIRE_TOOL("nbdinfo");
  start_server();
  const std::string reason = "volume vol: this node is secondary; the primary is b1";
  on_io([&] {
    device_->set_unavailable_reason(reason);
    return 0;
  });
  // libnbd 1.14 reports the refusal as ENOENT and shows the server's text in its debug output.
  const auto refused = run({"env", "LIBNBD_DEBUG=1", "nbdinfo", uri()});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("server error message: " + reason), std::string::npos) << refused.err;
  if (have_tool("qemu-img")) {
    const auto qemu = run({"qemu-img", "info", uri()});
    EXPECT_NE(qemu.exit_code, 0);
    EXPECT_NE(qemu.err.find(reason), std::string::npos) << qemu.err;
  }
  on_io([&] {
    device_->set_unavailable_reason("");
    return 0;
  });
  const auto promoted = run({"nbdinfo", uri()});
  EXPECT_EQ(promoted.exit_code, 0) << promoted.err;
}

// Negotiates the export with EXPORT_NAME (NO_ZEROES); false if the server did not answer.
bool negotiate(RawClient& client) {
  if (!client.connected() || !client.receive(nbd::kGreetingBytes)) return false;
  Bytes hello;
  ByteWriter writer(hello);
  writer.u32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes);
  writer.u64(nbd::kOptionMagic);
  writer.u32(static_cast<std::uint32_t>(nbd::Option::export_name));
  writer.u32(3);
  writer.bytes(Bytes{'v', 'o', 'l'});
  return client.send(hello) && client.receive(nbd::kExportNameTrailerBytes).has_value();
}

TEST_F(NbdServerTest, HostileClientsLoseOnlyTheirOwnConnection) {
  start_server();
  RawClient good(socket_path_);
  ASSERT_TRUE(negotiate(good));

  RawClient bad_magic(socket_path_);
  ASSERT_TRUE(negotiate(bad_magic));
  ASSERT_TRUE(bad_magic.send(Bytes(nbd::kRequestBytes, 0x5a)));
  EXPECT_TRUE(bad_magic.closed_by_server());

  RawClient huge_write(socket_path_);
  ASSERT_TRUE(negotiate(huge_write));
  nbd::Request huge{0, static_cast<std::uint16_t>(nbd::Command::write), 1, 0, 0xfffffff0};
  ASSERT_TRUE(huge_write.send(nbd::encode_request(huge)));
  EXPECT_TRUE(huge_write.closed_by_server());

  RawClient bad_option(socket_path_);
  ASSERT_TRUE(bad_option.receive(nbd::kGreetingBytes));
  ASSERT_TRUE(bad_option.send(Bytes(4 + nbd::kOptionHeaderBytes, 0)));  // flags, then no IHAVEOPT
  EXPECT_TRUE(bad_option.closed_by_server());

  // The good connection still reads (simple replies: it did not ask for structured ones).
  nbd::Request read{0, static_cast<std::uint16_t>(nbd::Command::read), 77, 0, 512};
  ASSERT_TRUE(good.send(nbd::encode_request(read)));
  const auto reply = good.receive(nbd::kSimpleReplyBytes + 512);
  ASSERT_TRUE(reply.has_value());
  const auto expected = nbd::encode_simple_reply(77, nbd::kErrorNone);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), reply->begin()));
  // An out-of-range read is an error reply, not a close.
  nbd::Request past{0, static_cast<std::uint16_t>(nbd::Command::read), 78, kVolumeBytes, 1};
  ASSERT_TRUE(good.send(nbd::encode_request(past)));
  const auto error = good.receive(nbd::kSimpleReplyBytes);
  ASSERT_TRUE(error.has_value());
  const auto einval = nbd::encode_simple_reply(78, nbd::kEinval);
  EXPECT_TRUE(std::equal(einval.begin(), einval.end(), error->begin()));

  const auto counters = stats();
  EXPECT_EQ(counters.protocol_errors, 3u);
  EXPECT_EQ(on_io([this] { return server_->connection_count(); }), 1u);
}

TEST_F(NbdServerTest, PipelinedRequestsAreAllAnswered) {
  start_server();
  RawClient client(socket_path_);
  ASSERT_TRUE(negotiate(client));
  // More requests than may be in flight, sent at once: the server reads ahead in bounded steps.
  constexpr std::uint64_t kRequests = 3 * nbd::kMaxRequestsInFlight;
  Bytes batch;
  for (std::uint64_t cookie = 0; cookie < kRequests; ++cookie) {
    const nbd::Request write{0, static_cast<std::uint16_t>(nbd::Command::write), cookie,
                             cookie * 4096, 4096};
    const auto header = nbd::encode_request(write);
    batch.insert(batch.end(), header.begin(), header.end());
    batch.insert(batch.end(), 4096, static_cast<std::uint8_t>(cookie));
  }
  ASSERT_TRUE(client.send(batch));
  std::vector<bool> answered(kRequests, false);
  for (std::uint64_t i = 0; i < kRequests; ++i) {
    const auto reply = client.receive(nbd::kSimpleReplyBytes);
    ASSERT_TRUE(reply.has_value()) << i;
    ByteReader reader(*reply);
    EXPECT_EQ(reader.u32(), nbd::kSimpleReplyMagic);
    EXPECT_EQ(reader.u32(), nbd::kErrorNone);
    const std::uint64_t cookie = reader.u64();
    ASSERT_LT(cookie, kRequests);
    EXPECT_FALSE(answered[cookie]) << cookie;
    answered[cookie] = true;
  }
  const std::string data = read_file(data_path_);
  for (std::uint64_t cookie = 0; cookie < kRequests; ++cookie) {
    EXPECT_EQ(data[cookie * 4096 + 4095], static_cast<char>(cookie)) << cookie;
  }
}

TEST_F(NbdServerTest, DripFedAndOversizedRequestsAreParsed) {
  start_server();
  RawClient client(socket_path_);
  ASSERT_TRUE(negotiate(client));
  // A write whose header and payload arrive a few bytes at a time, then one whose payload is
  // larger than the connection's receive buffer, then a read of both: the parser must resume
  // mid-header and mid-payload, and take a large payload straight into its own buffer.
  constexpr std::uint32_t kSmall = 4096;
  constexpr std::uint32_t kLarge = 3 * io::kNbdReceiveBufferBytes / 2;
  const nbd::Request small{0, static_cast<std::uint16_t>(nbd::Command::write), 1, 0, kSmall};
  const auto small_header = nbd::encode_request(small);
  Bytes first(small_header.begin(), small_header.end());
  first.insert(first.end(), kSmall, 0xa5);
  for (std::size_t at = 0; at < first.size(); at += 7) {
    const std::size_t piece = std::min<std::size_t>(7, first.size() - at);
    ASSERT_TRUE(client.send({first.data() + at, piece}));
    if (at < 64) std::this_thread::yield();  // the header in separate segments, usually
  }
  const nbd::Request large{0, static_cast<std::uint16_t>(nbd::Command::write), 2, kSmall, kLarge};
  const auto large_header = nbd::encode_request(large);
  Bytes second(large_header.begin(), large_header.end());
  for (std::uint32_t i = 0; i < kLarge; ++i) second.push_back(static_cast<std::uint8_t>(i % 251));
  ASSERT_TRUE(client.send(second));
  // NBD lets a server answer in any order, and the two writes may complete either way round.
  std::vector<std::uint64_t> cookies;
  for (int i = 0; i < 2; ++i) {
    const auto reply = client.receive(nbd::kSimpleReplyBytes);
    ASSERT_TRUE(reply.has_value()) << i;
    ByteReader reader(*reply);
    EXPECT_EQ(reader.u32(), nbd::kSimpleReplyMagic);
    EXPECT_EQ(reader.u32(), nbd::kErrorNone);
    cookies.push_back(reader.u64());
  }
  std::sort(cookies.begin(), cookies.end());
  EXPECT_EQ(cookies, (std::vector<std::uint64_t>{1, 2}));
  const nbd::Request read{0, static_cast<std::uint16_t>(nbd::Command::read), 3, 0, kSmall + kLarge};
  ASSERT_TRUE(client.send(nbd::encode_request(read)));
  const auto answer = client.receive(nbd::kSimpleReplyBytes + kSmall + kLarge);
  ASSERT_TRUE(answer.has_value());
  const std::uint8_t* data = answer->data() + nbd::kSimpleReplyBytes;
  for (std::uint32_t i = 0; i < kSmall; ++i) ASSERT_EQ(data[i], 0xa5) << i;
  for (std::uint32_t i = 0; i < kLarge; ++i) {
    ASSERT_EQ(data[kSmall + i], static_cast<std::uint8_t>(i % 251)) << i;
  }
  EXPECT_EQ(stats().protocol_errors, 0u);
}

}  // namespace
}  // namespace keel::testing
