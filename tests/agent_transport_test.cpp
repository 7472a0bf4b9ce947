// UdpTransport on loopback: sealed packets go through, garbage, forgeries, replays and packets
// from the wrong address are dropped and counted, and an MTU too small for the ring is refused.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/udp.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent_test_support.hpp"
#include "config/config.hpp"
#include "core/ring/limits.hpp"
#include "io/udp_transport.hpp"

namespace keel::io {
namespace {

using agent::testing::free_udp_port;

struct Received {
  NodeId from = kNoNode;
  Bytes plaintext;
};

ClusterKey key_of(std::uint8_t fill) {
  ClusterKey key;
  key.fill(fill);
  return key;
}

class UdpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 3; ++i) {
      const std::string address = "127.0.0." + std::to_string(i);
      nodes_.push_back({static_cast<NodeId>(i), address, free_udp_port(address)});
    }
  }

  std::unique_ptr<UdpTransport> open(NodeId self, const ClusterKey& key) {
    auto transport = UdpTransport::open(io_, {self, nodes_, 1500, 1400, key, 1000 + self});
    EXPECT_TRUE(transport.ok()) << transport.error().message;
    transport.value()->start([this, self](NodeId from, std::span<const std::uint8_t> bytes) {
      received_[self].push_back({from, Bytes(bytes.begin(), bytes.end())});
    });
    return std::move(transport).value();
  }

  // Runs the io_context until `condition` holds, at most two seconds.
  bool run_until(const std::function<bool()>& condition) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!condition()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_one_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  // A plain UDP socket at `address`:`port` sending raw bytes to node `to`.
  void send_raw(const std::string& address, std::uint16_t port, NodeId to, const Bytes& bytes) {
    asio::ip::udp::socket raw(io_, asio::ip::udp::endpoint(asio::ip::make_address(address), port));
    const TransportNode& node = nodes_[to - 1];
    raw.send_to(asio::buffer(bytes),
                asio::ip::udp::endpoint(asio::ip::make_address(node.address), node.port));
  }

  asio::io_context io_;
  std::vector<TransportNode> nodes_;
  std::map<NodeId, std::vector<Received>> received_;
};

TEST_F(UdpTransportTest, SealedPacketsReachOneNodeOrAllOthers) {
  auto one = open(1, key_of(7));
  auto two = open(2, key_of(7));
  auto three = open(3, key_of(7));
  const Bytes hello{'h', 'i'};
  one->send(2, hello);
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_EQ(received_[2][0].from, 1u);
  EXPECT_EQ(received_[2][0].plaintext, hello);
  one->send(kAllNodes, Bytes{'x'});
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 2 && received_[3].size() == 1; }));
  EXPECT_TRUE(received_[1].empty());
  EXPECT_EQ(one->stats().datagrams_sent, 3u);
  const PeerStats& peer = two->peers().front();
  EXPECT_EQ(peer.id, 1u);
  EXPECT_EQ(peer.packets_opened, 2u);
  EXPECT_TRUE(peer.last_heard_us.has_value());
  EXPECT_EQ(two->open_stats().opened, 2u);
}

TEST_F(UdpTransportTest, GarbageAndForgeriesAreCountedNotDelivered) {
  auto one = open(1, key_of(7));
  auto two = open(2, key_of(7));
  auto three = open(3, key_of(9));  // another cluster's key
  three->send(2, Bytes{'f'});
  send_raw("127.0.0.1", 0, 2, Bytes{1, 2, 3});  // from an address no node has
  ASSERT_TRUE(run_until([&] {
    return two->peers()[1].dropped.forged == 1 &&
           two->stats().dropped_from_unconfigured.malformed == 1;
  }));
  EXPECT_TRUE(received_[2].empty());
  EXPECT_EQ(two->open_stats().forged, 1u);
  EXPECT_EQ(two->open_stats().malformed, 1u);
}

TEST_F(UdpTransportTest, ReplaysAndWrongAddressesAreDropped) {
  auto two = open(2, key_of(7));
  // Node 3 has no transport here: a raw socket on its address plays it.
  PacketSealer sealer(key_of(7), 3, 5);
  const Bytes sealed = sealer.seal(Bytes{'r'});
  send_raw("127.0.0.3", nodes_[2].port, 2, sealed);
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  send_raw("127.0.0.3", nodes_[2].port, 2, sealed);  // the same packet again
  ASSERT_TRUE(run_until([&] { return two->peers()[1].dropped.replayed == 1; }));
  // Node 3's packet from node 1's address: authentic, but not where node 3 lives.
  send_raw("127.0.0.1", nodes_[0].port, 2, sealer.seal(Bytes{'w'}));
  ASSERT_TRUE(run_until([&] { return two->peers()[0].dropped.wrong_address == 1; }));
  EXPECT_EQ(received_[2].size(), 1u);
}

