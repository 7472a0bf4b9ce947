#include "io/address_announcer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/datagram_sizes.hpp"  // kIpv6HeaderBytes
#include "io/errno_text.hpp"

namespace keel::io {

namespace {

constexpr std::size_t kArpBytes = 28;
constexpr std::size_t kAdvertisementBytes = 24;  // ICMPv6 header, flags, target
constexpr std::size_t kLinkLayerOptionBytes = 8;
constexpr std::uint8_t kIcmpv6Protocol = 58;
constexpr std::uint8_t kNeighbourAdvertisement = 136;
constexpr std::uint8_t kOverrideFlag = 0x20;  // R = 0x80, S = 0x40, O = 0x20
constexpr std::uint8_t kTargetLinkLayerOption = 2;
constexpr std::uint8_t kNeighbourDiscoveryHopLimit = 255;  // receivers drop anything else

const MacAddress kBroadcastMac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

void put16(std::vector<std::uint8_t>& out, std::uint16_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value & 0xff));
}

template <typename Bytes>
void put_bytes(std::vector<std::uint8_t>& out, const Bytes& bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// The Internet checksum over the IPv6 pseudo-header and the ICMPv6 message (RFC 4443 2.3).
std::uint16_t icmpv6_checksum(const asio::ip::address_v6& source,
                              const asio::ip::address_v6& destination,
                              std::span<const std::uint8_t> message) {
  std::uint32_t sum = 0;
  auto add_bytes = [&sum](std::span<const std::uint8_t> bytes) {
    for (std::size_t i = 0; i < bytes.size(); i += 2) {
      const std::uint32_t high = bytes[i];
      const std::uint32_t low = i + 1 < bytes.size() ? bytes[i + 1] : 0;
      sum += (high << 8) | low;
    }
  };
  const auto source_bytes = source.to_bytes();
  const auto destination_bytes = destination.to_bytes();
  add_bytes(source_bytes);
  add_bytes(destination_bytes);
  sum += static_cast<std::uint32_t>(message.size());
  sum += kIcmpv6Protocol;
  add_bytes(message);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

// 33:33 and the low 32 bits of an IPv6 multicast address (RFC 2464 7).
MacAddress multicast_mac(const asio::ip::address_v6& group) {
  const auto bytes = group.to_bytes();
  return MacAddress{{0x33, 0x33, bytes[12], bytes[13], bytes[14], bytes[15]}};
}

// ff02::1:ffXX:XXXX for the low 24 bits of `address` (RFC 4291 2.7.1).
asio::ip::address_v6 solicited_node(const asio::ip::address_v6& address) {
  const auto bytes = address.to_bytes();
  asio::ip::address_v6::bytes_type group{};
  group[0] = 0xff;
  group[1] = 0x02;
  group[11] = 0x01;
  group[12] = 0xff;
  group[13] = bytes[13];
  group[14] = bytes[14];
  group[15] = bytes[15];
  return asio::ip::address_v6(group);
}

Result<ifreq> interface_request(int socket, const std::string& name, unsigned long request) {
  ifreq query{};
  if (name.empty() || name.size() >= sizeof query.ifr_name) {
    return Error{"'" + name + "' is not an interface name"};
  }
  std::memcpy(query.ifr_name, name.data(), name.size());
  if (::ioctl(socket, request, &query) != 0) {
    const int error = errno;
    return Error{"interface '" + name +
                 "': " + (error == ENODEV ? std::string("no such interface") : errno_text(error))};
  }
  return query;
}

}  // namespace

std::string to_string(const MacAddress& mac) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (std::size_t i = 0; i < mac.bytes.size(); ++i) {
    if (i > 0) text += ':';
    text += kHex[mac.bytes[i] >> 4];
    text += kHex[mac.bytes[i] & 0xf];
  }
  return text;
}

