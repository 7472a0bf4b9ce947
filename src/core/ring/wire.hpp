// The ring's wire format: the packets hosts exchange, and their bounds-checked codec.
//
// Every packet starts with a header: magic "KL" (u16 0x4b4c), version (u8, now 1), packet type
// (u8) and the sending node id (u32). All integers are big-endian. Lists carry a u16 count first
// and are bounded by limits.hpp; node lists are sorted and free of duplicates. decode() accepts
// exactly what encode() produces and rejects everything else with a reason, never reading past
// the input. Authentication is the transport's job: a decoded packet is trusted to come from
// `sender` only after the transport has verified it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::ring::wire {

constexpr std::uint16_t kMagic = 0x4b4c;
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 8;

enum class PacketType : std::uint8_t {
  mcast = 1,         // an ordered message on a ring (McastPacket)
  token = 2,         // the regular token (Token)
  join = 3,          // membership: gather (Join)
  commit_token = 4,  // membership: commit (CommitToken)
  probe = 5,         // periodic reachability report, finds other rings (Probe)
  wake = 6,          // asks the representative to release an idle token now (Wake)
  leave = 7,         // the sender is shutting down: form a ring without it now (Leave)
};

// One piece of an application message. A message that fits is one chunk with offset 0 and
// total_bytes == data.size(); a larger one is split into chunks with increasing offsets.
struct Chunk {
  std::uint32_t offset = 0;       // where data starts within the whole message
  std::uint32_t total_bytes = 0;  // the whole message's size, the same in each of its chunks
  Bytes data;

  bool first() const { return offset == 0; }
  bool last() const { return offset + data.size() == total_bytes; }
  bool operator==(const Chunk&) const = default;
};

// An ordered message: sequence number `seq` on ring `ring`, first broadcast by `origin`.
struct Message {
  RingId ring;
  std::uint64_t seq = 0;
  NodeId origin = kNoNode;
  bool safe = false;  // deliver only once every member of the view has it
  std::vector<Chunk> chunks;
  bool operator==(const Message&) const = default;
};

// A broadcast message. In recovery, a new-ring message carries an old ring's message in
// `recovered` (its own `message.chunks` is then empty) so that survivors of the old ring agree.
struct McastPacket {
  Message message;
  std::optional<Message> recovered;
  bool operator==(const McastPacket&) const = default;
};

struct Token {
  RingId ring;
  std::uint64_t token_seq = 0;    // increases at every hop; duplicates and stale copies are dropped
  std::uint64_t seq = 0;          // highest message sequence number assigned on this ring
  std::uint32_t fcc = 0;          // messages broadcast during the last rotation (flow control)
  std::uint32_t backlog = 0;      // sum of the members' send queue lengths (flow control)
  bool recovery_pending = false;  // recovery: someone still has old messages to re-send
  std::uint8_t stable_rotations = 0;          // recovery: rotations with nothing left to recover
  std::vector<std::uint64_t> received_up_to;  // per member, in ring order
  std::vector<std::uint64_t> retransmit_requests;  // sorted, unique, <= kMaxRetransmitRequests
  bool operator==(const Token&) const = default;
};

struct Join {
  std::uint64_t ring_seq_seen = 0;  // the highest ring sequence number the sender has seen
  std::vector<NodeId> proc;         // hosts the sender wants in the next ring (sorted)
  std::vector<NodeId> fail;         // hosts the sender considers failed (sorted)
  bool operator==(const Join&) const = default;
};

struct CommitEntry {
  NodeId node = kNoNode;
  RingId old_ring;                       // the member's last regular ring (invalid if none)
  std::uint64_t old_received_up_to = 0;  // its all-received-up-to mark on that ring
  std::uint64_t old_high_seq = 0;        // the highest sequence number it holds on that ring
  std::uint64_t old_safe_up_to = 0;      // every old member held every seq <= this (it knows)
  bool filled = false;
  bool operator==(const CommitEntry&) const = default;
};

struct CommitToken {
  RingId ring;  // the ring being formed
  std::uint64_t token_seq = 0;
  std::vector<CommitEntry> entries;  // one per member, in ring order (sorted by node id)
  bool operator==(const CommitToken&) const = default;
};

struct Probe {
  RingId ring;                  // the sender's current ring (invalid if it has none)
  std::vector<NodeId> members;  // that ring's members (sorted)
  std::vector<NodeId> heard;    // nodes the sender heard from recently (sorted)
  bool operator==(const Probe&) const = default;
};

struct Wake {
  RingId ring;
  bool operator==(const Wake&) const = default;
};

struct Leave {
  RingId ring;  // the ring the sender leaves (invalid if it had none)
  bool operator==(const Leave&) const = default;
};

using Body = std::variant<McastPacket, Token, Join, CommitToken, Probe, Wake, Leave>;

struct Packet {
  NodeId sender = kNoNode;
  Body body;
  bool operator==(const Packet&) const = default;
};

Bytes encode(const Packet& packet);
Result<Packet> decode(std::span<const std::uint8_t> bytes);

// Bytes that encode() adds around a message's chunk data, for packing decisions.
constexpr std::size_t kMcastOverheadBytes = kHeaderBytes + 64;
constexpr std::size_t kChunkOverheadBytes = 12;

}  // namespace keel::ring::wire
