// ProblemReader: a ByteReader (byte_io.hpp) for wire decoders that also remembers the first
// reason it failed, so that a decoder reads a whole record, checks ok() once at the end and
// reports what was wrong. Once failed, every read returns zero or empty and nothing more is
// allocated. Decoders derive from it to add their own typed reads.
//
// Thread-safety: a plain value.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/common/byte_io.hpp"

namespace keel {

class ProblemReader {
 public:
  // `truncated`: the problem when input ended early ("packet truncated").
  ProblemReader(std::span<const std::uint8_t> in, std::string truncated)
      : in_(in), truncated_(std::move(truncated)) {}

  std::uint8_t u8() { return in_.u8(); }
  std::uint16_t u16() { return in_.u16(); }
  std::uint32_t u32() { return in_.u32(); }
  std::uint64_t u64() { return in_.u64(); }
  std::span<const std::uint8_t> bytes(std::size_t n) { return in_.bytes(n); }
  bool ok() const { return in_.ok(); }
  std::size_t remaining() const { return in_.remaining(); }
  bool at_end() const { return in_.at_end(); }

  void fail(std::string problem) {
    if (ok() && problem_.empty()) problem_ = std::move(problem);
    in_.fail();
  }
  // Fails as if the input were truncated (the default problem).
  void fail_truncated() { in_.fail(); }
  std::string problem() const { return problem_.empty() ? truncated_ : problem_; }

  bool boolean(std::string_view what) {
    const std::uint8_t value = u8();
    if (value > 1) fail(std::string(what) + " is not a boolean (" + std::to_string(value) + ")");
    return value == 1;
  }

 private:
  ByteReader in_;
  std::string truncated_;
  std::string problem_;
};

}  // namespace keel
