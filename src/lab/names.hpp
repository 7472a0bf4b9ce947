// LabNames: every name and address a lab uses, derived from its prefix.
//
// A lab's kernel objects all carry its prefix, so parallel labs never collide and a lab can be
// torn down from its prefix alone, even when its state file is missing:
//   bridge         PREFIX-br                    (root namespace, no address)
//   host i         hI, network namespace PREFIX-hI
//   host i's link  veth PREFIX-hI (bridge port, root namespace) <-> eth0 (inside PREFIX-hI)
//   address        198.18.0.(10+i)/24 on eth0   (hosts 1..28: 198.18.0.11 .. 198.18.0.38)
//   client         namespace PREFIX-cl, veth PREFIX-cl, 198.18.0.250/24: where the floating-IP
//                  tests and the demo probe from (optional; no agent there)
//   floating IPs   198.18.0.100 .. 198.18.0.199 are left free for pools
//   nft table      bridge family, named PREFIX
//   directory      /tmp/keel-lab-PREFIX unless given
// Every lab uses the same addresses: each lab is its own layer-2 segment and the root namespace
// has no address on it, so two labs cannot reach or confuse each other.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/common/result.hpp"

namespace keel::lab {

constexpr int kMaxLabHosts = 28;               // ring::kMaxNodes
constexpr std::size_t kMaxPrefixLength = 8;    // "PREFIX-h28" must fit IFNAMSIZ - 1 = 15
constexpr std::size_t kMaxInterfaceName = 15;  // Linux IFNAMSIZ without the terminating zero
constexpr const char* kInnerInterface = "eth0";
constexpr const char* kAddressBase = "198.18.0.";  // inside 198.18.0.0/15 (RFC 2544 benchmarks)
constexpr int kAddressOffset = 10;
constexpr int kPrefixLength = 24;
constexpr std::uint16_t kRingPort = 5420;
constexpr const char* kClientAddress = "198.18.0.250";
constexpr const char* kBroadcastAddress = "198.18.0.255";  // of the hosts' /24, on one bridge
constexpr int kFirstFloatingOctet = 100;                   // floating IPs: 198.18.0.100 and up
constexpr const char* kDefaultDirBase = "/tmp/keel-lab-";

// "kl" and four hex digits mixed from `pid` and `nanoseconds` (a clock reading).
std::string generate_prefix(std::uint64_t pid, std::uint64_t nanoseconds);

// A prefix is a lowercase letter, then up to 7 lowercase letters or digits.
Result<Ok> validate_prefix(const std::string& prefix);

class LabNames {
 public:
  explicit LabNames(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  std::string bridge() const { return prefix_ + "-br"; }
  static std::string host(int index) { return "h" + std::to_string(index); }
  std::string netns(int index) const { return prefix_ + "-" + host(index); }
  std::string veth(int index) const { return netns(index); }
  std::string client_netns() const { return prefix_ + "-cl"; }
  static std::string address(int index) {
    return kAddressBase + std::to_string(kAddressOffset + index);
  }
  std::string table() const { return prefix_; }
  std::string default_dir() const { return kDefaultDirBase + prefix_; }
  // True for a kernel object name (interface or namespace) that belongs to this lab.
  bool owns(const std::string& name) const;

 private:
  std::string prefix_;
};

// "h3" or "3" -> 3, checked against the number of hosts.
Result<int> parse_host(const std::string& text, int hosts);
// "1,2" or "h1,h2" -> {1, 2}: distinct hosts.
Result<std::vector<int>> parse_host_list(const std::string& text, int hosts);

}  // namespace keel::lab
