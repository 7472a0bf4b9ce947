// Tests for PacketSealer/PacketOpener and the key file: what is sealed opens once and unchanged;
// altered, forged, replayed, truncated packets, unknown senders and packets sent from another
// node's address are refused and counted (the last before they can touch the replay window); key
// files are private, never overwritten and strictly formatted.
#include "io/sealed_packet.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace keel::io {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::size_t kHeaderBytes = 23;
constexpr std::size_t kNonceBytes = 24;
constexpr std::size_t kTagBytes = 16;
constexpr std::uint64_t kEpoch = 1'700'000'000'000'000;

ClusterKey key_of(std::uint8_t fill) {
  ClusterKey key;
  key.fill(fill);
  return key;
}

Bytes bytes_of(const std::string& text) { return Bytes(text.begin(), text.end()); }

PacketOpener opener(std::vector<NodeId> known = {1, 2, 3}) {
  return PacketOpener(key_of(7), std::move(known));
}

TEST(SealedPacketTest, RoundTrip) {
  PacketSealer sealer(key_of(7), 2, kEpoch);
  PacketOpener receiver = opener();
  for (const std::string& text :
       {std::string("hello ring"), std::string(), std::string(1400, 'x')}) {
    const Bytes sealed = sealer.seal(bytes_of(text));
    EXPECT_EQ(sealed.size(), text.size() + kSealOverheadBytes);
    auto opened = receiver.open(sealed, 2);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened.value().sender, 2u);
    EXPECT_EQ(opened.value().plaintext, bytes_of(text));
  }
  EXPECT_EQ(receiver.stats().opened, 3u);
}

TEST(SealedPacketTest, HeaderIsInTheDocumentedLayout) {
  PacketSealer sealer(key_of(7), 0x01020304, 0x1112131415161718);
  const Bytes sealed = sealer.seal(bytes_of("x"));
  const Bytes header(sealed.begin(), sealed.begin() + kHeaderBytes);
  EXPECT_EQ(header, (Bytes{0x4b, 0x53, 1,    1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15,
                           0x16, 0x17, 0x18, 0, 0, 0, 0, 0,    0,    0,    1}));
  const Bytes second = sealer.seal(bytes_of("x"));
  EXPECT_EQ(second[kHeaderBytes - 1], 2);  // the counter rises by one
  EXPECT_FALSE(std::equal(sealed.begin() + kHeaderBytes,
                          sealed.begin() + kHeaderBytes + kNonceBytes,
                          second.begin() + kHeaderBytes));  // a fresh nonce
}

// Nonces are the sealer's random prefix and the counter: never repeated by one sealer, and two
// sealers (a restart, another node) differ in the prefix.
TEST(SealedPacketTest, NoncesArePrefixAndCounter) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  PacketSealer other(key_of(7), 1, kEpoch);
  const auto nonce = [](const Bytes& sealed) {
    return Bytes(sealed.begin() + kHeaderBytes, sealed.begin() + kHeaderBytes + kNonceBytes);
  };
  const Bytes first = nonce(sealer.seal(bytes_of("x")));
  const Bytes second = nonce(sealer.seal(bytes_of("x")));
  EXPECT_TRUE(std::equal(first.begin(), first.begin() + 16, second.begin()));
  EXPECT_EQ(Bytes(first.begin() + 16, first.end()), (Bytes{0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(Bytes(second.begin() + 16, second.end()), (Bytes{0, 0, 0, 0, 0, 0, 0, 2}));
  const Bytes others = nonce(other.seal(bytes_of("x")));
  EXPECT_FALSE(std::equal(first.begin(), first.begin() + 16, others.begin()));
}

TEST(SealedPacketTest, EveryAlteredByteIsRefused) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  const Bytes sealed = sealer.seal(bytes_of("a ring packet"));
  ASSERT_EQ(sealed.size(), kHeaderBytes + kNonceBytes + 13 + kTagBytes);
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    Bytes altered = sealed;
    altered[i] ^= 0x01;
    PacketOpener receiver = opener();
    auto opened = receiver.open(altered, 1);
    ASSERT_FALSE(opened.ok()) << "byte " << i;
    if (i < 3) {  // magic and version: refused before any cryptography
      EXPECT_EQ(receiver.stats().malformed, 1u) << "byte " << i;
      EXPECT_THAT(opened.error().message, StartsWith("malformed"));
    } else {  // sender, epoch, counter, nonce, ciphertext, tag
      EXPECT_EQ(receiver.stats().forged, 1u) << "byte " << i;
      EXPECT_THAT(opened.error().message, StartsWith("forged"));
    }
    EXPECT_EQ(receiver.stats().opened, 0u);
  }
  EXPECT_TRUE(opener().open(sealed, 1).ok());
}

