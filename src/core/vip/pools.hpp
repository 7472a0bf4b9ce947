// VipConfig: the floating-IP pools as the placement core sees them.
//
// A pool names addresses (opaque strings to the core: "192.0.2.10/24", "2001:db8::10/64"), the
// nodes that may hold them, optional preferences (address -> node) and optional per-node weights.
// Addresses are numbered globally in configuration order (pool 0's addresses first), and the
// state-exchange messages name addresses and pools by these numbers, so every host of a cluster
// must run the same VipConfig: config_digest() is carried in every message to detect a mismatch.
//
// Invariants after validate_vip_config() succeeds: pool names unique and non-empty; every address
// unique across all pools; at most kMaxPools pools and kMaxAddresses addresses; node lists sorted,
// unique, without kNoNode; preferences name an address of the pool and a node of the pool;
// weights in 1..kMaxWeight for nodes of the pool.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/common/types.hpp"

namespace keel::vip {

constexpr std::size_t kMaxPools = 256;
constexpr std::size_t kMaxAddresses = 4096;  // over all pools
constexpr std::size_t kMaxAddressBytes = 128;
constexpr std::uint32_t kMaxWeight = 1000;

struct PoolConfig {
  std::string name;
  std::vector<std::string> addresses;
  std::vector<NodeId> nodes;                // which nodes may hold them
  std::map<std::string, NodeId> preferred;  // optional: address -> node
  std::map<NodeId, std::uint32_t> weights;  // optional: node -> weight (default 1)

  std::uint32_t weight(NodeId node) const;
  bool allows(NodeId node) const;
};

struct VipConfig {
  std::vector<PoolConfig> pools;
  // After a regular view is installed, no host acquires an address for this long (against a
  // flapping network taking addresses back and forth). Releases are never delayed.
  TimeUs settle_us = 0;
  // A host that has just started and is still alone in its views acquires nothing for this long
  // after its first view: it is most likely a restarted host that has not found the others yet,
  // and taking every address only to hand them back would disturb them. Addresses it adopted
  // stay where they are. Once it shares a view with another host this no longer applies.
  TimeUs startup_us = 2'000'000;
};

// Returns a description of the first problem, or nothing when the config is usable.
std::optional<std::string> validate_vip_config(const VipConfig& config);

// A 64-bit FNV-1a digest of everything placement depends on (pools, addresses, nodes,
// preferences, weights; not the settle time).
std::uint64_t config_digest(const VipConfig& config);

// Global numbering of addresses: the pool of each address, the first address of each pool.
struct AddressIndex {
  std::vector<std::uint32_t> pool_of;   // by global address number
  std::vector<std::uint32_t> first_of;  // by pool: its first global address number
  std::vector<NodeId> preferred;        // by global address number (kNoNode: none)
  std::size_t size() const { return pool_of.size(); }
};
AddressIndex index_addresses(const VipConfig& config);

}  // namespace keel::vip
