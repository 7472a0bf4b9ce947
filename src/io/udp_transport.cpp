#include "io/udp_transport.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/common/assert.hpp"
#include "io/clock.hpp"

namespace keel::io {

namespace {

constexpr TimeUs kLogWindowUs = 1'000'000;
constexpr std::uint32_t kLogsPerWindow = 10;
constexpr int kSocketBufferBytes = 4 << 20;

std::string describe(const asio::ip::udp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

Result<asio::ip::udp::endpoint> resolve(const TransportNode& node) {
  asio::error_code error;
  const auto address = asio::ip::make_address(node.address, error);
  if (error) {
    return Error{"node " + std::to_string(node.id) + ": '" + node.address +
                 "' is not an IP address"};
  }
  return asio::ip::udp::endpoint(address, node.port);
}

std::vector<NodeId> other_ids(const TransportOptions& options) {
  std::vector<NodeId> ids;
  for (const TransportNode& node : options.nodes) {
    if (node.id != options.self) ids.push_back(node.id);
  }
  return ids;
}

}  // namespace

std::uint64_t DropCounts::total() const {
  return malformed + forged + replayed + unknown_sender + wrong_address;
}

std::size_t max_sealed_bytes(std::uint32_t mtu, bool ipv6) {
  const std::size_t headers = (ipv6 ? kIpv6HeaderBytes : kIpv4HeaderBytes) + kUdpHeaderBytes;
  return mtu > headers ? std::min<std::size_t>(mtu - headers, kMaxDatagramBytes) : 0;
}

Result<std::unique_ptr<UdpTransport>> UdpTransport::open(asio::io_context& io,
                                                         TransportOptions options) {
  std::vector<asio::ip::udp::endpoint> endpoints;
  std::optional<std::size_t> self_index;
  for (const TransportNode& node : options.nodes) {
    auto endpoint = resolve(node);
    if (!endpoint.ok()) return endpoint.error();
    if (node.id == options.self) self_index = endpoints.size();
    endpoints.push_back(endpoint.value());
  }
  if (!self_index) return Error{"node " + std::to_string(options.self) + " is not configured"};
  const bool ipv6 = endpoints[*self_index].address().is_v6();
  const std::size_t room = max_sealed_bytes(options.mtu, ipv6);
  if (options.max_plaintext_bytes + kSealOverheadBytes > room) {
    return Error{"transport mtu " + std::to_string(options.mtu) +
                 " leaves room for ring packets of " +
                 std::to_string(room > kSealOverheadBytes ? room - kSealOverheadBytes : 0) +
                 " bytes, but the ring sends up to " + std::to_string(options.max_plaintext_bytes)};
  }
  std::unique_ptr<UdpTransport> transport(new UdpTransport(io, options, endpoints, *self_index));
  if (auto bound = transport->bind(); !bound.ok()) return bound.error();
  return transport;
}

UdpTransport::UdpTransport(asio::io_context& io, const TransportOptions& options,
                           const std::vector<asio::ip::udp::endpoint>& endpoints,
                           std::size_t self_index)
    : self_(options.self),
      local_(endpoints[self_index]),
      max_sealed_bytes_(max_sealed_bytes(options.mtu, local_.address().is_v6())),
      socket_(io),
      sealer_(options.key, options.self, options.epoch),
      opener_(options.key, other_ids(options)),
      buffer_(kMaxDatagramBytes) {
  for (std::size_t i = 0; i < options.nodes.size(); ++i) {
    if (i == self_index) continue;
    PeerStats peer;
    peer.id = options.nodes[i].id;
    peer.endpoint = endpoints[i];
    peers_.push_back(peer);
  }
  std::sort(peers_.begin(), peers_.end(),
            [](const PeerStats& a, const PeerStats& b) { return a.id < b.id; });
}

Result<Ok> UdpTransport::bind() {
  asio::error_code error;
  socket_.open(local_.protocol(), error);
  if (!error) socket_.bind(local_, error);
  if (error) return Error{"cannot bind UDP " + describe(local_) + ": " + error.message()};
  socket_.non_blocking(true, error);
  KEEL_ASSERT(!error);
  // Larger buffers absorb bursts of a full window; the kernel caps them silently.
  socket_.set_option(asio::socket_base::receive_buffer_size(kSocketBufferBytes), error);
  socket_.set_option(asio::socket_base::send_buffer_size(kSocketBufferBytes), error);
  return Ok{};
}

void UdpTransport::start(Receiver receiver) {
  KEEL_ASSERT(!receiver_ && receiver);
  receiver_ = std::move(receiver);
  receive_next();
}

void UdpTransport::wait_on_full_buffer() {
  asio::error_code ignored;
  socket_.non_blocking(false, ignored);  // asio then waits for room in synchronous sends
}

void UdpTransport::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  socket_.close(ignored);
}

void UdpTransport::send(NodeId to, std::span<const std::uint8_t> plaintext) {
  if (closed_) return;
  const Bytes sealed = sealer_.seal(plaintext);
  KEEL_ASSERT(sealed.size() == plaintext.size() + kSealOverheadBytes);
  KEEL_ASSERT(sealed.size() <= max_sealed_bytes_);
  if (to == kAllNodes) {
    for (const PeerStats& peer : peers_) send_datagram(peer.endpoint, sealed);
    return;
  }
  auto it = std::find_if(peers_.begin(), peers_.end(),
                         [to](const PeerStats& peer) { return peer.id == to; });
  KEEL_ASSERT(it != peers_.end());  // the ring only addresses configured nodes
  send_datagram(it->endpoint, sealed);
}

void UdpTransport::send_datagram(const asio::ip::udp::endpoint& to,
                                 std::span<const std::uint8_t> sealed) {
  asio::error_code error;
  socket_.send_to(asio::buffer(sealed.data(), sealed.size()), to, 0, error);
  if (!error) {
    ++stats_.datagrams_sent;
    return;
  }
  ++stats_.send_errors;
  std::uint64_t suppressed = 0;
  if (send_log_.allow(monotonic_now_us(), suppressed)) {
    spdlog::debug("send to {} failed: {}{}", describe(to), error.message(),
                  suppressed ? " (" + std::to_string(suppressed) + " similar suppressed)" : "");
  }
}

void UdpTransport::receive_next() {
  if (closed_) return;
  socket_.async_receive_from(asio::buffer(buffer_), source_,
                             [this](const asio::error_code& error, std::size_t size) {
                               if (error == asio::error::operation_aborted || closed_) return;
                               if (error) {
                                 ++stats_.receive_errors;
                                 log_drop("receive failed: " + error.message());
                               } else {
                                 on_datagram(size);
                               }
                               receive_next();
                             });
}

void UdpTransport::on_datagram(std::size_t size) {
  PeerStats* peer = peer_at(source_);
  const OpenStats before = opener_.stats();
  auto opened = opener_.open(std::span<const std::uint8_t>(buffer_.data(), size));
  if (!opened.ok()) {
    count_drop(peer, before);
    log_drop("dropped a datagram from " + describe(source_) + ": " + opened.error().message);
    return;
  }
  const NodeId sender = opened.value().sender;
  if (peer == nullptr || peer->id != sender) {
    DropCounts& counts = peer ? peer->dropped : stats_.dropped_from_unconfigured;
    ++counts.wrong_address;
    log_drop("dropped a datagram from " + describe(source_) + ": it authenticated as node " +
             std::to_string(sender) + ", which is configured at another address");
    return;
  }
  ++peer->packets_opened;
  peer->last_heard_us = monotonic_now_us();
  receiver_(sender, opened.value().plaintext);
}

void UdpTransport::count_drop(PeerStats* peer, const OpenStats& before) {
  DropCounts& counts = peer ? peer->dropped : stats_.dropped_from_unconfigured;
  const OpenStats& after = opener_.stats();
  counts.malformed += after.malformed - before.malformed;
  counts.forged += after.forged - before.forged;
  counts.replayed += after.replayed - before.replayed;
  counts.unknown_sender += after.unknown_sender - before.unknown_sender;
}

void UdpTransport::log_drop(const std::string& why) {
  std::uint64_t suppressed = 0;
  if (!receive_log_.allow(monotonic_now_us(), suppressed)) return;
  if (suppressed != 0) spdlog::debug("{} similar drops not logged", suppressed);
  spdlog::debug("{}", why);
}

PeerStats* UdpTransport::peer_at(const asio::ip::udp::endpoint& endpoint) {
  for (PeerStats& peer : peers_) {
    if (peer.endpoint == endpoint) return &peer;
  }
  return nullptr;
}

bool UdpTransport::LogLimiter::allow(TimeUs now, std::uint64_t& suppressed) {
  suppressed = 0;
  if (now - window_start_ >= kLogWindowUs) {
    window_start_ = now;
    logged_ = 0;
    suppressed = suppressed_;
    suppressed_ = 0;
  }
  if (logged_ < kLogsPerWindow) {
    ++logged_;
    return true;
  }
  ++suppressed_;
  return false;
}

}  // namespace keel::io
