// Fuzzes the vip state message decoder: it must never crash, and anything it accepts must encode
// back to exactly the same bytes (the encoding is canonical). Seeds: fuzz/corpus/vip_wire/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/vip/vip_wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto decoded = keel::vip::decode_vip_message({data, size});
  if (!decoded.ok()) return 0;
  const keel::Bytes again = keel::vip::encode_vip_state(decoded.value());
  if (again != keel::Bytes(data, data + size)) std::abort();
  return 0;
}
