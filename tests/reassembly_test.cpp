// Tests for Reassembler: whole messages pass through, chains complete only when continued
// exactly, and every broken chain is dropped (and counted) rather than spliced.
#include "core/ring/reassembly.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace keel::ring {
namespace {

using wire::Chunk;

Bytes data(std::size_t size, std::uint8_t first) {
  Bytes bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(first + i);
  return bytes;
}

// The chunk of `message` covering [offset, offset + length).
Chunk piece(const Bytes& message, std::size_t offset, std::size_t length) {
  const auto begin = message.begin() + static_cast<std::ptrdiff_t>(offset);
  return Chunk{static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(message.size()),
               Bytes(begin, begin + static_cast<std::ptrdiff_t>(length))};
}

TEST(Reassembly, SingleCompleteChunkReturnsAtOnce) {
  Reassembler reassembler;
  const Bytes message = data(10, 1);
  auto out = reassembler.add(1, piece(message, 0, 10));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, message);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
  EXPECT_EQ(reassembler.dropped_chains(), 0u);
}

TEST(Reassembly, ZeroByteMessage) {
  Reassembler reassembler;
  auto out = reassembler.add(1, Chunk{0, 0, {}});
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->empty());
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
}

TEST(Reassembly, ChunksInOrderCompleteTheMessage) {
  Reassembler reassembler;
  const Bytes message = data(10, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 3)));
  EXPECT_EQ(reassembler.partial_bytes(), 3u);
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 4)));
  EXPECT_EQ(reassembler.partial_bytes(), 7u);
  auto out = reassembler.add(1, piece(message, 7, 3));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, message);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
  EXPECT_EQ(reassembler.dropped_chains(), 0u);
}

TEST(Reassembly, OriginsAreIndependent) {
  Reassembler reassembler;
  const Bytes a = data(6, 1);
  const Bytes b = data(4, 100);
  EXPECT_FALSE(reassembler.add(1, piece(a, 0, 3)));
  EXPECT_FALSE(reassembler.add(2, piece(b, 0, 2)));
  EXPECT_EQ(reassembler.partial_bytes(), 5u);
  EXPECT_EQ(reassembler.add(2, piece(b, 2, 2)), b);
  EXPECT_EQ(reassembler.add(1, piece(a, 3, 3)), a);
  EXPECT_EQ(reassembler.dropped_chains(), 0u);
}

TEST(Reassembly, NewFirstChunkDropsThePartialChain) {
  Reassembler reassembler;
  const Bytes old_message = data(10, 1);
  const Bytes new_message = data(8, 50);
  EXPECT_FALSE(reassembler.add(1, piece(old_message, 0, 5)));
  EXPECT_FALSE(reassembler.add(1, piece(new_message, 0, 4)));
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
  EXPECT_EQ(reassembler.partial_bytes(), 4u);
  EXPECT_EQ(reassembler.add(1, piece(new_message, 4, 4)), new_message);
}

TEST(Reassembly, NewCompleteMessageDropsThePartialChain) {
  Reassembler reassembler;
  const Bytes old_message = data(10, 1);
  EXPECT_FALSE(reassembler.add(1, piece(old_message, 0, 5)));
  EXPECT_EQ(reassembler.add(1, Chunk{0, 0, {}}), Bytes{});
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
  // The old message's tail no longer has a chain to continue.
  EXPECT_FALSE(reassembler.add(1, piece(old_message, 5, 5)));
}

TEST(Reassembly, GapDropsTheChainAndTheStrayChunk) {
  Reassembler reassembler;
  const Bytes message = data(9, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 3)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 6, 3)));  // [3, 6) was skipped
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 3)));  // too late: no chain any more
}

TEST(Reassembly, RepeatedChunkDropsTheChain) {
  Reassembler reassembler;
  const Bytes message = data(9, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 3)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 3)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 3)));
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
  EXPECT_FALSE(reassembler.add(1, piece(message, 6, 3)));
}

TEST(Reassembly, DifferentTotalDropsTheChain) {
  Reassembler reassembler;
  const Bytes first = data(9, 1);
  const Bytes other = data(12, 1);  // same prefix, different size: another message
  EXPECT_FALSE(reassembler.add(1, piece(first, 0, 3)));
  EXPECT_FALSE(reassembler.add(1, piece(other, 3, 9)));
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
}

TEST(Reassembly, StrayChunkWithoutChainIsDiscardedUncounted) {
  Reassembler reassembler;
  const Bytes message = data(9, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 3)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 6, 3)));
  EXPECT_EQ(reassembler.dropped_chains(), 0u);
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
}

TEST(Reassembly, ClearDropsPartialsWithoutCounting) {
  Reassembler reassembler;
  const Bytes message = data(9, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 3)));
  EXPECT_FALSE(reassembler.add(2, piece(message, 0, 4)));
  reassembler.clear();
  EXPECT_EQ(reassembler.partial_bytes(), 0u);
  EXPECT_EQ(reassembler.dropped_chains(), 0u);
  EXPECT_FALSE(reassembler.add(1, piece(message, 3, 6)));
  EXPECT_EQ(reassembler.add(2, piece(message, 0, 9)), message);
}

TEST(Reassembly, ChainRestartsAfterADrop) {
  Reassembler reassembler;
  const Bytes message = data(6, 1);
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 2)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 4, 2)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 0, 2)));
  EXPECT_FALSE(reassembler.add(1, piece(message, 2, 2)));
  EXPECT_EQ(reassembler.add(1, piece(message, 4, 2)), message);
  EXPECT_EQ(reassembler.dropped_chains(), 1u);
}

TEST(ReassemblyDeath, ChunkBeyondItsTotalIsAProgrammerError) {
  Reassembler reassembler;
  EXPECT_DEATH(reassembler.add(1, Chunk{2, 3, {1, 2}}), "assertion failed");
  EXPECT_DEATH(reassembler.add(1, Chunk{1, 3, {}}), "assertion failed");
}

}  // namespace
}  // namespace keel::ring
