// Fuzzes the process-group message decoder: it must never crash, and anything it accepts must
// encode back to exactly the same bytes (the encoding is canonical).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/ring/group_wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto decoded = keel::ring::decode_group_message({data, size});
  if (!decoded.ok()) return 0;
  const keel::Bytes again = keel::ring::encode_group_message(decoded.value());
  if (again != keel::Bytes(data, data + size)) std::abort();
  return 0;
}
