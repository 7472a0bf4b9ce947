// parse_config()'s reader of the [transport] keys that choose how packets for every node travel
// (mode, group, multicast_ttl), and the address parsing it shares with the node reader.
//
// Thread-safety: pure functions.
#pragma once

#include <toml++/toml.h>

#include <array>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "config/diagnostics.hpp"

namespace keel::config::detail {

// The lines of the [transport] keys the second pass blames (kNoLine: not set).
struct TransportLines {
  int mtu = kNoLine;
  int mode = kNoLine;
  int group = kNoLine;
  int multicast_ttl = kNoLine;
};

// Parses an IPv4 or IPv6 literal; returns its family, or AF_UNSPEC.
int parse_address(const std::string& text, std::array<std::uint8_t, 16>& bytes);

// Reads mode, group and multicast_ttl from the [transport] table and checks them on their own
// (the group against the nodes' family is checked once the nodes are read).
void read_transport_mode_keys(const toml::table& table, TransportConfig& transport,
                              TransportLines& lines, Problems& problems);

}  // namespace keel::config::detail
