// Hard limits of the ring protocol. Every list that crosses the wire or sits in memory is bounded
// by one of these; decoders reject anything larger.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::ring {

// Configured nodes, and so ring members: a commit token for this many must fit kMinPacketBytes.
constexpr std::size_t kMaxNodes = 28;
constexpr std::size_t kMaxRetransmitRequests = 64;  // sequence numbers a token may request
constexpr std::size_t kMaxChunksPerMessage = 256;   // chunks packed into one ring message
// Smallest max_packet_bytes accepted: a token, join or commit token for kMaxNodes must fit.
constexpr std::size_t kMinPacketBytes = 1200;
constexpr std::size_t kMaxPacketBytes = 65000;                 // largest max_packet_bytes accepted
constexpr std::size_t kMaxApplicationMessageBytes = 1u << 20;  // one submitted message

}  // namespace keel::ring
