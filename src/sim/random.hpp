// Rng: the simulator's only source of randomness, a seeded xoshiro256** generator.
//
// Every choice in a simulated run comes from an Rng derived from the run's 64-bit seed, so a seed
// replays a run bit for bit. The generator and every derived value (uniform integers, chances,
// picks) are computed here with integer arithmetic and IEEE doubles only: no std::random_device,
// no <random> distributions (their output differs between standard library versions) and no clock.
//
// Invariant: the state is never all zero (splitmix64 seeding cannot produce four zero words).
// Thread-safety: a plain value; one thread uses an instance.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/common/assert.hpp"

namespace keel::sim {

// splitmix64: one step of Steele, Lea and Flood's mixing generator. Used to seed and to hash.
constexpr std::uint64_t splitmix64(std::uint64_t& state) {
  state += 0x9e3779b97f4a7c15ull;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A well-mixed 64-bit hash of one word (stateless splitmix64).
constexpr std::uint64_t mix64(std::uint64_t value) {
  std::uint64_t state = value;
  return splitmix64(state);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    std::uint64_t sm = seed;
    for (auto& word : state_) word = splitmix64(sm);
  }

  // The next 64 random bits (xoshiro256** by Blackman and Vigna).
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [lo, hi], both inclusive. Rejection sampling: no modulo bias.
  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {
    KEEL_ASSERT(lo <= hi);
    const std::uint64_t span = hi - lo;
    if (span == ~std::uint64_t{0}) return next();
    const std::uint64_t range = span + 1;
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % range);
    std::uint64_t x = next();
    while (x >= limit) x = next();
    return lo + x % range;
  }

  // Uniform in [0, 1) with 53 random bits.
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform in [lo, hi).
  double uniform_real(double lo, double hi) { return lo + (hi - lo) * unit(); }

  // True with probability p (p <= 0: never; p >= 1: always). Always draws one number.
  bool chance(double p) { return unit() < p; }

  template <typename T>
  const T& pick(const std::vector<T>& items) {
    KEEL_ASSERT(!items.empty());
    return items[uniform(0, items.size() - 1)];
  }

  // Shuffles in place (Fisher-Yates).
  template <typename T>
  void shuffle(std::vector<T>& items) {
    for (std::size_t i = items.size(); i > 1; --i) {
      const std::size_t j = uniform(0, i - 1);
      std::swap(items[i - 1], items[j]);
    }
  }

  // An independent generator for one purpose (network, faults, payloads), so that drawing more
  // numbers for one purpose does not shift the numbers another purpose sees.
  Rng fork(std::uint64_t purpose) { return Rng(next() ^ mix64(purpose)); }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  std::array<std::uint64_t, 4> state_{};
};

}  // namespace keel::sim
