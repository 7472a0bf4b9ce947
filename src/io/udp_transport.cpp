#include "io/udp_transport.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"
#include "io/clock.hpp"

namespace keel::io {

namespace {

constexpr TimeUs kLogWindowUs = 1'000'000;
constexpr std::uint32_t kLogsPerWindow = 10;
constexpr int kSocketBufferBytes = 4 << 20;
// A packet for every node fits in one batch.
static_assert(ring::kMaxNodes - 1 <= kMaxBatchDatagrams);

Result<asio::ip::udp::endpoint> resolve(const TransportNode& node) {
  asio::error_code error;
  const auto address = asio::ip::make_address(node.address, error);
  if (error) {
    return Error{"node " + std::to_string(node.id) + ": '" + node.address +
                 "' is not an IP address"};
  }
  return asio::ip::udp::endpoint(address, node.port);
}

// Where group datagrams go: the group's address at this node's port (every node's port is the
// cluster port in these modes). Link-local IPv6 groups are scoped to the node's interface.
Result<asio::ip::udp::endpoint> resolve_group(const TransportOptions& options,
                                              const asio::ip::udp::endpoint& local) {
  asio::error_code error;
  auto address = asio::ip::make_address(options.group, error);
  if (error) return Error{"transport group '" + options.group + "' is not an IP address"};
  const bool multicast = options.mode == TransportMode::multicast;
  if (address.is_v6() != local.address().is_v6() || address.is_multicast() != multicast ||
      (!multicast && address.is_v6())) {
    return Error{"transport group '" + options.group + "' is not " +
                 (multicast ? "a multicast group" : "an IPv4 broadcast address") +
                 " of this node's address family"};
  }
  return asio::ip::udp::endpoint(address, local.port());
}

// The index of the network interface that holds the IPv6 `address`, or 0.
unsigned interface_index_of(const asio::ip::address& address) {
  KEEL_ASSERT(address.is_v6());
  const auto bytes = address.to_v6().to_bytes();
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return 0;
  unsigned index = 0;
  for (const ifaddrs* entry = list; entry != nullptr && index == 0; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET6) continue;
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr);
    if (std::memcmp(&in6->sin6_addr, bytes.data(), bytes.size()) == 0) {
      index = ::if_nametoindex(entry->ifa_name);
    }
  }
  ::freeifaddrs(list);
  return index;
}

std::vector<NodeId> other_ids(const TransportOptions& options) {
  std::vector<NodeId> ids;
  for (const TransportNode& node : options.nodes) {
    if (node.id != options.self) ids.push_back(node.id);
  }
  return ids;
}

}  // namespace

std::string endpoint_text(const asio::ip::udp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

std::uint64_t DropCounts::total() const {
  return malformed + forged + replayed + unknown_sender + wrong_address;
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
  // parse_config() sizes ring packets by the same function, so a config it accepted passes.
  const std::size_t fits = max_ring_packet_bytes(options.mtu, ipv6);
  if (options.max_plaintext_bytes > fits) {
    return Error{"transport mtu " + std::to_string(options.mtu) +
                 " leaves room for ring packets of " + std::to_string(fits) +
                 " bytes, but the ring sends up to " + std::to_string(options.max_plaintext_bytes)};
  }
  std::optional<asio::ip::udp::endpoint> group;
  if (options.mode != TransportMode::unicast) {
    auto resolved = resolve_group(options, endpoints[*self_index]);
    if (!resolved.ok()) return resolved.error();
    group = resolved.value();
  }
  std::unique_ptr<UdpTransport> transport(
      new UdpTransport(io, options, endpoints, *self_index, group));
  if (auto bound = transport->bind(); !bound.ok()) return bound.error();
  return transport;
}

UdpTransport::UdpTransport(asio::io_context& io, const TransportOptions& options,
                           const std::vector<asio::ip::udp::endpoint>& endpoints,
                           std::size_t self_index, std::optional<asio::ip::udp::endpoint> group)
    : self_(options.self),
      local_(endpoints[self_index]),
      max_sealed_bytes_(max_sealed_bytes(options.mtu, local_.address().is_v6())),
      mode_(options.mode),
      multicast_ttl_(options.multicast_ttl),
      unicast_(io),
      group_(group),
      sealer_(options.key, options.self, options.epoch),
      opener_(options.key, other_ids(options)),
      on_peer_epoch_(options.on_peer_epoch) {
  KEEL_ASSERT(group_.has_value() == (mode_ != TransportMode::unicast));
  for (const auto& [peer, epoch] : options.peer_epoch_floors) opener_.set_epoch_floor(peer, epoch);
  if (group_) group_inlet_ = std::make_unique<Inlet>(io);
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

// Tried with the FORCE option first: as root the agent's window fits whatever the sysctl says.
int enlarge_socket_buffer(int fd, bool receive, int bytes) {
  const int force = receive ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
  const int plain = receive ? SO_RCVBUF : SO_SNDBUF;
  if (::setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof bytes) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, plain, &bytes, sizeof bytes);
  }
  int granted = 0;
  socklen_t length = sizeof granted;
  if (::getsockopt(fd, SOL_SOCKET, plain, &granted, &length) != 0) return 0;
  return granted / 2;  // the kernel doubles the size asked for, to count its own overhead
}