std::vector<std::uint8_t> arp_packet(std::uint16_t operation, const MacAddress& sender_mac,
                                     const asio::ip::address_v4& sender_ip,
                                     const MacAddress& target_mac,
                                     const asio::ip::address_v4& target_ip) {
  std::vector<std::uint8_t> packet;
  packet.reserve(kArpBytes);
  put16(packet, ARPHRD_ETHER);
  put16(packet, ETH_P_IP);
  packet.push_back(6);  // hardware address length
  packet.push_back(4);  // protocol address length
  put16(packet, operation);
  put_bytes(packet, sender_mac.bytes);
  put_bytes(packet, sender_ip.to_bytes());
  put_bytes(packet, target_mac.bytes);
  put_bytes(packet, target_ip.to_bytes());
  KEEL_ASSERT(packet.size() == kArpBytes);
  return packet;
}

std::vector<std::uint8_t> neighbour_advertisement(const MacAddress& source_mac,
                                                  const asio::ip::address_v6& target,
                                                  const asio::ip::address_v6& destination) {
  std::vector<std::uint8_t> message;
  message.reserve(kAdvertisementBytes + kLinkLayerOptionBytes);
  message.push_back(kNeighbourAdvertisement);
  message.push_back(0);  // code
  put16(message, 0);     // checksum, filled in below
  message.push_back(kOverrideFlag);
  message.insert(message.end(), 3, 0);  // reserved
  put_bytes(message, target.to_bytes());
  message.push_back(kTargetLinkLayerOption);
  message.push_back(1);  // option length in units of 8 bytes
  put_bytes(message, source_mac.bytes);
  KEEL_ASSERT(message.size() == kAdvertisementBytes + kLinkLayerOptionBytes);
  const std::uint16_t checksum = icmpv6_checksum(target, destination, message);
  message[2] = static_cast<std::uint8_t>(checksum >> 8);
  message[3] = static_cast<std::uint8_t>(checksum & 0xff);

  std::vector<std::uint8_t> packet;
  packet.reserve(kIpv6HeaderBytes + message.size());
  packet.push_back(0x60);  // version 6, traffic class and flow label 0
  packet.insert(packet.end(), 3, 0);
  put16(packet, static_cast<std::uint16_t>(message.size()));
  packet.push_back(kIcmpv6Protocol);
  packet.push_back(kNeighbourDiscoveryHopLimit);
  put_bytes(packet, target.to_bytes());
  put_bytes(packet, destination.to_bytes());
  put_bytes(packet, message);
  return packet;
}

