// Fuzzes the parser of the outdate-records file in the agent's state directory (what keel reads
// back at start, after a crash or damage): it must never crash, and what it accepts must format
// back to text that parses to the same records. Seeds: fuzz/corpus/outdate_records_format/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "io/outdate_records_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = keel::io::parse_outdate_records(text, "fuzz");
  if (!parsed.ok()) return 0;
  auto again =
      keel::io::parse_outdate_records(keel::io::format_outdate_records(parsed.value()), "fuzz");
  if (!again.ok() || again.value() != parsed.value()) std::abort();
  return 0;
}
