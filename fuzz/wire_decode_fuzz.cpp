// libFuzzer target for the ring's wire decoder.
//
// decode() must never crash or read out of bounds on any input. When it accepts an input, the
// format being canonical means encode() gives back exactly those bytes, and decoding them again
// gives the same packet. Seeds: fuzz/corpus/wire_decode/ (one valid packet of each type).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "core/ring/wire.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "wire_decode_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace keel::ring::wire;
  const std::span<const std::uint8_t> input(data, size);
  auto decoded = decode(input);
  if (!decoded.ok()) {
    if (decoded.error().message.empty()) fail("rejection without a reason");
    return 0;
  }
  const keel::Bytes encoded = encode(decoded.value());
  if (encoded.size() != size || !std::equal(encoded.begin(), encoded.end(), input.begin())) {
    fail("encode(decode(input)) differs from input");
  }
  auto again = decode(encoded);
  if (!again.ok()) fail("re-encoded packet does not decode");
  if (!(again.value() == decoded.value())) fail("re-decoded packet differs");
  return 0;
}
