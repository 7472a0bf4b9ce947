// A whole decimal number from text, as written by the agent's own state files.
#pragma once

#include <charconv>
#include <string_view>
#include <system_error>

namespace keel {

// True when all of `text`, and nothing else, is a number that fits `Number`.
template <typename Number>
bool parse_number(std::string_view text, Number& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && error == std::errc{} && end == text.data() + text.size();
}

}  // namespace keel
