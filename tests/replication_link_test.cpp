// ReplicationLink (src/io/replication_link.hpp) over loopback: two ends authenticate and carry
// frames, and dial_now() reconnects at once instead of at the next retry.
#include "io/replication_link.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace keel::io {
namespace {

constexpr NodeId kDialer = 1;    // the lower id dials
constexpr NodeId kListener = 2;  // the higher id listens
// Far longer than the test waits: a connection that comes sooner did not come from a retry.
constexpr std::uint32_t kRetryMs = 60'000;

struct End {
  std::unique_ptr<ReplicationLink> link;
  int connects = 0;
  int disconnects = 0;
  std::vector<volume::PeerMessage> received;
};

ReplicationLinkOptions options_for(NodeId self, std::uint16_t port) {
  ReplicationLinkOptions options;
  options.volume = "data";
  options.volume_bytes = 1 << 20;
  options.self = self;
  options.peer = self == kDialer ? kListener : kDialer;
  options.self_address = "127.0.0.1";
  options.peer_address = "127.0.0.1";
  options.port = port;
  options.key.fill(7);
  options.retry_ms = kRetryMs;
  return options;
}

void open_end(asio::io_context& io, End& end, NodeId self, std::uint16_t port,
              std::uint32_t user_timeout_ms = 5000) {
  ReplicationLinkOptions options = options_for(self, port);
  options.user_timeout_ms = user_timeout_ms;
  auto opened = ReplicationLink::open(
      io, options,
      {[&end] { ++end.connects; },
       [&end](const volume::PeerMessage& message) { end.received.push_back(message); },
       [&end](const std::string&) { ++end.disconnects; }});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  end.link = std::move(opened).value();
}

// Runs the loop until `done` holds or `limit` passes; true if it holds.
bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io,
                                asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

TEST(ReplicationLinkTest, DialNowConnectsWithoutWaitingForTheRetry) {
  asio::io_context io;
  const std::uint16_t port = free_port();
  End dialer;
  open_end(io, dialer, kDialer, port);
  dialer.link->start();  // nobody listens yet: refused, next try in kRetryMs
  ASSERT_FALSE(run_until(
      io, [&] { return dialer.connects > 0; }, std::chrono::milliseconds(200)));

  End listener;
  open_end(io, listener, kListener, port);
  listener.link->start();
  dialer.link->dial_now();
  dialer.link->dial_now();  // a second call while dialing must not open a second connection
  ASSERT_TRUE(run_until(
      io, [&] { return dialer.connects == 1 && listener.connects == 1; }, std::chrono::seconds(5)));

  // The connection carries frames; dial_now() on a connected link changes nothing.
  dialer.link->dial_now();
  dialer.link->send(volume::Barrier{42});
  ASSERT_TRUE(run_until(
      io, [&] { return !listener.received.empty(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(std::holds_alternative<volume::Barrier>(listener.received.front()));
  EXPECT_EQ(std::get<volume::Barrier>(listener.received.front()).epoch, 42u);
  EXPECT_EQ(dialer.connects, 1);
  EXPECT_EQ(listener.connects, 1);
  dialer.link->close();
  listener.link->close();
}

// A payload whose bytes depend on `seed` and their position, so that a misplaced piece shows.
volume::Payload patterned(std::size_t bytes, std::uint8_t seed) {
  auto data = std::make_shared<volume::Bytes>(bytes);
  for (std::size_t i = 0; i < bytes; ++i) {
    (*data)[i] = static_cast<std::byte>((i * 131 + seed + i / 4096) & 0xff);
  }
  return data;
}

// Large payloads leave in big writes and arrive through big reads, split wherever the kernel
// splits them: every byte must arrive, in order, with small frames in between.
TEST(ReplicationLinkTest, LargePayloadsArriveWholeAndInOrder) {
  asio::io_context io;
  const std::uint16_t port = free_port();
  End dialer, listener;
  open_end(io, listener, kListener, port);
  open_end(io, dialer, kDialer, port);
  listener.link->start();
  dialer.link->start();
  ASSERT_TRUE(run_until(
      io, [&] { return dialer.connects == 1 && listener.connects == 1; }, std::chrono::seconds(5)));

  // Offsets within options_for()'s 1 MiB volume; sizes up to the largest resync chunk.
  const std::vector<std::size_t> sizes{1u << 20, 4096, 512u << 10, 1u << 20, 65536 + 4096};
  std::vector<volume::Payload> sent;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    sent.push_back(patterned(sizes[i], static_cast<std::uint8_t>(i)));
    dialer.link->send(volume::ResyncData{0, sent.back()});
    dialer.link->send(volume::Barrier{i});
  }
  ASSERT_TRUE(run_until(
      io, [&] { return listener.received.size() == 2 * sizes.size(); }, std::chrono::seconds(10)))
      << listener.received.size() << " frames arrived";
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto* data = std::get_if<volume::ResyncData>(&listener.received[2 * i]);
    ASSERT_NE(data, nullptr) << "frame " << 2 * i;
    ASSERT_TRUE(data->data);
    EXPECT_TRUE(*data->data == *sent[i]) << "payload " << i << " of " << sizes[i] << " bytes";
    const auto* barrier = std::get_if<volume::Barrier>(&listener.received[2 * i + 1]);
    ASSERT_NE(barrier, nullptr) << "frame " << 2 * i + 1;
    EXPECT_EQ(barrier->epoch, i);
  }
  dialer.link->close();
  listener.link->close();
}

// A stranger's connection: reads what the link says until the link closes it; returns the bytes
// it got, or nullopt if it was not closed within `limit`.
std::optional<std::size_t> bytes_until_closed(asio::io_context& io, asio::ip::tcp::socket& stranger,
                                              std::chrono::milliseconds limit) {
  bool closed = false;
  std::size_t got = 0;
  std::array<char, 256> sink{};
  std::function<void()> read_more = [&] {
    stranger.async_read_some(asio::buffer(sink), [&](const asio::error_code& error, std::size_t n) {
      got += n;
      if (error) {
        closed = true;
        return;
      }
      read_more();
    });
  };
  read_more();
  if (!run_until(
          io, [&] { return closed; }, limit))
    return std::nullopt;
  return got;
}

// A connection that never proves the cluster key must not cut the link that is up: one from the
// peer's address (here a plain socket that sends a few bytes and then nothing) is greeted and
// closed once the handshake time is over; one from any other address is closed unheard.
TEST(ReplicationLinkTest, AStrangersConnectionLeavesTheLinkUp) {
  asio::io_context io;
  const std::uint16_t port = free_port();
  constexpr std::uint32_t kHandshakeMs = 1000;
  End dialer;
  End listener;
  open_end(io, listener, kListener, port, kHandshakeMs);
  open_end(io, dialer, kDialer, port, kHandshakeMs);
  listener.link->start();
  dialer.link->start();
  ASSERT_TRUE(run_until(
      io, [&] { return dialer.connects == 1 && listener.connects == 1; }, std::chrono::seconds(5)));

  const asio::ip::tcp::endpoint link_address(asio::ip::make_address("127.0.0.1"), port);
  asio::ip::tcp::socket from_peer_address(io);
  from_peer_address.connect(link_address);
  asio::write(from_peer_address, asio::buffer(std::string("KEELREPL")));
  const auto greeted = bytes_until_closed(io, from_peer_address, std::chrono::seconds(10));
  ASSERT_TRUE(greeted.has_value()) << "still open after the handshake time";
  EXPECT_GT(*greeted, 0u);  // it was greeted: it waited as a pending connection

  asio::ip::tcp::socket from_elsewhere(io);
  from_elsewhere.open(asio::ip::tcp::v4());
  from_elsewhere.bind({asio::ip::make_address("127.0.0.2"), 0});
  from_elsewhere.connect(link_address);
  const auto unheard = bytes_until_closed(io, from_elsewhere, std::chrono::seconds(10));
  ASSERT_TRUE(unheard.has_value()) << "a connection from another address stayed open";
  EXPECT_EQ(*unheard, 0u);

  // The link never went down and still carries frames.
  dialer.link->send(volume::Barrier{7});
  ASSERT_TRUE(run_until(
      io, [&] { return !listener.received.empty(); }, std::chrono::seconds(5)));
  EXPECT_TRUE(listener.link->connected());
  EXPECT_EQ(listener.disconnects, 0);
  EXPECT_EQ(dialer.disconnects, 0);
  EXPECT_EQ(listener.connects, 1);
  EXPECT_GE(listener.link->stats().auth_failures, 2u);
  dialer.link->close();
  listener.link->close();
}

}  // namespace
}  // namespace keel::io
