#include "config/transport_reader.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "config/toml_fields.hpp"
#include "core/common/assert.hpp"

namespace keel::config {
namespace {

using detail::closest;
using detail::kNoLine;
using detail::line_of;
using detail::parse_address;
using detail::printable;
using detail::Problems;
using detail::TransportLines;

constexpr std::array kTransportModes = {"unicast", "multicast",
                                        "broadcast"};  // TransportMode order
constexpr std::int64_t kMaxMulticastTtl = 255;

// False if the file sets a mode that is not one (the checks that depend on it are skipped).
bool read_transport_mode(const toml::table& table, TransportConfig& transport,
                         TransportLines& lines, Problems& problems) {
  std::string mode;
  if (!detail::read_string(table, "mode", "[transport]", mode, problems))
    return table.get("mode") == nullptr;
  lines.mode = line_of(*table.get("mode"));
  const auto known = std::find(kTransportModes.begin(), kTransportModes.end(), mode);
  if (known == kTransportModes.end()) {
    std::string message = fmt::format(
        "[transport] mode \"{}\" is not one of unicast, multicast, broadcast", printable(mode));
    const std::vector<std::string_view> modes(kTransportModes.begin(), kTransportModes.end());
    if (auto guess = closest(mode, modes)) message += fmt::format(" (did you mean {}?)", *guess);
    problems.add(lines.mode, std::move(message));
    return false;
  }
  transport.mode = static_cast<TransportMode>(known - kTransportModes.begin());
  return true;
}

// The group on its own: an address of the kind the mode needs. Its family against the nodes'
// is checked in the second pass.
void check_transport_group(const TransportConfig& transport, const TransportLines& lines,
                           Problems& problems) {
  const bool multicast = transport.mode == TransportMode::multicast;
  if (transport.mode == TransportMode::unicast) {
    if (lines.group != kNoLine) {
      problems.add(lines.group,
                   "[transport] group is used only with mode = \"multicast\" or \"broadcast\"");
    }
    return;
  }
  if (lines.group == kNoLine) {
    problems.add_missing(
        lines.mode,
        fmt::format("[transport] mode = \"{}\" needs group = \"ADDRESS\" ({})",
                    to_string(transport.mode),
                    multicast ? "an IPv4 or IPv6 multicast group, e.g. 239.192.0.1"
                              : "the subnet's IPv4 broadcast address, usually x.x.x.255"));
    return;
  }
  std::array<std::uint8_t, 16> bytes{};
  const int family = parse_address(transport.group, bytes);
  const bool is_multicast = family == AF_INET6 ? bytes[0] == 0xff : (bytes[0] & 0xf0) == 0xe0;
  if (family == AF_UNSPEC) {
    problems.add(lines.group, fmt::format("[transport] group \"{}\" is not an IPv4 or IPv6 address",
                                          transport.group));
  } else if (multicast && !is_multicast) {
    problems.add(lines.group,
                 fmt::format("[transport] group {} is not a multicast address (IPv4 224.0.0.0/4 "
                             "or IPv6 ff00::/8), which mode = \"multicast\" needs",
                             transport.group));
  } else if (!multicast && (family != AF_INET || is_multicast)) {
    problems.add(
        lines.group,
        fmt::format("[transport] group {} is not an IPv4 broadcast address; mode = "
                    "\"broadcast\" needs the subnet's broadcast address, usually x.x.x.255",
                    transport.group));
  } else if (!multicast &&
             (bytes[0] == 0 || bytes[0] == 127 || transport.group == "255.255.255.255")) {
    problems.add(lines.group,
                 fmt::format("[transport] group {} cannot be used for broadcast: give the nodes' "
                             "subnet's broadcast address, usually x.x.x.255",
                             transport.group));
  }
}

}  // namespace

const char* to_string(TransportMode mode) {
  const auto index = static_cast<std::size_t>(mode);
  KEEL_ASSERT(index < kTransportModes.size());
  return kTransportModes[index];
}

namespace detail {

int parse_address(const std::string& text, std::array<std::uint8_t, 16>& bytes) {
  if (inet_pton(AF_INET, text.c_str(), bytes.data()) == 1) return AF_INET;
  if (inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1) return AF_INET6;
  return AF_UNSPEC;
}

void read_transport_mode_keys(const toml::table& table, TransportConfig& transport,
                              TransportLines& lines, Problems& problems) {
  const bool mode_known = read_transport_mode(table, transport, lines, problems);
  if (read_string(table, "group", "[transport]", transport.group, problems)) {
    lines.group = line_of(*table.get("group"));
  }
  if (read_integer(table, "multicast_ttl", "[transport]", 1, kMaxMulticastTtl,
                   transport.multicast_ttl, problems)) {
    lines.multicast_ttl = line_of(*table.get("multicast_ttl"));
  }
  if (!mode_known) return;
  if (lines.multicast_ttl != kNoLine && transport.mode != TransportMode::multicast) {
    problems.add(lines.multicast_ttl,
                 "[transport] multicast_ttl is used only with mode = \"multicast\"");
  }
  check_transport_group(transport, lines, problems);
}

}  // namespace detail
}  // namespace keel::config