// The replay floors a restarted agent loads shut out a peer's earlier runs; a peer's restart
// (a higher epoch, delivered from its own address) is reported so that the agent records it.
TEST_F(UdpTransportTest, EpochFloorsHoldAndAPeersRestartIsReported) {
  TransportOptions options{2, nodes_, 1500, 1400, key_of(7), 1002};
  options.peer_epoch_floors = {{3, 10}};
  std::vector<std::pair<NodeId, std::uint64_t>> reported;
  options.on_peer_epoch = [&](NodeId peer, std::uint64_t epoch) {
    reported.emplace_back(peer, epoch);
  };
  auto opened = UdpTransport::open(io_, options);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto two = std::move(opened).value();
  two->start([this](NodeId from, std::span<const std::uint8_t> bytes) {
    received_[2].push_back({from, Bytes(bytes.begin(), bytes.end())});
  });
  const auto from_three = [&](std::uint64_t epoch, const std::string& address, int port_of) {
    PacketSealer sealer(key_of(7), 3, epoch);
    send_raw(address, nodes_[port_of - 1].port, 2, sealer.seal(Bytes{'e'}));
  };
  from_three(9, "127.0.0.3", 3);  // an earlier run's packet
  ASSERT_TRUE(run_until([&] { return two->peers()[1].dropped.replayed == 1; }));
  from_three(10, "127.0.0.3", 3);  // the run the floor came from
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_TRUE(reported.empty());
  // A restart whose first packet comes from node 1's address: dropped there without touching
  // node 3's window, so the restart is reported with its next packet, from node 3's own address.
  PacketSealer restarted(key_of(7), 3, 11);
  send_raw("127.0.0.1", nodes_[0].port, 2, restarted.seal(Bytes{'e'}));
  ASSERT_TRUE(run_until([&] { return two->peers()[0].dropped.wrong_address == 1; }));
  EXPECT_TRUE(reported.empty());
  send_raw("127.0.0.3", nodes_[2].port, 2, restarted.seal(Bytes{'e'}));
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 2; }));
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0], (std::pair<NodeId, std::uint64_t>{3, 11}));
}

// A captured packet sent first from another node's address is dropped there without spending
// its counter: the genuine copy, from its sender's address, is still delivered, once.
TEST_F(UdpTransportTest, ACopyFromAnotherAddressDoesNotSpendTheGenuinePacket) {
  auto two = open(2, key_of(7));
  PacketSealer sealer(key_of(7), 3, 5);
  const Bytes sealed = sealer.seal(Bytes{'c'});
  send_raw("127.0.0.1", nodes_[0].port, 2, sealed);
  ASSERT_TRUE(run_until([&] { return two->peers()[0].dropped.wrong_address == 1; }));
  send_raw("127.0.0.3", nodes_[2].port, 2, sealed);
  ASSERT_TRUE(run_until([&] { return received_[2].size() == 1; }));
  EXPECT_EQ(received_[2][0].from, 3u);
  EXPECT_EQ(received_[2][0].plaintext, Bytes{'c'});
  send_raw("127.0.0.3", nodes_[2].port, 2, sealed);
  ASSERT_TRUE(run_until([&] { return two->peers()[1].dropped.replayed == 1; }));
  EXPECT_EQ(received_[2].size(), 1u);
  EXPECT_EQ(two->peers()[1].dropped.wrong_address, 0u);
}

// Queued packets wait for flush(), then all arrive, in order, whatever their number (batches
// of kMaxBatchDatagrams fill and go out on their own).
TEST_F(UdpTransportTest, QueuedPacketsGoOutOnFlushInOrder) {
  auto one = open(1, key_of(7));
  auto two = open(2, key_of(7));
  auto three = open(3, key_of(7));
  constexpr std::size_t kPackets = 3 * kMaxBatchDatagrams + 5;
  one->queue(kAllNodes, Bytes{0});
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(received_[2].empty());  // nothing before the flush
  for (std::size_t i = 1; i < kPackets; ++i) {
    one->queue(i % 2 == 0 ? kAllNodes : 3, Bytes{static_cast<std::uint8_t>(i)});
  }
  one->flush();
  ASSERT_TRUE(run_until([&] {
    return received_[3].size() == kPackets && received_[2].size() == (kPackets + 1) / 2;
  }));
  for (std::size_t i = 0; i < kPackets; ++i) {
    EXPECT_EQ(received_[3][i].plaintext, Bytes{static_cast<std::uint8_t>(i)});
  }
  EXPECT_EQ(one->stats().datagrams_sent, kPackets + (kPackets + 1) / 2);
  EXPECT_EQ(one->stats().send_errors, 0u);
}