Result<Ok> UdpTransport::bind() {
  asio::ip::udp::socket& socket = unicast_.socket;
  asio::error_code error;
  socket.open(local_.protocol(), error);
  if (!error) socket.bind(local_, error);
  if (error) return Error{"cannot bind UDP " + endpoint_text(local_) + ": " + error.message()};
  socket.non_blocking(true, error);
  KEEL_ASSERT(!error);
  // Larger buffers absorb bursts of a full window (150 packets at the defaults). Without
  // CAP_NET_ADMIN the kernel caps them at net.core.rmem_max, which is 208 KiB on many systems.
  stats_.receive_buffer_bytes =
      enlarge_socket_buffer(socket.native_handle(), true, kSocketBufferBytes);
  (void)enlarge_socket_buffer(socket.native_handle(), false, kSocketBufferBytes);
  if (stats_.receive_buffer_bytes < kSocketBufferBytes) {
    spdlog::warn(
        "UDP receive buffer is {} KiB, not the {} KiB asked for (net.core.rmem_max caps it): a "
        "burst of a full flow-control window may overflow it and be retransmitted; raise "
        "net.core.rmem_max or run the agent with CAP_NET_ADMIN",
        stats_.receive_buffer_bytes / 1024, kSocketBufferBytes / 1024);
  }
  accept_runs(unicast_);
  if (mode_ == TransportMode::unicast) return Ok{};
  if (auto set = set_group_send_options(); !set.ok()) return set;
  return bind_group();
}

// Group datagrams are sent from the unicast socket, so that they carry this node's configured
// address as their source, which is what receivers check.
Result<Ok> UdpTransport::set_group_send_options() {
  asio::ip::udp::socket& socket = unicast_.socket;
  asio::error_code error;
  if (mode_ == TransportMode::broadcast) {
    socket.set_option(asio::socket_base::broadcast(true), error);  // else sendto() gets EACCES
  } else if (local_.address().is_v4()) {
    socket.set_option(asio::ip::multicast::outbound_interface(local_.address().to_v4()), error);
  } else {
    const unsigned index = interface_index_of(local_.address());
    if (index == 0) return Error{"no network interface holds " + local_.address().to_string()};
    socket.set_option(asio::ip::multicast::outbound_interface(index), error);
  }
  if (!error && mode_ == TransportMode::multicast) {
    socket.set_option(asio::ip::multicast::hops(multicast_ttl_), error);
    // Our own packets need not come back; the receive path drops them anyway if they do.
    if (!error) socket.set_option(asio::ip::multicast::enable_loopback(false), error);
  }
  if (error) {
    return Error{"cannot set up UDP " + endpoint_text(local_) + " to send to " +
                 endpoint_text(*group_) + ": " + error.message()};
  }
  return Ok{};
}

