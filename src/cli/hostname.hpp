// This host's name, which picks this host's entry in the node list unless --node overrides it.
#pragma once

#include <unistd.h>

#include <array>
#include <string>

namespace keel::cli {

// Empty when the name cannot be read (the node list then needs --node).
inline std::string hostname() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "";
  return name.data();
}

}  // namespace keel::cli
