// Fuzzes the decoder of a volume's metadata slot (what keel reads back from disk after a crash,
// a torn write or damage): it must never crash, and any slot it accepts must encode back to
// exactly the same bytes. The input is a slot's body, which the harness frames with a valid
// checksum (frame_slot) that random bytes would almost never carry, so that the fields themselves
// are fuzzed. Seeds: fuzz/corpus/volume_metadata/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "io/volume_metadata_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > keel::io::kMaxSlotEncodedBytes) return 0;
  const std::vector<std::uint8_t> slot = keel::io::frame_slot({data, size});
  auto decoded = keel::io::decode_slot(slot);
  if (!decoded.ok()) return 0;
  if (keel::io::encode_slot(decoded.value()) != slot) std::abort();
  return 0;
}
