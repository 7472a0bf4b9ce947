// The lab as a site's frontends: floating IPs over the lab's hosts, a web server on each host
// that names it, and what the kernel says about who holds which address. Used by the frontends
// demo, the floating-IP e2e tests and bench/vip.
//
// Thread-safety: functions of the lab's state; one caller at a time per lab.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "lab/lab.hpp"
#include "lab/names.hpp"

namespace keel::lab {

constexpr std::uint16_t kWebPort = 8080;

// 198.18.0.100, .101, ...: `count` floating addresses (names.hpp).
std::vector<std::string> floating_addresses(int count);

// A [[vip.pool]] named "web" of `addresses` (with `prefix_length`, /24 by default: the hosts'
// subnet, on eth0), gated by a tcp health check of the web server on `port` (100 ms checks,
// rise 2, fall 2), announced 3 times 50 ms apart.
std::string web_pool_toml(const std::vector<std::string>& addresses, std::uint16_t port,
                          int prefix_length = kPrefixLength);

// address -> the hosts whose eth0 has it now (by `ip addr` in each namespace).
using Holders = std::map<std::string, std::vector<int>>;
Result<Holders> floating_holders(const Lab& lab, const std::vector<std::string>& addresses);
// Each address on exactly one host of `live` (others may hold it too: a host cut off, or one
// whose agent died), and the counts on `live` within one of each other.
bool placement_settled(const Holders& holders, const std::vector<int>& live);

// Starts Debian's nginx in host `index`'s namespace answering every request on `port` with the
// host's name (its config, pid file and logs in the host's lab directory).
Result<ProcessId> start_nginx(Lab& lab, int index, std::uint16_t port);
// Starts `keel lab serve` there instead (no nginx needed).
Result<ProcessId> start_responder(Lab& lab, int index, std::uint16_t port);

// Starts `keel lab probe` in the client namespace against `addresses`, logging to the returned
// path (LAB/probe.jsonl), a probe per address every `interval_ms`.
Result<std::string> start_prober(Lab& lab, const std::vector<std::string>& addresses,
                                 std::uint16_t port, int interval_ms);

}  // namespace keel::lab
