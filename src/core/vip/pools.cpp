#include "core/vip/pools.hpp"

#include <algorithm>
#include <set>

#include "core/common/assert.hpp"

namespace keel::vip {

std::uint32_t PoolConfig::weight(NodeId node) const {
  auto it = weights.find(node);
  return it == weights.end() ? 1 : it->second;
}

bool PoolConfig::allows(NodeId node) const {
  return std::binary_search(nodes.begin(), nodes.end(), node);
}

namespace {

std::optional<std::string> validate_pool(const PoolConfig& pool, std::set<std::string>& seen) {
  const std::string where = "pool '" + pool.name + "': ";
  if (!std::is_sorted(pool.nodes.begin(), pool.nodes.end()) ||
      std::adjacent_find(pool.nodes.begin(), pool.nodes.end()) != pool.nodes.end()) {
    return where + "nodes must be sorted and unique";
  }
  if (!pool.nodes.empty() && pool.nodes.front() == kNoNode) return where + "node 0 is not a node";
  for (const std::string& address : pool.addresses) {
    if (address.empty() || address.size() > kMaxAddressBytes) {
      return where + "an address must be 1.." + std::to_string(kMaxAddressBytes) + " bytes";
    }
    if (!seen.insert(address).second) return where + "address " + address + " appears twice";
  }
  for (const auto& [address, node] : pool.preferred) {
    if (std::find(pool.addresses.begin(), pool.addresses.end(), address) == pool.addresses.end()) {
      return where + "preference for " + address + ", which is not in the pool";
    }
    if (!pool.allows(node))
      return where + "preferred node " + std::to_string(node) + " is not in the pool";
  }
  for (const auto& [node, weight] : pool.weights) {
    if (!pool.allows(node))
      return where + "weight for node " + std::to_string(node) + " not in the pool";
    if (weight < 1 || weight > kMaxWeight) {
      return where + "weights are 1.." + std::to_string(kMaxWeight);
    }
  }
  return std::nullopt;
}

void mix(std::uint64_t& hash, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    hash ^= (value >> (8 * i)) & 0xff;
    hash *= 0x100000001b3ull;
  }
}

void mix(std::uint64_t& hash, const std::string& text) {
  mix(hash, text.size());
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
}

}  // namespace

std::optional<std::string> validate_vip_config(const VipConfig& config) {
  if (config.pools.size() > kMaxPools) return "more than " + std::to_string(kMaxPools) + " pools";
  std::set<std::string> names;
  std::set<std::string> addresses;
  std::size_t total = 0;
  for (const PoolConfig& pool : config.pools) {
    if (pool.name.empty()) return std::string("a pool needs a name");
    if (!names.insert(pool.name).second) return "two pools are called '" + pool.name + "'";
    if (auto problem = validate_pool(pool, addresses)) return problem;
    total += pool.addresses.size();
  }
  if (total > kMaxAddresses) return "more than " + std::to_string(kMaxAddresses) + " addresses";
  return std::nullopt;
}

std::uint64_t config_digest(const VipConfig& config) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  mix(hash, config.pools.size());
  for (const PoolConfig& pool : config.pools) {
    mix(hash, pool.name);
    mix(hash, pool.addresses.size());
    for (const std::string& address : pool.addresses) mix(hash, address);
    mix(hash, pool.nodes.size());
    for (NodeId node : pool.nodes) mix(hash, node);
    mix(hash, pool.preferred.size());
    for (const auto& [address, node] : pool.preferred) {
      mix(hash, address);
      mix(hash, node);
    }
    mix(hash, pool.weights.size());
    for (const auto& [node, weight] : pool.weights) {
      mix(hash, node);
      mix(hash, weight);
    }
  }
  return hash;
}

AddressIndex index_addresses(const VipConfig& config) {
  AddressIndex index;
  for (std::uint32_t p = 0; p < config.pools.size(); ++p) {
    const PoolConfig& pool = config.pools[p];
    index.first_of.push_back(static_cast<std::uint32_t>(index.pool_of.size()));
    for (const std::string& address : pool.addresses) {
      index.pool_of.push_back(p);
      auto it = pool.preferred.find(address);
      index.preferred.push_back(it == pool.preferred.end() ? kNoNode : it->second);
    }
  }
  KEEL_ASSERT(index.pool_of.size() <= kMaxAddresses);
  return index;
}

}  // namespace keel::vip
