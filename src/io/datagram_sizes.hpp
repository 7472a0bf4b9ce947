// How large a ring packet may be on a link of a given MTU: what the IP and UDP headers and the
// seal (sealed_packet.hpp) leave of it. UdpTransport::open() refuses a ring packet size that does
// not fit, and parse_config() sizes ring packets, and checks the MTU and a packet size the file
// sets, by these same numbers, so that a config `keel config check` accepts is one the agent's
// transport accepts too. Header only: the config parser is built without the transport (fuzz/).
//
// Thread-safety: constants and pure functions.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "io/sealed_packet.hpp"

namespace keel::io {

constexpr std::size_t kUdpHeaderBytes = 8;
constexpr std::size_t kIpv4HeaderBytes = 20;
constexpr std::size_t kIpv6HeaderBytes = 40;
constexpr std::size_t kMaxDatagramBytes = 65535;

constexpr std::size_t ip_header_bytes(bool ipv6) {
  return ipv6 ? kIpv6HeaderBytes : kIpv4HeaderBytes;
}

// Bytes left for a sealed datagram on a link of `mtu` bytes (IP and UDP headers removed).
constexpr std::size_t max_sealed_bytes(std::uint32_t mtu, bool ipv6) {
  const std::size_t headers = ip_header_bytes(ipv6) + kUdpHeaderBytes;
  return mtu > headers ? std::min<std::size_t>(mtu - headers, kMaxDatagramBytes) : 0;
}

// The largest ring packet that, sealed, fits a datagram on a link of `mtu` bytes; 0 if none does.
constexpr std::size_t max_ring_packet_bytes(std::uint32_t mtu, bool ipv6) {
  const std::size_t room = max_sealed_bytes(mtu, ipv6);
  return room > kSealOverheadBytes ? room - kSealOverheadBytes : 0;
}

// The smallest MTU on which a ring packet of `packet_bytes` fits (the inverse of the above).
constexpr std::uint32_t min_mtu_for(std::size_t packet_bytes, bool ipv6) {
  return static_cast<std::uint32_t>(packet_bytes + kSealOverheadBytes + kUdpHeaderBytes +
                                    ip_header_bytes(ipv6));
}

static_assert(max_ring_packet_bytes(min_mtu_for(1200, false), false) == 1200);
static_assert(max_ring_packet_bytes(min_mtu_for(1200, true) - 1, true) == 1199);

}  // namespace keel::io
