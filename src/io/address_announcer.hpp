// AddressAnnouncer: tells the link that a floating IP now lives at this host's MAC address, so
// that neighbours and routers send its traffic here at once instead of after their neighbour
// cache entry for the old holder expires.
//
// - IPv4: a gratuitous ARP, i.e. a broadcast ARP request whose sender and target IP are both the
//   address (RFC 5227's "ARP announcement").
// - IPv6: an unsolicited neighbour advertisement (RFC 4861 7.2.6) to all nodes (ff02::1), with
//   the override flag and the target link-layer address option, hop limit 255.
//
// Each call sends one frame; the caller repeats them as configured (e.g. from an Asio timer),
// because a frame can be lost and some neighbours only update an entry they are using.
//
// Directed announcements go to one configured router or host as well, for those that ignore
// broadcasts or are slow to act on them (see announce_to()).
//
// Frames are built here in full (ARP payload; IPv6 header, ICMPv6 and its checksum) and sent on
// an AF_PACKET datagram socket bound to the interface, so an announcement needs no route and does
// not depend on the address being usable yet. The socket never blocks: a full queue is an error.
// Sending needs CAP_NET_RAW.
//
// The interface is named, not numbered: each announcement looks its index up again, so an
// interface deleted and made again under the same name is followed.
//
// The socket lives in the network namespace of the thread that called open().
// Thread-safety: none; one thread at a time.
#pragma once

#include <array>
#include <asio/ip/address.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/common/result.hpp"

namespace keel::io {

struct MacAddress {
  std::array<std::uint8_t, 6> bytes{};

  bool operator==(const MacAddress&) const = default;
};
std::string to_string(const MacAddress& mac);

class AddressAnnouncer {
 public:
  // Opens a packet socket bound to Ethernet interface `interface`.
  static Result<std::unique_ptr<AddressAnnouncer>> open(const std::string& interface);
  ~AddressAnnouncer();
  AddressAnnouncer(const AddressAnnouncer&) = delete;
  AddressAnnouncer& operator=(const AddressAnnouncer&) = delete;

  // One unsolicited announcement of `address` (gratuitous ARP or NA to ff02::1).
  Result<Ok> announce(const asio::ip::address& address);

  // One announcement of `address` directed at `peer` (same family as `address`).
  // IPv4: with the peer's MAC, a unicast ARP reply to it; without, a broadcast ARP request whose
  // target is the peer's IP, which the peer answers and, being the target, learns our mapping
  // from even when it ignores gratuitous ARP. IPv6: an NA to the peer's address (unicast with its
  // MAC; to its solicited-node multicast group without).
  Result<Ok> announce_to(const asio::ip::address& address, const asio::ip::address& peer,
                         std::optional<MacAddress> peer_mac = std::nullopt);

  int interface_index() const { return interface_index_; }  // as of the last announcement
  const std::string& interface_name() const { return interface_; }
  // The interface's current MAC address (read on every call: it can change).
  Result<MacAddress> hardware_address() const;

 private:
  AddressAnnouncer(int socket, std::string interface, int interface_index);

  Result<Ok> follow_interface();
  Result<Ok> send_frame(std::uint16_t ethertype, const MacAddress& destination,
                        std::span<const std::uint8_t> payload);

  int socket_;
  std::string interface_;
  int interface_index_;
};

// Frame builders, exposed for tests. `source_mac` is this host's MAC.
// An ARP packet (Ethernet/IPv4, 28 bytes; operation 1 = request, 2 = reply).
std::vector<std::uint8_t> arp_packet(std::uint16_t operation, const MacAddress& sender_mac,
                                     const asio::ip::address_v4& sender_ip,
                                     const MacAddress& target_mac,
                                     const asio::ip::address_v4& target_ip);
// An IPv6 packet carrying a neighbour advertisement for `target` (solicited flag clear, override
// set, target link-layer address option), from `target` to `destination`, hop limit 255.
std::vector<std::uint8_t> neighbour_advertisement(const MacAddress& source_mac,
                                                  const asio::ip::address_v6& target,
                                                  const asio::ip::address_v6& destination);

}  // namespace keel::io
