// Preparing the path of a listening Unix socket (the agent's control socket, an NBD export):
// a stale socket file left by a process that died is removed; a socket someone still listens on,
// or a path that is not a socket, is refused with a message naming it.
//
// Thread-safety: plain functions (they touch the filesystem only).
#pragma once

#include <string>

#include "core/common/result.hpp"

namespace keel::io {

// Whether some process accepts connections on the Unix socket at `path`.
Result<bool> someone_listens(const std::string& path);

// Leaves `path` free for bind(). `what` names the socket in messages ("the control socket"),
// `in_use_hint` and `not_socket_hint` are appended to the two refusals.
Result<Ok> clear_socket_path(const std::string& path, const std::string& what,
                             const std::string& in_use_hint, const std::string& not_socket_hint);

}  // namespace keel::io
