// Byte counts as people write them in configuration files and read them in messages: "2GiB" in,
// "2 GiB" out. K, M, G and T are powers of 1024 with or without "iB" (keel never uses powers of
// 1000, so "2GB" is refused rather than guessed at).
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace keel {

// "4096", "8K", "8KiB", "2GiB", "64T" -> bytes; nothing for anything else or on overflow.
inline std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t number = 0;
  const char* last = text.data() + text.size();
  auto [end, error] = std::from_chars(text.data(), last, number);
  if (error != std::errc{}) return std::nullopt;
  const std::string_view suffix(end, static_cast<std::size_t>(last - end));
  static constexpr std::array<std::string_view, 4> kShort = {"K", "M", "G", "T"};
  static constexpr std::array<std::string_view, 4> kLong = {"KiB", "MiB", "GiB", "TiB"};
  int shift = 0;
  for (std::size_t i = 0; i < kShort.size(); ++i) {
    if (suffix == kShort[i] || suffix == kLong[i]) shift = 10 * static_cast<int>(i + 1);
  }
  if (!suffix.empty() && shift == 0) return std::nullopt;
  if (number > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return number << shift;
}

// "2 GiB", "1536 KiB", "4097 bytes": the largest unit that divides the count exactly.
inline std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<const char*, 4> kUnits = {"TiB", "GiB", "MiB", "KiB"};
  for (std::size_t i = 0; i < kUnits.size(); ++i) {
    const int shift = 10 * static_cast<int>(kUnits.size() - i);
    const std::uint64_t unit = std::uint64_t{1} << shift;
    if (bytes >= unit && bytes % unit == 0) {
      return std::to_string(bytes >> shift) + " " + kUnits[i];
    }
  }
  return std::to_string(bytes) + " bytes";
}

}  // namespace keel
