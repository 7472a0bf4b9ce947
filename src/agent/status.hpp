// The reply to a control `status` request: this host, its ring, its peers and its counters, as
// one JSON object (docs/control-protocol.md lists every field).
//
// Thread-safety: a pure function of its inputs.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "config/config.hpp"
#include "core/ring/ring.hpp"
#include "io/udp_transport.hpp"

namespace keel::agent {

struct StatusSources {
  const config::ClusterConfig& config;
  const config::NodeConfig& self;
  const ring::Ring& ring;
  const std::set<std::string>& groups;  // groups this host is in
  const io::UdpTransport& transport;
  const std::map<NodeId, std::uint64_t>& undecodable;  // per peer: opened, but the ring refused it
  TimeUs now_us = 0;
  TimeUs started_us = 0;
};

nlohmann::json build_status(const StatusSources& sources);

}  // namespace keel::agent
