#include "core/ring/group_wire.hpp"

#include "core/common/assert.hpp"
#include "core/ring/groups.hpp"

namespace keel::ring {

namespace {

void put_name(ByteWriter& out, const std::string& name) {
  KEEL_ASSERT(!check_group_name(name).has_value());
  out.u8(static_cast<std::uint8_t>(name.size()));
  out.bytes({reinterpret_cast<const std::uint8_t*>(name.data()), name.size()});
}

std::optional<std::string> get_name(ByteReader& in) {
  const std::uint8_t length = in.u8();
  auto bytes = in.bytes(length);
  if (!in.ok() || length == 0) return std::nullopt;
  std::string name(bytes.begin(), bytes.end());
  if (check_group_name(name)) return std::nullopt;
  return name;
}

}  // namespace

std::optional<std::string> check_group_name(const std::string& name) {
  if (name.empty()) return "a group name must not be empty";
  if (name.size() > kMaxGroupNameBytes) {
    return "group name longer than " + std::to_string(kMaxGroupNameBytes) + " bytes";
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return "group names are printable ASCII without spaces";
  }
  return std::nullopt;
}

Bytes encode_group_message(const GroupWireMessage& message) {
  Bytes bytes;
  ByteWriter out(bytes);
  out.u8(static_cast<std::uint8_t>(message.kind));
  switch (message.kind) {
    case GroupWireMessage::Kind::join:
    case GroupWireMessage::Kind::leave:
      put_name(out, message.group);
      break;
    case GroupWireMessage::Kind::data:
      put_name(out, message.group);
      out.bytes(message.payload);
      break;
    case GroupWireMessage::Kind::sync:
      KEEL_ASSERT(message.groups.size() <= kMaxGroupsPerHost);
      out.u64(message.sync_ring.seq);
      out.u32(message.sync_ring.rep);
      out.u16(static_cast<std::uint16_t>(message.groups.size()));
      for (const std::string& group : message.groups) put_name(out, group);
      break;
  }
  return bytes;
}

Result<GroupWireMessage> decode_group_message(std::span<const std::uint8_t> bytes) {
  ByteReader in(bytes);
  GroupWireMessage message;
  const std::uint8_t kind = in.u8();
  if (!in.ok()) return Error{"group message: empty"};
  if (kind < 1 || kind > 4) return Error{"group message: unknown kind " + std::to_string(kind)};
  message.kind = static_cast<GroupWireMessage::Kind>(kind);
  if (message.kind != GroupWireMessage::Kind::sync) {
    auto name = get_name(in);
    if (!name) return Error{"group message: bad group name"};
    message.group = std::move(*name);
    if (message.kind == GroupWireMessage::Kind::data) {
      auto rest = in.bytes(in.remaining());
      message.payload.assign(rest.begin(), rest.end());
    }
  } else {
    message.sync_ring.seq = in.u64();
    message.sync_ring.rep = in.u32();
    const std::uint16_t count = in.u16();
    if (!in.ok()) return Error{"group sync: truncated"};
    if (count > kMaxGroupsPerHost) return Error{"group sync: too many groups"};
    for (std::uint16_t i = 0; i < count; ++i) {
      auto name = get_name(in);
      if (!name) return Error{"group sync: bad group name"};
      if (!message.groups.empty() && !(message.groups.back() < *name)) {
        return Error{"group sync: names not strictly increasing"};
      }
      message.groups.push_back(std::move(*name));
    }
  }
  if (!in.at_end()) return Error{"group message: trailing bytes"};
  return message;
}

}  // namespace keel::ring
