// The encoding of process-group requests inside ring messages.
//
// A group ring message starts with a kind byte: 1 join, 2 leave, 3 data, 4 sync. join, leave and
// data carry the group name (u8 length, 1..kMaxGroupNameBytes bytes); data then carries the
// payload to the end of the message. sync carries the ring id of the view it belongs to (u64 seq,
// u32 rep) and the sender's groups (u16 count <= kMaxGroupsPerHost, each a name). Names within a
// sync are strictly increasing. decode_group_message() rejects anything else with a reason.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::ring {

struct GroupWireMessage {
  enum class Kind : std::uint8_t { join = 1, leave = 2, data = 3, sync = 4 };
  Kind kind = Kind::join;
  std::string group;                // join, leave, data
  Bytes payload;                    // data
  RingId sync_ring;                 // sync
  std::vector<std::string> groups;  // sync
  bool operator==(const GroupWireMessage&) const = default;
};

Bytes encode_group_message(const GroupWireMessage& message);
Result<GroupWireMessage> decode_group_message(std::span<const std::uint8_t> bytes);
// Returns an error message when `name` is not a valid group name.
std::optional<std::string> check_group_name(const std::string& name);

}  // namespace keel::ring