// Full-size packets queued for one node leave as one send the kernel cuts apart
// (datagram_runs.hpp); the receiver opens each as its own packet, in order.
TEST_F(UdpTransportTest, ARunOfFullPacketsLeavesAsOneSegmentedSend) {
  auto one = open(1, key_of(7));
  auto two = open(2, key_of(7));
  constexpr std::size_t kPackets = 11;
  for (std::size_t i = 0; i < kPackets; ++i) {
    one->queue(2, Bytes(i + 1 < kPackets ? 1400 : 300, static_cast<std::uint8_t>(i)));
  }
  one->flush();
  ASSERT_TRUE(run_until([&] { return received_[2].size() == kPackets; }));
  for (std::size_t i = 0; i < kPackets; ++i) {
    EXPECT_EQ(received_[2][i].plaintext,
              Bytes(i + 1 < kPackets ? 1400 : 300, static_cast<std::uint8_t>(i)));
  }
  EXPECT_EQ(one->stats().segmented_sends, 1u);
  EXPECT_FALSE(one->stats().segmentation_refused);
  EXPECT_EQ(one->stats().datagrams_sent, kPackets);
  EXPECT_EQ(one->stats().send_errors, 0u);
  EXPECT_EQ(two->open_stats().opened, kPackets);
}

// The descriptor of this process's UDP socket bound to `local`, or -1. The transport keeps its
// sockets to itself; the test finds one the way `ss -p` would.
int udp_socket_bound_to(const asio::ip::udp::endpoint& local) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = -1;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    int type = 0;
    socklen_t type_size = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_size) != 0 || type != SOCK_DGRAM) {
      continue;
    }
    sockaddr_in address{};
    socklen_t address_size = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &address_size) != 0 ||
        address.sin_family != AF_INET) {
      continue;
    }
    if (ntohs(address.sin_port) == local.port() &&
        ntohl(address.sin_addr.s_addr) == local.address().to_v4().to_uint()) {
      return fd;
    }
  }
  return -1;
}

// What the default logger logs while this lives, as text.
class CapturedLog {
 public:
  CapturedLog()
      : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)),
        previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("captured", sink_);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  // How many logged lines hold `words`.
  std::size_t lines_with(const std::string& words) const {
    std::istringstream lines(text_.str());
    std::size_t count = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.find(words) != std::string::npos) ++count;
    }
    return count;
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// When the kernel refuses a segmented send (here: a socket told not to checksum, which UDP
// segmentation cannot honour), the run and everything after it go datagram by datagram, and
// nothing is lost. The refusal is logged once, though every run of that batch (one per peer) is
// refused.
TEST_F(UdpTransportTest, ARefusedSegmentedSendFallsBackToOneByOne) {
  auto one = open(1, key_of(7));
  auto two = open(2, key_of(7));
  auto three = open(3, key_of(7));
  const int fd = udp_socket_bound_to(one->local_endpoint());
  ASSERT_GE(fd, 0);
  const int no_check = 1;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &no_check, sizeof no_check), 0);
  CapturedLog log;
  constexpr std::size_t kPackets = 5;
  for (int batch = 0; batch < 2; ++batch) {
    for (const NodeId to : {NodeId{2}, NodeId{3}}) {
      for (std::size_t i = 0; i < kPackets; ++i) {
        one->queue(to, Bytes(1400, static_cast<std::uint8_t>(batch * kPackets + i)));
      }
    }
    one->flush();
  }
  ASSERT_TRUE(run_until(
      [&] { return received_[2].size() == 2 * kPackets && received_[3].size() == 2 * kPackets; }));
  for (const NodeId to : {NodeId{2}, NodeId{3}}) {
    for (std::size_t i = 0; i < 2 * kPackets; ++i) {
      EXPECT_EQ(received_[to][i].plaintext, Bytes(1400, static_cast<std::uint8_t>(i)));
    }
  }
  EXPECT_TRUE(one->stats().segmentation_refused);
  EXPECT_EQ(one->stats().segmented_sends, 0u);
  EXPECT_EQ(one->stats().datagrams_sent, 4 * kPackets);
  EXPECT_EQ(one->stats().send_errors, 0u);
  EXPECT_EQ(log.lines_with("UDP segmentation offload refused"), 1u);
}

