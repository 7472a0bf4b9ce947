// libFuzzer target for parse_config().
//
// Any text must give a config or an error, never a crash or an exception (toml++ reports syntax
// errors by throwing; parse_config() catches them). An error must name the source first. An
// accepted config must hold every invariant config.hpp promises.
// Seeds: fuzz/corpus/config/.
//
// The fuzz build compiles toml++ header-only, so its parser is instrumented. Build it with
// NDEBUG defined (the CMake build does): toml++'s own debug assertions are stricter than its
// release behaviour and stop on inputs such as "[&" that the release library rejects cleanly.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "config/config.hpp"
#include "core/ring/limits.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "config_fuzz: %s\n", what);
  std::abort();
}

void check_accepted(const keel::config::ClusterConfig& config) {
  using keel::ring::kMaxNodes;
  if (config.nodes.empty() || config.nodes.size() > kMaxNodes) fail("node count out of range");
  std::set<std::string> names;
  std::set<std::string> addresses;
  for (std::size_t i = 0; i < config.nodes.size(); ++i) {
    const auto& node = config.nodes[i];
    if (node.id == keel::kNoNode || node.id > 65535) fail("node id out of range");
    if (i > 0 && config.nodes[i - 1].id >= node.id) fail("nodes not sorted by unique id");
    if (!names.insert(node.name).second) fail("duplicate node name accepted");
    if (!addresses.insert(node.address).second) fail("duplicate node address accepted");
    if (node.port == 0) fail("port 0 accepted");
    if (config.node_by_id(node.id) != &node || config.node_by_name(node.name) != &node) {
      fail("accessors disagree with the node list");
    }
    auto self = keel::config::resolve_this_node(config, node.name);
    if (!self.ok()) fail("a configured node or [cluster] node does not resolve");
    if (self.value().name != config.this_node.value_or(node.name)) fail("resolved the wrong node");
  }
  if (config.cluster_name.empty()) fail("empty cluster name accepted");
  if (keel::ring::validate(config.ring)) fail("invalid ring tunables accepted");
  const std::uint32_t sealed_udp_ipv4 = config.ring.max_packet_bytes + 63 + 8 + 20;
  if (sealed_udp_ipv4 > config.transport.mtu &&
      config.ring.max_packet_bytes != keel::ring::kMinPacketBytes) {
    fail("packets larger than the mtu");
  }
  if (config.transport.mtu < 1280 || config.transport.mtu > 65535) fail("mtu out of range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = keel::config::parse_config(text, "fuzz.toml");
  if (!parsed.ok()) {
    const std::string& message = parsed.error().message;
    if (message.rfind("fuzz.toml:", 0) != 0) fail("error does not start with the source name");
    return 0;
  }
  check_accepted(parsed.value());
  return 0;
}
