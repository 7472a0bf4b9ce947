// Simulated application messages: payloads that carry their own identity and prove their content.
//
// Every payload the simulator submits starts with a 24-byte header it writes itself (big-endian):
// origin node (u32), origin incarnation (u32), a counter per (origin, incarnation) (u64) and a
// checksum (u64) of the filler that follows. The filler is generated from the id and the length,
// so a checker can regenerate the exact payload from the id and the submitted length and compare
// byte for byte without keeping any payload in memory.
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"

namespace keel::sim {

constexpr std::size_t kMessageHeaderBytes = 24;

struct MessageId {
  NodeId origin = kNoNode;
  std::uint32_t incarnation = 0;
  std::uint64_t counter = 0;

  auto operator<=>(const MessageId&) const = default;
  bool operator==(const MessageId&) const = default;
};

std::string to_string(const MessageId& id);  // "origin/incarnation/counter"

// A stable 64-bit hash of an id (for digests).
std::uint64_t hash(const MessageId& id);

// The payload for `id` with `filler_bytes` bytes after the header.
Bytes make_payload(const MessageId& id, std::size_t filler_bytes);

// The id in a payload's header, or nothing when the payload is shorter than a header.
std::optional<MessageId> parse_message_id(std::span<const std::uint8_t> payload);

// Empty when `payload` is exactly make_payload(id, filler_bytes) for its own id; else what differs.
std::optional<std::string> verify_payload(std::span<const std::uint8_t> payload,
                                          std::size_t filler_bytes);

}  // namespace keel::sim
