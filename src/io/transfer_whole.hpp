// A completion condition for asio::async_read and asio::async_write that moves as much as each
// system call takes: asio's own transfer_all hands the kernel at most 64 KiB at a time, so a
// 1 MiB resync chunk or NBD request took sixteen calls where the socket often had it all.
#pragma once

#include <asio.hpp>
#include <cstddef>
#include <limits>

namespace keel::io {

struct TransferWhole {
  std::size_t operator()(const asio::error_code& error, std::size_t /*moved*/) const {
    return error ? 0 : std::numeric_limits<std::size_t>::max();
  }
};

}  // namespace keel::io