// A run of datagrams each longer than any sealed packet of the cluster, sent as one segmented
// send: every piece is counted malformed, none opened, however the run arrives.
TEST_F(UdpTransportTest, ARunOfOversizedDatagramsIsCountedPieceByPiece) {
  auto two = open(2, key_of(7));
  asio::ip::udp::socket raw(io_, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const int segment = 2000;
  ASSERT_EQ(::setsockopt(raw.native_handle(), SOL_UDP, UDP_SEGMENT, &segment, sizeof segment), 0);
  const TransportNode& node = nodes_[1];
  raw.send_to(asio::buffer(Bytes(2 * segment + 10, 0x55)),
              asio::ip::udp::endpoint(asio::ip::make_address(node.address), node.port));
  ASSERT_TRUE(run_until([&] { return two->stats().dropped_from_unconfigured.malformed == 3; }));
  EXPECT_TRUE(received_[2].empty());
  EXPECT_EQ(two->open_stats().opened, 0u);
}

// A datagram longer than any sealed packet of the cluster is cut at the receive buffer: counted
// malformed, never opened.
TEST_F(UdpTransportTest, AnOversizedDatagramIsCountedMalformed) {
  auto two = open(2, key_of(7));
  send_raw("127.0.0.1", nodes_[0].port, 2, Bytes(1500, 0x4b));
  ASSERT_TRUE(run_until([&] { return two->peers()[0].dropped.malformed == 1; }));
  EXPECT_TRUE(received_[2].empty());
  EXPECT_EQ(two->open_stats().malformed, 0u);  // the opener never saw it
}

TEST_F(UdpTransportTest, RefusesAnMtuTooSmallForTheRing) {
  auto transport = UdpTransport::open(io_, {1, nodes_, 1400, 1400, key_of(7), 1});
  ASSERT_FALSE(transport.ok());
  EXPECT_NE(transport.error().message.find("mtu 1400"), std::string::npos)
      << transport.error().message;
  EXPECT_EQ(max_sealed_bytes(1500, false), 1472u);
  EXPECT_EQ(max_sealed_bytes(1500, true), 1452u);
}

// What `keel config check` accepts, the agent's transport opens with the packet size the config
// derives; an MTU it refuses is one on which the transport takes not even the ring's smallest
// packets. Around each family's least MTU, where the two once disagreed (1280 passed the check).
TEST_F(UdpTransportTest, ConfigAndTransportAgreeOnTheMtu) {
  for (const bool ipv6 : {false, true}) {
    const std::string self = ipv6 ? "::1" : "127.0.0.1";
    const std::string peer = ipv6 ? "fd00::2" : "127.0.0.2";
    for (const std::uint32_t mtu : {1280u, 1290u, 1291u, 1310u, 1311u, 1500u, 9000u, 65535u}) {
      const std::uint16_t port = free_udp_port(self);
      auto config = config::parse_config(
          fmt::format("[cluster]\nname = \"t\"\n[[node]]\nid = 1\nname = \"a\"\naddress = "
                      "\"{}\"\nport = {}\n[[node]]\nid = 2\nname = \"b\"\naddress = \"{}\"\n"
                      "[transport]\nmtu = {}\n",
                      self, port, peer, mtu),
          "keel.toml");
      const std::size_t packet_bytes =
          config.ok() ? config.value().ring.max_packet_bytes : ring::kMinPacketBytes;
      auto transport = UdpTransport::open(
          io_,
          {1, {{1, self, port}, {2, peer, config::kDefaultPort}}, mtu, packet_bytes, key_of(7), 1});
      const std::string said = !config.ok()      ? config.error().message
                               : !transport.ok() ? transport.error().message
                                                 : std::string("both accept");
      EXPECT_EQ(transport.ok(), config.ok())
          << (ipv6 ? "IPv6" : "IPv4") << " mtu " << mtu << ": " << said;
    }
  }
}

TEST_F(UdpTransportTest, RefusesAnAddressInUse) {
  auto one = open(1, key_of(7));
  auto again = UdpTransport::open(io_, {1, nodes_, 1500, 1400, key_of(7), 1});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("cannot bind"), std::string::npos);
}

// A full flow-control window arrives as one burst; the agent runs as root, so its socket gets the
// buffer it asks for even past net.core.rmem_max. Asked for twice the sysctl's value, a plain
// SO_RCVBUF would be capped at it: only the forced request passes.
TEST_F(UdpTransportTest, ReceiveBufferIsGrantedPastTheSysctlLimit) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN), as the agent has";
  std::ifstream sysctl("/proc/sys/net/core/rmem_max");
  long rmem_max = 0;
  ASSERT_TRUE(sysctl >> rmem_max);
  ASSERT_LT(rmem_max, 1L << 29) << "too large to double";
  const int wanted = static_cast<int>(2 * rmem_max);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  EXPECT_GE(enlarge_socket_buffer(fd, true, wanted), wanted);
  ::close(fd);

  auto transport = open(1, key_of(7));
  EXPECT_GE(transport->stats().receive_buffer_bytes, 4 << 20);  // the transport's own request
}

TEST_F(UdpTransportTest, SendAfterCloseIsIgnored) {
  auto one = open(1, key_of(7));
  one->close();
  one->send(kAllNodes, Bytes{'x'});
  EXPECT_EQ(one->stats().datagrams_sent, 0u);
}

}  // namespace
}  // namespace keel::io
