// Sealing and opening keel's UDP packets: authenticated encryption under the cluster key, with
// the sender's id and a counter so that forged, altered and replayed packets are dropped before
// anything parses them.
//
// Layout of a sealed packet (all integers big-endian):
//   magic u16 0x4b53 ("KS") | version u8 1 | sender node id u32 | epoch u64 | counter u64 |
//   nonce (24 bytes) | ciphertext of the ring packet | tag (16 bytes)
// The header up to the nonce is the AEAD's associated data (XChaCha20-Poly1305, libsodium).
// A sealer's nonces are 16 random bytes drawn when it is created, then the packet's counter: never
// repeated under the key (the random part tells sealers apart: below 2^-64 odds of a clash among
// 2^32 sealers), and drawing no randomness per packet (a getrandom() system call each with
// libsodium's default generator). Receivers take the nonce as it comes; they never check how it was
// made. `epoch` is chosen by the sender at start (its boot time in microseconds, but always above
// its previous run's: io/boot_epoch.hpp) and `counter`
// rises by one per packet. A receiver keeps, per sender, the highest epoch seen and a window of the
// last 1024 counters in it: an older epoch, a counter below the window or one already seen is a
// replay. A restarted receiver starts from the epochs it had seen before (set_epoch_floor), so
// only the sender's current run can be replayed into its new windows, not its earlier ones.
// Decryption, and the check that the packet came from where its sender lives, happen before any of
// that state changes, so neither forgeries nor authentic packets sent from elsewhere can move it.
//
// Thread-safety: none; one thread per sealer/opener.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::io {

constexpr std::size_t kClusterKeyBytes = 32;
constexpr std::size_t kSealOverheadBytes = 2 + 1 + 4 + 8 + 8 + 24 + 16;  // 63

using ClusterKey = std::array<std::uint8_t, kClusterKeyBytes>;

// Key files hold the key as 64 hex digits and a newline. Reading refuses a file that group or
// others can read or write, naming the path and its mode.
Result<ClusterKey> read_key_file(const std::string& path);
// Writes a new random key with mode 0600; refuses to overwrite an existing file.
Result<Ok> write_new_key_file(const std::string& path);

class PacketSealer {
 public:
  PacketSealer(const ClusterKey& key, NodeId self, std::uint64_t epoch);
  Bytes seal(std::span<const std::uint8_t> plaintext);
  // The same into `out` (replacing its contents), reusing its capacity.
  void seal_into(std::span<const std::uint8_t> plaintext, Bytes& out);

 private:
  ClusterKey key_;
  NodeId self_;
  std::uint64_t epoch_;
  std::uint64_t counter_ = 0;
  static constexpr std::size_t kNoncePrefixBytes = 16;
  std::array<std::uint8_t, kNoncePrefixBytes> nonce_prefix_{};
};

struct OpenStats {
  std::uint64_t opened = 0;
  std::uint64_t malformed = 0;  // too short, bad magic or version
  std::uint64_t forged = 0;     // authentication failed (wrong key, altered bytes)
  std::uint64_t replayed = 0;   // old epoch, counter below the window, or seen before
  std::uint64_t unknown_sender = 0;
  std::uint64_t wrong_address = 0;  // authentic, but from an address its sender does not have
};

struct OpenedPacket {
  NodeId sender = kNoNode;
  Bytes plaintext;
  // The first packet of the sender's epoch here: `epoch` is higher than any seen from it before
  // (a floor counts as seen). Worth recording (io/boot_epoch.hpp, peer_epochs).
  bool new_epoch = false;
  std::uint64_t epoch = 0;
};

class PacketOpener {
 public:
  // Packets from nodes outside `known` are refused (counted as unknown_sender).
  PacketOpener(const ClusterKey& key, std::vector<NodeId> known);
  // Packets from `sender` with an epoch below `epoch` are replays: a restarted receiver's
  // record of the highest epoch it had seen from the sender.
  void set_epoch_floor(NodeId sender, std::uint64_t epoch);
  // Returns the plaintext, or an error saying why the packet was dropped (also counted).
  // `source_node`: the node configured at the address the packet came from (kNoNode for an
  // address no node has). A packet from any other sender is dropped before it reaches the replay
  // window: a copy sent from elsewhere must not spend the genuine packet's counter, nor start the
  // sender's new epoch unreported.
  Result<OpenedPacket> open(std::span<const std::uint8_t> sealed, NodeId source_node);
  const OpenStats& stats() const { return stats_; }

 private:
  struct ReplayWindow {
    std::uint64_t epoch = 0;
    std::uint64_t highest = 0;
    std::array<std::uint64_t, 16> seen{};  // bitmap of the last 1024 counters below highest
    bool floor_only = false;               // from set_epoch_floor: no packet of `epoch` seen yet
  };
  ClusterKey key_;
  std::vector<NodeId> known_;
  std::map<NodeId, ReplayWindow> windows_;
  OpenStats stats_;
};

}  // namespace keel::io