TEST(SealedPacketTest, WrongKeyIsForged) {
  PacketSealer sealer(key_of(8), 1, kEpoch);
  PacketOpener receiver = opener();
  auto opened = receiver.open(sealer.seal(bytes_of("hi")), 1);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(receiver.stats().forged, 1u);
}

TEST(SealedPacketTest, ForgeriesDoNotMoveTheWindow) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  PacketSealer forger(key_of(8), 1, kEpoch + 1);  // a newer epoch, but the wrong key
  PacketOpener receiver = opener();
  const Bytes genuine = sealer.seal(bytes_of("one"));
  ASSERT_FALSE(receiver.open(forger.seal(bytes_of("evil")), 1).ok());
  EXPECT_TRUE(receiver.open(genuine, 1).ok());
}

TEST(SealedPacketTest, ReplayIsRefused) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  PacketOpener receiver = opener();
  const Bytes sealed = sealer.seal(bytes_of("once"));
  ASSERT_TRUE(receiver.open(sealed, 1).ok());
  auto again = receiver.open(sealed, 1);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("seen before"));
  EXPECT_EQ(receiver.stats().replayed, 1u);
}

TEST(SealedPacketTest, CounterBelowTheWindowIsRefused) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  std::vector<Bytes> sealed;
  for (int i = 0; i < 1027; ++i) sealed.push_back(sealer.seal(bytes_of("p")));
  // Counters 1 .. 1027. After 1027, the window holds 3 .. 1026 below it: 2 is out.
  PacketOpener receiver = opener();
  ASSERT_TRUE(receiver.open(sealed[1026], 1).ok());
  auto below = receiver.open(sealed[1], 1);
  ASSERT_FALSE(below.ok());
  EXPECT_THAT(below.error().message, HasSubstr("below the window"));
  EXPECT_FALSE(receiver.open(sealed[0], 1).ok());
  EXPECT_TRUE(receiver.open(sealed[2], 1).ok());  // the oldest counter still in the window
  EXPECT_EQ(receiver.stats().replayed, 2u);
}

TEST(SealedPacketTest, ReorderingWithinTheWindowIsAcceptedExactlyOnce) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  std::vector<Bytes> sealed;
  for (int i = 0; i < 300; ++i) sealed.push_back(sealer.seal(bytes_of(std::to_string(i))));
  std::vector<std::size_t> order(sealed.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937 random(42);
  std::shuffle(order.begin(), order.end(), random);
  PacketOpener receiver = opener();
  for (std::size_t i : order) {
    auto opened = receiver.open(sealed[i], 1);
    ASSERT_TRUE(opened.ok()) << "packet " << i << ": " << opened.error().message;
    EXPECT_EQ(opened.value().plaintext, bytes_of(std::to_string(i)));
  }
  for (std::size_t i : order) EXPECT_FALSE(receiver.open(sealed[i], 1).ok()) << "packet " << i;
  EXPECT_EQ(receiver.stats().opened, 300u);
  EXPECT_EQ(receiver.stats().replayed, 300u);
}

TEST(SealedPacketTest, LargeJumpsForwardKeepTheWindowExact) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  std::vector<Bytes> sealed;
  for (int i = 0; i < 3000; ++i) sealed.push_back(sealer.seal(bytes_of("p")));
  PacketOpener receiver = opener();
  // Jumps of 1, 63, 64, 65, 1023, 1024 and 1025 counters.
  for (std::size_t i : {0, 1, 64, 128, 193}) ASSERT_TRUE(receiver.open(sealed[i], 1).ok()) << i;
  for (std::size_t i : {0, 1, 64, 128}) EXPECT_FALSE(receiver.open(sealed[i], 1).ok()) << i;
  for (std::size_t i : {2, 63, 65, 127, 129, 192})
    EXPECT_TRUE(receiver.open(sealed[i], 1).ok()) << i;
  for (std::size_t i : {1216, 2240}) ASSERT_TRUE(receiver.open(sealed[i], 1).ok()) << i;
  EXPECT_FALSE(receiver.open(sealed[1216], 1).ok());  // exactly 1024 below: in the window, seen
  EXPECT_TRUE(receiver.open(sealed[1217], 1).ok());   // in the window, not seen
  EXPECT_FALSE(receiver.open(sealed[1215], 1).ok());  // below the window
  EXPECT_TRUE(receiver.open(sealed[2239], 1).ok());
  EXPECT_TRUE(receiver.open(sealed[2241], 1).ok());
}

