#pragma once

#include <cerrno>
#include <cstring>
#include <string>

namespace keel::io {

// The message for an errno value, for error texts that name the failed call.
inline std::string errno_text(int error = errno) { return std::strerror(error); }

}  // namespace keel::io
