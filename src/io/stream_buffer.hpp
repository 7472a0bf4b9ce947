// StreamBuffer: bytes received on a stream socket that a parser has not consumed yet.
//
// Receiving many small frames one read at a time costs a system call (and an event-loop turn)
// per frame; receiving into this buffer takes whatever the socket holds in one call, and the
// parser then walks the frames in it. Large payloads need not pass through it: take() hands
// over what is buffered, and the caller reads the rest straight into its own buffer.
//
// Invariant: begin_ <= end_ <= bytes_.size(); [begin_, end_) is unconsumed.
// Thread-safety: none (one connection, one thread).
#pragma once

#include <asio/buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/common/assert.hpp"

namespace keel::io {

class StreamBuffer {
 public:
  explicit StreamBuffer(std::size_t capacity) : bytes_(capacity) { KEEL_ASSERT(capacity > 0); }

  std::size_t size() const { return end_ - begin_; }
  std::size_t capacity() const { return bytes_.size(); }
  std::span<const std::byte> data() const { return {bytes_.data() + begin_, size()}; }

  void consume(std::size_t count) {
    KEEL_ASSERT(count <= size());
    begin_ += count;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Copies up to out.size() unconsumed bytes into `out` and consumes them; returns the count.
  std::size_t take(std::span<std::byte> out) {
    const std::size_t count = std::min(out.size(), size());
    if (count > 0) std::memcpy(out.data(), bytes_.data() + begin_, count);
    consume(count);
    return count;
  }

  // Free space to receive into, after moving the unconsumed bytes to the front.
  asio::mutable_buffer space() {
    if (begin_ > 0) {
      std::memmove(bytes_.data(), bytes_.data() + begin_, size());
      end_ -= begin_;
      begin_ = 0;
    }
    KEEL_ASSERT(end_ < bytes_.size());  // a parser always consumes before it asks for more
    return asio::buffer(bytes_.data() + end_, bytes_.size() - end_);
  }

  // `count` bytes arrived in space().
  void commit(std::size_t count) {
    KEEL_ASSERT(count <= bytes_.size() - end_);
    end_ += count;
  }

 private:
  std::vector<std::byte> bytes_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace keel::io
