#include "sim/message.hpp"

#include "sim/random.hpp"

namespace keel::sim {

namespace {

std::uint64_t filler_seed(const MessageId& id, std::size_t filler_bytes) {
  return mix64(hash(id) ^ mix64(filler_bytes));
}

std::uint64_t checksum(std::span<const std::uint8_t> bytes) {
  std::uint64_t sum = mix64(bytes.size());
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    word = (word << 8) | bytes[i];
    if (i % 8 == 7 || i + 1 == bytes.size()) {
      sum = mix64(sum ^ word);
      word = 0;
    }
  }
  return sum;
}

void append_filler(Bytes& out, const MessageId& id, std::size_t filler_bytes) {
  Rng rng(filler_seed(id, filler_bytes));
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < filler_bytes; ++i) {
    if (i % 8 == 0) word = rng.next();
    out.push_back(static_cast<std::uint8_t>(word >> (8 * (i % 8))));
  }
}

}  // namespace

std::string to_string(const MessageId& id) {
  return std::to_string(id.origin) + "/" + std::to_string(id.incarnation) + "/" +
         std::to_string(id.counter);
}

std::uint64_t hash(const MessageId& id) {
  const std::uint64_t who = (std::uint64_t{id.origin} << 32) | id.incarnation;
  return mix64(mix64(who) ^ id.counter);
}

Bytes make_payload(const MessageId& id, std::size_t filler_bytes) {
  Bytes filler;
  filler.reserve(filler_bytes);
  append_filler(filler, id, filler_bytes);
  Bytes payload;
  payload.reserve(kMessageHeaderBytes + filler_bytes);
  ByteWriter writer(payload);
  writer.u32(id.origin);
  writer.u32(id.incarnation);
  writer.u64(id.counter);
  writer.u64(checksum(filler));
  writer.bytes(filler);
  return payload;
}

std::optional<MessageId> parse_message_id(std::span<const std::uint8_t> payload) {
  ByteReader reader(payload);
  MessageId id;
  id.origin = reader.u32();
  id.incarnation = reader.u32();
  id.counter = reader.u64();
  if (!reader.ok()) return std::nullopt;
  return id;
}

std::optional<std::string> verify_payload(std::span<const std::uint8_t> payload,
                                          std::size_t filler_bytes) {
  const auto id = parse_message_id(payload);
  if (!id || payload.size() < kMessageHeaderBytes) return "payload shorter than its header";
  if (payload.size() != kMessageHeaderBytes + filler_bytes) {
    return "payload is " + std::to_string(payload.size()) + " bytes, submitted " +
           std::to_string(kMessageHeaderBytes + filler_bytes);
  }
  const auto filler = payload.subspan(kMessageHeaderBytes);
  ByteReader reader(payload.subspan(16, 8));
  if (reader.u64() != checksum(filler)) return "checksum does not match the filler";
  Bytes expected;
  expected.reserve(filler_bytes);
  append_filler(expected, *id, filler_bytes);
  for (std::size_t i = 0; i < filler_bytes; ++i) {
    if (expected[i] != filler[i]) {
      return "filler differs at byte " + std::to_string(kMessageHeaderBytes + i);
    }
  }
  return std::nullopt;
}

}  // namespace keel::sim
