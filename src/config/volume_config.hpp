// The [[volume]] sections: mirrored volumes, each a block device kept on two nodes
// (docs/configuration.md, "[[volume]]: mirrored volumes"; docs/volume.md for how they work).
//
//   [[volume]]
//   name = "data"                        # [A-Za-z0-9._-]{1,64}, unique
//   nodes = ["b1", "b2"]                 # exactly two configured nodes, in this order
//   size = "2GiB"                        # bytes, or a string with K, M, G, T (powers of 1024)
//   backing = "/var/lib/keel/volumes/data.img"         # a file or a block device
//   metadata = "/var/lib/keel/volumes/data.keelmeta"   # default: backing + ".keelmeta"
//   mode = "sync"                        # or "async"
//   replication_port = 7789              # TCP, on each node's [[node]] address
//   resync_rate = "100MiB"               # bytes per second; 0: unlimited
//   nbd_socket = "/run/keel/nbd-data.sock"   # default /run/keel/nbd-<name>.sock; "": none
//   nbd_listen = "198.18.0.10:10809"     # TCP export, IPv4 or [IPv6]:port; default none
//   activity_log_extents = 1237          # hot 4 MiB extents the activity log holds
//   busy_poll_us = 100                   # the data path polls this long at most before blocking
//   write_cache = true                   # the primary's large writes through its page cache
//   [volume.backing_on]                  # node -> its own backing path
//   b2 = "/dev/vdb"
//   [volume.metadata_on]                 # node -> its own metadata path
//   b2 = "/var/lib/keel/data.keelmeta"
//
// Validation (with the line of each problem): names unique, two distinct nodes that exist (with
// a suggestion), a size that is a positive multiple of 4096 of at most 64 TiB, absolute paths,
// metadata apart from the backing, an NBD export of some kind, and nothing shared between two
// volumes on one node: backing or metadata path, NBD socket, NBD listen address, replication
// port; nor an NBD listener on a replication link's address and port (a wildcard listener
// counts on every address of its family, "::" on IPv4 ones too). Whether a path exists, or is a
// file or a device, is known only on the host: `keel volume create` and the agent check that.
//
// Invariants of a parsed VolumeConfig: nodes are two distinct configured ids; backing and
// metadata hold one path for each, in the order of `nodes`. Thread-safety: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/common/sizes.hpp"  // parse_size, format_size: the size syntax
#include "core/common/types.hpp"
#include "core/volume/types.hpp"

namespace keel::config {

constexpr std::uint16_t kDefaultReplicationPort = 7789;
constexpr std::uint64_t kDefaultResyncRateBytesS = 100ull << 20;
constexpr std::uint32_t kDefaultActivityLogExtents = 1237;  // about 4.8 GiB, as DRBD
// The largest NBD write (32 MiB) at an unaligned offset touches 9 extents of 4 MiB: a smaller
// log would refuse it.
constexpr std::uint32_t kMinActivityLogExtents = 9;
constexpr std::uint32_t kMaxActivityLogExtents = 4096;
constexpr std::uint32_t kDefaultBusyPollUs = 100;
constexpr std::uint32_t kMaxVolumeBusyPollUs = 1000;  // io::kMaxBusyPollUs
constexpr std::uint64_t kMaxVolumeBytes = 64ull << 40;
constexpr std::uint64_t kMaxResyncRateBytesS = 1ull << 40;
constexpr std::size_t kMaxVolumes = 64;
constexpr const char* kMetadataSuffix = ".keelmeta";

// A TCP address for the NBD export.
struct NbdListen {
  std::string host;  // an IPv4 or IPv6 literal, without brackets
  std::uint16_t port = 0;

  bool operator==(const NbdListen&) const = default;
};

struct VolumeConfig {
  std::string name;
  std::array<NodeId, 2> nodes{};        // as listed in `nodes`
  std::uint64_t size_bytes = 0;         // a multiple of volume::kBlockBytes, 1 .. kMaxVolumeBytes
  std::array<std::string, 2> backing;   // by position in `nodes`
  std::array<std::string, 2> metadata;  // by position in `nodes`
  volume::Mode mode = volume::Mode::Sync;
  std::uint16_t replication_port = kDefaultReplicationPort;
  std::uint64_t resync_rate_bytes_s = kDefaultResyncRateBytesS;  // 0: unlimited
  std::string nbd_socket;                                        // empty: no Unix socket export
  std::optional<NbdListen> nbd_listen;
  std::uint32_t activity_log_extents = kDefaultActivityLogExtents;
  // This host's own tuning (io/busy_poll.hpp); 0: block at once. Not in volumes_digest().
  std::uint32_t busy_poll_us = kDefaultBusyPollUs;
  // Whether the primary writes requests of io::kMinDirectWriteBytes and more through its page
  // cache (so that they read back from memory) or past it (O_DIRECT, as the secondary always
  // does): this host's own tuning, not in volumes_digest().
  bool write_cache = true;

  bool has_node(NodeId node) const { return node == nodes[0] || node == nodes[1]; }
  // The other node; `node` must be one of the volume's.
  NodeId peer_of(NodeId node) const;
  // The paths on `node`, which must be one of the volume's nodes.
  const std::string& backing_for(NodeId node) const;
  const std::string& metadata_for(NodeId node) const;
};

// A 64-bit FNV-1a digest of every volume's settings, in order: two hosts whose digests differ do
// not run the same [[volume]] sections.
std::uint64_t volumes_digest(const std::vector<VolumeConfig>& volumes);

}  // namespace keel::config
