// StreamBuffer: the receive buffer the NBD connection and the replication link parse from.
#include "io/stream_buffer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace keel::io {
namespace {

void receive(StreamBuffer& buffer, std::initializer_list<std::uint8_t> bytes) {
  const asio::mutable_buffer space = buffer.space();
  ASSERT_GE(space.size(), bytes.size());
  std::memcpy(space.data(), std::data(bytes), bytes.size());
  buffer.commit(bytes.size());
}

std::vector<std::uint8_t> unconsumed(const StreamBuffer& buffer) {
  std::vector<std::uint8_t> out;
  for (std::byte b : buffer.data()) out.push_back(static_cast<std::uint8_t>(b));
  return out;
}

TEST(StreamBuffer, ConsumesInOrderAndCompactsBeforeReceiving) {
  StreamBuffer buffer(8);
  receive(buffer, {1, 2, 3, 4, 5, 6});
  buffer.consume(4);
  EXPECT_EQ(unconsumed(buffer), (std::vector<std::uint8_t>{5, 6}));
  // Only 2 bytes of room at the end, but space() moves 5, 6 to the front first.
  EXPECT_EQ(buffer.space().size(), 6u);
  receive(buffer, {7, 8, 9, 10, 11, 12});
  EXPECT_EQ(unconsumed(buffer), (std::vector<std::uint8_t>{5, 6, 7, 8, 9, 10, 11, 12}));
}

TEST(StreamBuffer, TakeHandsOverAtMostWhatIsBuffered) {
  StreamBuffer buffer(16);
  receive(buffer, {1, 2, 3});
  std::vector<std::byte> out(5, std::byte{0xff});
  EXPECT_EQ(buffer.take(out), 3u);
  EXPECT_EQ(out[0], std::byte{1});
  EXPECT_EQ(out[2], std::byte{3});
  EXPECT_EQ(out[3], std::byte{0xff});  // untouched past what was there
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.take(out), 0u);
  EXPECT_EQ(buffer.space().size(), 16u);  // empty: the whole buffer is free again
}

TEST(StreamBufferDeath, ConsumingMoreThanBufferedIsABug) {
  StreamBuffer buffer(4);
  receive(buffer, {1});
  EXPECT_DEATH(buffer.consume(2), "");
}

}  // namespace
}  // namespace keel::io
