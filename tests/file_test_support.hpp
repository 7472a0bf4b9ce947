// Reading a whole file in a test: what a hook wrote, what a client copied back.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace keel::testing {

// The file's bytes, or "" when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace keel::testing