TEST(SealedPacketTest, RestartedSenderStartsANewEpoch) {
  PacketSealer before(key_of(7), 1, kEpoch);
  PacketOpener receiver = opener();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(receiver.open(before.seal(bytes_of("old")), 1).ok());
  const Bytes late_old = before.seal(bytes_of("late"));
  PacketSealer after(key_of(7), 1, kEpoch + 5'000'000);  // counter starts again at 1
  ASSERT_TRUE(receiver.open(after.seal(bytes_of("new")), 1).ok());
  ASSERT_TRUE(receiver.open(after.seal(bytes_of("new")), 1).ok());
  auto old = receiver.open(late_old, 1);
  ASSERT_FALSE(old.ok());
  EXPECT_THAT(old.error().message, HasSubstr("older than its epoch"));
  EXPECT_EQ(receiver.stats().replayed, 1u);
}

// A restarted receiver's windows start from the epochs its last run saw: a packet captured from
// the sender's earlier run is still a replay, while the sender's current run opens as before.
TEST(SealedPacketTest, AnEpochFloorOutlivesTheReceiversRestart) {
  PacketSealer earlier(key_of(7), 1, kEpoch);
  const Bytes captured = earlier.seal(bytes_of("from an earlier run"));
  PacketSealer current(key_of(7), 1, kEpoch + 5'000'000);
  PacketOpener restarted = opener();
  restarted.set_epoch_floor(1, kEpoch + 5'000'000);
  auto replayed = restarted.open(captured, 1);
  ASSERT_FALSE(replayed.ok());
  EXPECT_THAT(replayed.error().message, HasSubstr("older than its epoch"));
  for (int i = 0; i < 3; ++i) current.seal(bytes_of("sent before the restart"));
  auto opened = restarted.open(current.seal(bytes_of("now")), 1);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_FALSE(opened.value().new_epoch);  // the floor's epoch: already recorded
  auto again = restarted.open(current.seal(bytes_of("next")), 1);
  ASSERT_TRUE(again.ok());
  // A later restart of the sender is news to record.
  PacketSealer later(key_of(7), 1, kEpoch + 9'000'000);
  auto restarted_sender = restarted.open(later.seal(bytes_of("hello")), 1);
  ASSERT_TRUE(restarted_sender.ok());
  EXPECT_TRUE(restarted_sender.value().new_epoch);
  EXPECT_EQ(restarted_sender.value().epoch, kEpoch + 9'000'000);
  EXPECT_EQ(restarted.stats().replayed, 1u);
}

TEST(SealedPacketTest, TheFirstPacketOfAnEpochIsMarkedNew) {
  PacketSealer sender(key_of(7), 1, kEpoch);
  PacketOpener receiver = opener();
  auto first = receiver.open(sender.seal(bytes_of("a")), 1);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first.value().new_epoch);
  EXPECT_EQ(first.value().epoch, kEpoch);
  auto second = receiver.open(sender.seal(bytes_of("b")), 1);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second.value().new_epoch);
}

TEST(SealedPacketTest, SendersHaveSeparateWindows) {
  PacketSealer one(key_of(7), 1, kEpoch);
  PacketSealer two(key_of(7), 2, kEpoch);
  PacketOpener receiver = opener();
  EXPECT_TRUE(receiver.open(one.seal(bytes_of("a")), 1).ok());
  EXPECT_TRUE(receiver.open(two.seal(bytes_of("a")), 2).ok());  // same counter, other sender
  auto opened = receiver.open(two.seal(bytes_of("b")), 2);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened.value().sender, 2u);
}