// Why a second socket: on Linux a socket bound to a unicast address (198.18.0.11) receives no
// datagram sent to the broadcast address (198.18.0.255) or to a multicast group, so group datagrams
// need a socket bound to the group's address or to the wildcard address. The wildcard would serve
// both, but then the kernel picks the source address of what we send by its routing table, and a
// host with floating IPs on the same subnet could send from one of those, which receivers refuse
// (wrong_address). So the unicast socket stays as it is, and a receive-only socket is bound to
// group:port: it gets only the group's datagrams, and nothing sent to other local addresses.
Result<Ok> UdpTransport::bind_group() {
  asio::ip::udp::endpoint bound_to = *group_;
  asio::ip::address_v6 group_v6;
  unsigned index = 0;
  if (mode_ == TransportMode::multicast && bound_to.address().is_v6()) {
    index = interface_index_of(local_.address());
    if (index == 0) return Error{"no network interface holds " + local_.address().to_string()};
    group_v6 = bound_to.address().to_v6();
    if (group_v6.is_multicast_link_local() || group_v6.is_multicast_node_local()) {
      group_v6.scope_id(index);  // binding to a link-scoped group needs its interface
      bound_to.address(group_v6);
      group_->address(group_v6);
    }
  }
  asio::ip::udp::socket& socket = group_inlet_->socket;
  asio::error_code error;
  socket.open(bound_to.protocol(), error);
  if (!error) socket.bind(bound_to, error);
  if (error) return Error{"cannot bind UDP " + endpoint_text(bound_to) + ": " + error.message()};
  (void)enlarge_socket_buffer(socket.native_handle(), true, kSocketBufferBytes);
  accept_runs(*group_inlet_);
  if (mode_ == TransportMode::multicast) {
    // IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP on the interface that holds this node's address.
    if (bound_to.address().is_v4()) {
      socket.set_option(
          asio::ip::multicast::join_group(bound_to.address().to_v4(), local_.address().to_v4()),
          error);
    } else {
      socket.set_option(asio::ip::multicast::join_group(group_v6, index), error);
    }
    if (error) {
      return Error{"cannot join multicast group " + bound_to.address().to_string() + " on " +
                   local_.address().to_string() + ": " + error.message()};
    }
  }
  return Ok{};
}

// A run a peer sent as one segmented send (datagram_runs.hpp) then reaches this socket whole,
// and drain() cuts it apart; the kernel no longer does it datagram by datagram. A kernel without
// UDP_GRO cuts runs before the socket as before.
void UdpTransport::accept_runs(Inlet& inlet) {
  const int on = 1;
  inlet.takes_runs =
      ::setsockopt(inlet.socket.native_handle(), SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
}

void UdpTransport::start(Receiver receiver) {
  KEEL_ASSERT(!receiver_ && receiver);
  receiver_ = std::move(receiver);
  receive_next(unicast_);
  if (group_inlet_) receive_next(*group_inlet_);
}

void UdpTransport::wait_on_full_buffer() { block_on_full_ = true; }

void UdpTransport::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  unicast_.socket.close(ignored);
  if (group_inlet_) group_inlet_->socket.close(ignored);
}

void UdpTransport::receive_next(Inlet& inlet) {
  if (closed_) return;
  inlet.socket.async_wait(asio::socket_base::wait_read,
                          [this, &inlet](const asio::error_code& error) {
                            if (error == asio::error::operation_aborted || closed_) return;
                            if (error) {
                              ++stats_.receive_errors;
                              log_drop("receive failed: " + error.message());
                            } else {
                              drain(inlet);
                            }
                            receive_next(inlet);
                          });
}

// Takes what the socket holds, a batch per call, until it is empty (or after kMaxDrainRounds
// batches, so that timers and the control socket get their turn).
void UdpTransport::drain(Inlet& inlet) {
  constexpr int kMaxDrainRounds = 8;
  // A socket that takes whole runs needs room for the largest (a full IP packet) in every slot,
  // so it takes fewer per call.
  const std::size_t slots = inlet.takes_runs ? kMaxRunsPerReceive : kMaxBatchDatagrams;
  if (!inlet.buffers) {
    inlet.buffer_bytes = inlet.takes_runs ? kMaxDatagramBytes + 1 : max_sealed_bytes_ + 1;
    inlet.buffers.reset(new std::uint8_t[inlet.buffer_bytes * slots]);
  }
  std::array<mmsghdr, kMaxBatchDatagrams> messages{};
  std::array<iovec, kMaxBatchDatagrams> vectors{};
  std::array<sockaddr_storage, kMaxBatchDatagrams> sources{};
  union RunControl {
    char bytes[CMSG_SPACE(sizeof(int))];
    cmsghdr align;
  };
  std::array<RunControl, kMaxBatchDatagrams> controls{};
  for (int round = 0; round < kMaxDrainRounds && !closed_; ++round) {
    for (std::size_t i = 0; i < slots; ++i) {
      vectors[i] = iovec{inlet.buffers.get() + i * inlet.buffer_bytes, inlet.buffer_bytes};
      messages[i].msg_hdr = msghdr{};
      messages[i].msg_hdr.msg_iov = &vectors[i];
      messages[i].msg_hdr.msg_iovlen = 1;
      messages[i].msg_hdr.msg_name = &sources[i];
      messages[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      if (inlet.takes_runs) {
        messages[i].msg_hdr.msg_control = controls[i].bytes;
        messages[i].msg_hdr.msg_controllen = sizeof controls[i].bytes;
      }
    }
    const int got = ::recvmmsg(inlet.socket.native_handle(), messages.data(),
                               static_cast<unsigned>(slots), MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ++stats_.receive_errors;
        log_drop(std::string("receive failed: ") + std::strerror(errno));
      }
      return;
    }
    for (std::size_t i = 0; i < static_cast<std::size_t>(got) && !closed_; ++i) {
      const msghdr& header = messages[i].msg_hdr;
      asio::ip::udp::endpoint source;
      KEEL_ASSERT(header.msg_namelen <= source.capacity());
      std::memcpy(source.data(), &sources[i], header.msg_namelen);
      source.resize(header.msg_namelen);
      const std::size_t length = messages[i].msg_len;
      if ((header.msg_flags & MSG_TRUNC) != 0) {
        on_oversized(source, length);
        continue;
      }
      const std::span<const std::uint8_t> bytes(
          static_cast<const std::uint8_t*>(vectors[i].iov_base), length);
      // A run: datagrams of `segment` bytes back to back, the last one possibly shorter.
      const std::size_t segment = run_segment_bytes(header);
      if (segment == 0 || segment >= length) {
        on_received(source, bytes);
        continue;
      }
      for (std::size_t at = 0; at < length && !closed_; at += segment) {
        on_received(source, bytes.subspan(at, std::min(segment, length - at)));
      }
    }
    if (static_cast<std::size_t>(got) < slots) return;
  }
}