Result<std::unique_ptr<AddressAnnouncer>> AddressAnnouncer::open(const std::string& interface) {
  // Protocol 0: the socket only sends; it receives nothing.
  const int socket = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (socket < 0) {
    const int error = errno;
    return Error{"cannot open a packet socket" +
                 std::string(error == EPERM ? " (needs CAP_NET_RAW)" : "") + ": " +
                 errno_text(error)};
  }
  auto index = interface_request(socket, interface, SIOCGIFINDEX);
  if (!index) {
    ::close(socket);
    return index.error();
  }
  std::unique_ptr<AddressAnnouncer> self(
      new AddressAnnouncer(socket, interface, index.value().ifr_ifindex));
  auto mac = self->hardware_address();
  if (!mac) return mac.error();
  sockaddr_ll local{};
  local.sll_family = AF_PACKET;
  local.sll_ifindex = self->interface_index_;
  if (::bind(socket, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    return Error{"cannot bind a packet socket to '" + interface + "': " + errno_text(errno)};
  }
  return self;
}

AddressAnnouncer::AddressAnnouncer(int socket, std::string interface, int interface_index)
    : socket_(socket), interface_(std::move(interface)), interface_index_(interface_index) {}

AddressAnnouncer::~AddressAnnouncer() { ::close(socket_); }

Result<MacAddress> AddressAnnouncer::hardware_address() const {
  auto query = interface_request(socket_, interface_, SIOCGIFHWADDR);
  if (!query) return query.error();
  if (query.value().ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    return Error{"interface '" + interface_ + "' is not Ethernet: cannot announce addresses on it"};
  }
  MacAddress mac;
  std::memcpy(mac.bytes.data(), query.value().ifr_hwaddr.sa_data, mac.bytes.size());
  return mac;
}

// The interface may have been deleted and made again under the same name since open() (a
// veth or VLAN recreated by an operator or a network manager): it then has a new index, and a
// frame sent to the old one fails with ENXIO. So the name is resolved again before each
// announcement (one ioctl, as for the MAC address) and the socket rebound when it moved.
Result<Ok> AddressAnnouncer::follow_interface() {
  auto index = interface_request(socket_, interface_, SIOCGIFINDEX);
  if (!index) return index.error();
  const int now = index.value().ifr_ifindex;
  if (now == interface_index_) return Ok{};
  sockaddr_ll local{};
  local.sll_family = AF_PACKET;
  local.sll_ifindex = now;
  if (::bind(socket_, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    return Error{"cannot bind a packet socket to '" + interface_ + "': " + errno_text(errno)};
  }
  interface_index_ = now;
  return Ok{};
}

Result<Ok> AddressAnnouncer::send_frame(std::uint16_t ethertype, const MacAddress& destination,
                                        std::span<const std::uint8_t> payload) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ethertype);
  to.sll_ifindex = interface_index_;
  to.sll_halen = static_cast<unsigned char>(destination.bytes.size());
  std::memcpy(to.sll_addr, destination.bytes.data(), destination.bytes.size());
  for (;;) {
    const ssize_t sent = ::sendto(socket_, payload.data(), payload.size(), 0,
                                  reinterpret_cast<const sockaddr*>(&to), sizeof to);
    if (sent == static_cast<ssize_t>(payload.size())) return Ok{};
    if (sent < 0 && errno == EINTR) continue;
    const int error = sent < 0 ? errno : EMSGSIZE;
    return Error{"cannot send on '" + interface_ + "': " +
                 (error == ENETDOWN ? std::string("the interface is down") : errno_text(error))};
  }
}

Result<Ok> AddressAnnouncer::announce(const asio::ip::address& address) {
  if (auto followed = follow_interface(); !followed) return followed.error();
  auto mac = hardware_address();
  if (!mac) return mac.error();
  if (address.is_v4()) {
    const auto ip = address.to_v4();
    return send_frame(ETH_P_ARP, kBroadcastMac, arp_packet(ARPOP_REQUEST, mac.value(), ip, {}, ip));
  }
  const auto all_nodes = asio::ip::make_address_v6("ff02::1");
  return send_frame(ETH_P_IPV6, multicast_mac(all_nodes),
                    neighbour_advertisement(mac.value(), address.to_v6(), all_nodes));
}

Result<Ok> AddressAnnouncer::announce_to(const asio::ip::address& address,
                                         const asio::ip::address& peer,
                                         std::optional<MacAddress> peer_mac) {
  if (address.is_v4() != peer.is_v4()) {
    return Error{"cannot announce " + address.to_string() + " to " + peer.to_string() +
                 ": different address families"};
  }
  if (auto followed = follow_interface(); !followed) return followed.error();
  auto mac = hardware_address();
  if (!mac) return mac.error();
  if (address.is_v4()) {
    if (peer_mac) {
      return send_frame(
          ETH_P_ARP, *peer_mac,
          arp_packet(ARPOP_REPLY, mac.value(), address.to_v4(), *peer_mac, peer.to_v4()));
    }
    return send_frame(ETH_P_ARP, kBroadcastMac,
                      arp_packet(ARPOP_REQUEST, mac.value(), address.to_v4(), {}, peer.to_v4()));
  }
  const auto destination = peer_mac ? peer.to_v6() : solicited_node(peer.to_v6());
  return send_frame(ETH_P_IPV6, peer_mac ? *peer_mac : multicast_mac(destination),
                    neighbour_advertisement(mac.value(), address.to_v6(), destination));
}

}  // namespace keel::io
