// Reassembler: rebuilds application messages from the chunks of delivered ring messages.
//
// Chunks from one origin arrive in the order that origin sent them, but a chain can be cut: a
// ring message may be skipped (a gap at a view change) or the origin may restart a message on a
// new ring. A chunk that does not continue its origin's chain exactly (offset == bytes so far,
// same total) drops the chain, so a message is never spliced from two attempts.
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"
#include "core/ring/wire.hpp"

namespace keel::ring {

class Reassembler {
 public:
  // Feeds the next chunk from `origin`; returns the whole message when this chunk completes it.
  std::optional<Bytes> add(NodeId origin, const wire::Chunk& chunk);
  // Drops every partial message (at a regular view: their rest will never come on this ring).
  // Returns how many partial messages it dropped.
  std::size_t clear();

  std::uint64_t dropped_chains() const { return dropped_chains_; }
  std::size_t partial_bytes() const;

 private:
  struct Partial {
    std::uint32_t total_bytes = 0;
    Bytes data;
  };
  std::map<NodeId, Partial> partial_;
  std::uint64_t dropped_chains_ = 0;
};

}  // namespace keel::ring