TEST(SealedPacketTest, UnknownSenderIsRefused) {
  PacketSealer stranger(key_of(7), 9, kEpoch);
  PacketOpener receiver = opener();
  auto opened = receiver.open(stranger.seal(bytes_of("hello")), kNoNode);
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.error().message, HasSubstr("node 9"));
  EXPECT_EQ(receiver.stats().unknown_sender, 1u);
  EXPECT_EQ(receiver.stats().opened, 0u);
}

// An authentic packet sent from another node's address (or one no node has) is refused before
// the window: a captured copy sent from elsewhere first does not spend the genuine one's counter,
// nor take the first packet of the sender's new epoch, which is then reported when it comes.
TEST(SealedPacketTest, APacketFromAnotherAddressDoesNotMoveTheWindow) {
  PacketSealer sender(key_of(7), 3, kEpoch);
  PacketOpener receiver = opener();
  const Bytes sealed = sender.seal(bytes_of("one"));
  auto elsewhere = receiver.open(sealed, 1);
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_EQ(elsewhere.error().message, "packet from node 3 sent from node 1's address");
  auto nowhere = receiver.open(sealed, kNoNode);
  ASSERT_FALSE(nowhere.ok());
  EXPECT_EQ(nowhere.error().message, "packet from node 3 sent from an address no node has");
  auto genuine = receiver.open(sealed, 3);
  ASSERT_TRUE(genuine.ok()) << genuine.error().message;
  EXPECT_TRUE(genuine.value().new_epoch);

  PacketSealer restarted(key_of(7), 3, kEpoch + 1);
  ASSERT_FALSE(receiver.open(restarted.seal(bytes_of("new")), 2).ok());
  auto next = receiver.open(restarted.seal(bytes_of("next")), 3);
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_TRUE(next.value().new_epoch);
  EXPECT_EQ(next.value().epoch, kEpoch + 1);
  EXPECT_EQ(receiver.stats().wrong_address, 3u);
  EXPECT_EQ(receiver.stats().replayed, 0u);
  EXPECT_EQ(receiver.stats().opened, 2u);
}

TEST(SealedPacketTest, TruncatedPacketsAreRefused) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  const Bytes sealed = sealer.seal(bytes_of("twelve bytes"));
  PacketOpener receiver = opener();
  for (std::size_t size = 0; size < kSealOverheadBytes; ++size) {
    auto opened = receiver.open(std::span(sealed).first(size), 1);
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(opened.error().message, StartsWith("malformed")) << size;
  }
  EXPECT_EQ(receiver.stats().malformed, kSealOverheadBytes);
  for (std::size_t size = kSealOverheadBytes; size < sealed.size(); ++size) {
    EXPECT_FALSE(receiver.open(std::span(sealed).first(size), 1).ok()) << size;
  }
  EXPECT_EQ(receiver.stats().forged, sealed.size() - kSealOverheadBytes);
  EXPECT_TRUE(receiver.open(sealed, 1).ok());
}

TEST(SealedPacketTest, StatsCountEveryOutcome) {
  PacketSealer sealer(key_of(7), 1, kEpoch);
  PacketSealer wrong_key(key_of(1), 1, kEpoch);
  PacketSealer stranger(key_of(7), 40, kEpoch);
  PacketOpener receiver = opener();
  const Bytes good = sealer.seal(bytes_of("g"));
  EXPECT_TRUE(receiver.open(good, 1).ok());
  EXPECT_TRUE(receiver.open(sealer.seal(bytes_of("g")), 1).ok());
  EXPECT_FALSE(receiver.open(good, 1).ok());
  EXPECT_FALSE(receiver.open(wrong_key.seal(bytes_of("f")), 1).ok());
  EXPECT_FALSE(receiver.open(wrong_key.seal(bytes_of("f")), 1).ok());
  EXPECT_FALSE(receiver.open(Bytes(10, 0), 1).ok());
  EXPECT_FALSE(receiver.open(stranger.seal(bytes_of("s")), kNoNode).ok());
  EXPECT_FALSE(receiver.open(sealer.seal(bytes_of("w")), 2).ok());
  const OpenStats& s = receiver.stats();
  EXPECT_EQ(s.opened, 2u);
  EXPECT_EQ(s.replayed, 1u);
  EXPECT_EQ(s.forged, 2u);
  EXPECT_EQ(s.malformed, 1u);
  EXPECT_EQ(s.unknown_sender, 1u);
  EXPECT_EQ(s.wrong_address, 1u);
}

