// Helpers shared by the parse_config() tests: text built from lines, so that a test's line
// numbers are its list positions (from 1), and the one error a text gets.
#pragma once

#include <initializer_list>
#include <string>

#include "config/config.hpp"

namespace keel::config::test_support {

inline std::string lines(std::initializer_list<const char*> list) {
  std::string text;
  for (const char* line : list) text += std::string(line) + "\n";
  return text;
}

// Two valid IPv4 nodes on lines 1-12 (fe1 at 198.18.0.1, fe2 at 198.18.0.2 on line 9); `tail`
// starts on line 13.
inline std::string base_with(std::initializer_list<const char*> tail) {
  return lines({"[cluster]", "name = \"web\"", "", "[[node]]", "id = 1", "name = \"fe1\"",
                "address = \"198.18.0.1\"", "", "[[node]]", "id = 2", "name = \"fe2\"",
                "address = \"198.18.0.2\""}) +
         lines(tail);
}

inline std::string error_of(const std::string& text) {
  auto parsed = parse_config(text, "keel.toml");
  if (parsed.ok()) return "(parsed without error)";
  return parsed.error().message;
}

}  // namespace keel::config::test_support