void UdpTransport::on_received(const asio::ip::udp::endpoint& source,
                               std::span<const std::uint8_t> bytes) {
  if (bytes.size() > max_sealed_bytes_) {
    on_oversized(source, bytes.size());
  } else {
    on_datagram(source, bytes);
  }
}

// The segment length of a run received whole (the UDP_GRO control message), or 0.
std::size_t UdpTransport::run_segment_bytes(const msghdr& header) {
  for (const cmsghdr* control = CMSG_FIRSTHDR(&header); control != nullptr;
       control = CMSG_NXTHDR(const_cast<msghdr*>(&header), const_cast<cmsghdr*>(control))) {
    if (control->cmsg_level != SOL_UDP || control->cmsg_type != UDP_GRO ||
        control->cmsg_len < CMSG_LEN(sizeof(int))) {
      continue;
    }
    int segment = 0;
    std::memcpy(&segment, CMSG_DATA(control), sizeof segment);
    return segment > 0 ? static_cast<std::size_t>(segment) : 0;
  }
  return 0;
}

void UdpTransport::on_oversized(const asio::ip::udp::endpoint& source, std::size_t size) {
  PeerStats* peer = peer_at(source);
  DropCounts& counts = peer ? peer->dropped : stats_.dropped_from_unconfigured;
  ++counts.malformed;
  log_drop("dropped a datagram from " + endpoint_text(source) +
           ": longer than any packet of this " + "cluster (" + std::to_string(size) +
           " bytes or more)");
}

void UdpTransport::on_datagram(const asio::ip::udp::endpoint& source,
                               std::span<const std::uint8_t> bytes) {
  if (source == local_) {
    // Our own group datagram: a broadcast always comes back to its sender. Not opened, since the
    // opener knows only the other nodes and would count it as a stranger's.
    ++stats_.own_datagrams_ignored;
    return;
  }
  PeerStats* peer = peer_at(source);
  const OpenStats before = opener_.stats();
  auto opened = opener_.open(bytes, peer ? peer->id : kNoNode);
  if (!opened.ok()) {
    count_drop(peer, before);
    log_drop("dropped a datagram from " + endpoint_text(source) + ": " + opened.error().message);
    return;
  }
  const NodeId sender = opened.value().sender;
  KEEL_ASSERT(peer != nullptr && peer->id == sender);
  ++peer->packets_opened;
  peer->last_heard_us = monotonic_now_us();
  if (opened.value().new_epoch && on_peer_epoch_) on_peer_epoch_(sender, opened.value().epoch);
  receiver_(sender, opened.value().plaintext);
}

void UdpTransport::count_drop(PeerStats* peer, const OpenStats& before) {
  DropCounts& counts = peer ? peer->dropped : stats_.dropped_from_unconfigured;
  const OpenStats& after = opener_.stats();
  counts.malformed += after.malformed - before.malformed;
  counts.forged += after.forged - before.forged;
  counts.replayed += after.replayed - before.replayed;
  counts.unknown_sender += after.unknown_sender - before.unknown_sender;
  counts.wrong_address += after.wrong_address - before.wrong_address;
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
