// What a ring instance hands back to its caller: packets to send, views and messages to deliver.
//
// These are plain values. The agent executes Send through its transport; the simulator through its
// simulated network. Views and messages go to the application, in exactly the order given.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"

namespace keel::ring {

// A membership view, as in extended virtual synchrony. A regular view is a ring's membership. A
// transitional view precedes a regular one and holds the members that came from this host's
// previous ring together: messages delivered in it were received by all of them.
struct View {
  enum class Kind : std::uint8_t { transitional, regular };
  Kind kind = Kind::regular;
  RingId ring;                  // the new ring (for both kinds)
  RingId previous_ring;         // transitional: the ring its members came from
  std::vector<NodeId> members;  // sorted

  bool regular() const { return kind == Kind::regular; }
  bool operator==(const View&) const = default;
};

struct DeliveredMessage {
  NodeId origin = kNoNode;  // the host that submitted it
  RingId ring;              // the ring it was ordered on
  std::uint64_t seq = 0;    // the ring sequence number of its last chunk
  std::uint32_t index = 0;  // position among the messages completed by that ring message
  bool safe = false;
  Bytes payload;
};

struct Send {
  NodeId to = kAllNodes;  // a node id, or kAllNodes for every other configured node
  Bytes bytes;
};

// Simulation only (RingTunables::report_receipts): this host now holds message (ring, seq).
struct Received {
  RingId ring;
  std::uint64_t seq = 0;
};

using Action = std::variant<Send, View, DeliveredMessage, Received>;

enum class DeliveryKind : std::uint8_t { agreed, safe };

}  // namespace keel::ring
