// Reassembler: see reassembly.hpp for the rules.
//
// dropped_chains() counts partial messages thrown away because a chunk did not continue them (a
// new first chunk, a wrong offset or a different total). A continuation chunk arriving with no
// partial message for its origin is discarded without being counted, as there is no chain to
// drop (its first chunk was skipped, and the chain it would have continued was counted then if
// it existed). clear() does not count the partials it drops: the caller knows when it clears.
#include "core/ring/reassembly.hpp"

#include "core/common/assert.hpp"
#include "core/ring/limits.hpp"

namespace keel::ring {
namespace {

// The decoder guarantees these for every chunk received; anything else is a programmer error.
void assert_valid(const wire::Chunk& chunk) {
  KEEL_ASSERT(chunk.total_bytes <= kMaxApplicationMessageBytes);
  KEEL_ASSERT(chunk.data.size() <= chunk.total_bytes);
  KEEL_ASSERT(chunk.offset <= chunk.total_bytes - chunk.data.size());
  KEEL_ASSERT(!chunk.data.empty() || chunk.total_bytes == 0);
}

}  // namespace

std::optional<Bytes> Reassembler::add(NodeId origin, const wire::Chunk& chunk) {
  assert_valid(chunk);
  auto it = partial_.find(origin);
  if (chunk.first()) {
    if (it != partial_.end()) {
      ++dropped_chains_;  // the origin restarted: its previous message will never complete
      partial_.erase(it);
    }
    if (chunk.last()) return chunk.data;  // a whole message in one chunk (possibly empty)
    Partial& started = partial_[origin];
    started.total_bytes = chunk.total_bytes;
    started.data = chunk.data;
    return std::nullopt;
  }
  if (it == partial_.end()) return std::nullopt;  // a stray tail: its start was never seen
  Partial& partial = it->second;
  if (chunk.offset != partial.data.size() || chunk.total_bytes != partial.total_bytes) {
    ++dropped_chains_;  // a gap or a different message: never splice two attempts together
    partial_.erase(it);
    return std::nullopt;
  }
  partial.data.insert(partial.data.end(), chunk.data.begin(), chunk.data.end());
  KEEL_ASSERT(partial.data.size() <= partial.total_bytes);
  if (!chunk.last()) return std::nullopt;
  Bytes whole = std::move(partial.data);
  partial_.erase(it);
  return whole;
}

std::size_t Reassembler::clear() {
  const std::size_t dropped = partial_.size();
  partial_.clear();
  return dropped;
}

std::size_t Reassembler::partial_bytes() const {
  std::size_t total = 0;
  for (const auto& [origin, partial] : partial_) total += partial.data.size();
  return total;
}

}  // namespace keel::ring