// A fresh directory for key files, removed with what it holds.
class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "keel_key_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const char* name : {"cluster.key", "other.key"}) std::remove(path(name).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  void write(const std::string& name, const std::string& text, mode_t mode) const {
    std::ofstream(path(name)) << text;
    ASSERT_EQ(::chmod(path(name).c_str(), mode), 0);
  }
  static std::string read(const std::string& file) {
    std::ostringstream text;
    text << std::ifstream(file).rdbuf();
    return text.str();
  }

  std::string dir_;
};

const std::string kHexKey = std::string(64, 'a') + "\n";

TEST_F(KeyFileTest, NewKeyIsPrivateHexAndReadsBack) {
  const std::string file = path("cluster.key");
  auto written = write_new_key_file(file);
  ASSERT_TRUE(written.ok()) << written.error().message;
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
  const std::string text = read(file);
  ASSERT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), 64u);
  auto key = read_key_file(file);
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_NE(key.value(), ClusterKey{});

  ASSERT_TRUE(write_new_key_file(path("other.key")).ok());
  EXPECT_NE(read_key_file(path("other.key")).value(), key.value());  // random, not fixed
}

TEST_F(KeyFileTest, ExistingFileIsNeverOverwritten) {
  write("cluster.key", kHexKey, 0600);
  auto written = write_new_key_file(path("cluster.key"));
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.error().message,
            "key file " + path("cluster.key") +
                " exists; remove it first to make a new key (every host must then get the new "
                "key)");
  EXPECT_EQ(read(path("cluster.key")), kHexKey);
}

TEST_F(KeyFileTest, KeyFileOthersCanReachIsRefused) {
  write("cluster.key", kHexKey, 0644);
  auto key = read_key_file(path("cluster.key"));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().message, "key file " + path("cluster.key") +
                                     " is readable by others (mode 0644); run chmod 600 on it");
  ASSERT_EQ(::chmod(path("cluster.key").c_str(), 0620), 0);
  auto writable = read_key_file(path("cluster.key"));
  ASSERT_FALSE(writable.ok());
  EXPECT_THAT(writable.error().message, HasSubstr("is writable by others (mode 0620)"));
  ASSERT_EQ(::chmod(path("cluster.key").c_str(), 0640), 0);
  EXPECT_FALSE(read_key_file(path("cluster.key")).ok());
  ASSERT_EQ(::chmod(path("cluster.key").c_str(), 0400), 0);
  EXPECT_TRUE(read_key_file(path("cluster.key")).ok());
}

TEST_F(KeyFileTest, KeyIsTheHexDigitsOfTheFile) {
  write("cluster.key", "00010203040506070809" + std::string(44, 'F') + "\n", 0600);
  auto key = read_key_file(path("cluster.key"));
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key.value()[0], 0x00);
  EXPECT_EQ(key.value()[9], 0x09);
  EXPECT_EQ(key.value()[31], 0xff);
}

TEST_F(KeyFileTest, BadContentIsRefused) {
  for (const std::string& text :
       {std::string(63, 'a') + "g\n", std::string(62, 'a') + "\n", std::string(66, 'a') + "\n",
        std::string(), " " + std::string(64, 'a') + "\n", std::string(64, 'a') + "\n\nextra"}) {
    write("cluster.key", text, 0600);
    auto key = read_key_file(path("cluster.key"));
    ASSERT_FALSE(key.ok()) << text;
    EXPECT_THAT(key.error().message, HasSubstr("must hold 64 hex digits")) << text;
  }
}

TEST_F(KeyFileTest, MissingFileSaysHowToMakeOne) {
  auto key = read_key_file(path("cluster.key"));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().message, "key file " + path("cluster.key") +
                                     " does not exist; create it with keel keygen " +
                                     path("cluster.key") + " and copy it to every host");
}

TEST_F(KeyFileTest, PacketsSealedWithAFileKeyOpenWithIt) {
  ASSERT_TRUE(write_new_key_file(path("cluster.key")).ok());
  const ClusterKey key = read_key_file(path("cluster.key")).value();
  PacketSealer sealer(key, 3, kEpoch);
  PacketOpener receiver(read_key_file(path("cluster.key")).value(), {3});
  auto opened = receiver.open(sealer.seal(bytes_of("shared")), 3);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened.value().plaintext, bytes_of("shared"));
}

}  // namespace
}  // namespace keel::io
