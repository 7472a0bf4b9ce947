// NbdServer: serves one BlockDevice as one named NBD export (the volume's name) on a Unix socket
// and/or a TCP address, to any number of concurrent clients up to max_connections.
//
// Each connection is an NbdConnection (io/nbd_connection.hpp): fixed newstyle negotiation, then
// pipelined requests answered out of order. The device is asked at every negotiation whether it
// may serve (unavailable_reason()); a client of a node that may not (a secondary) is refused at
// NBD_OPT_GO with that reason as the error text. docs/nbd.md describes what clients see.
//
// The Unix socket is created mode 0600 (umask 077 around bind(), as the agent's control socket
// is); a stale socket file nobody listens on is replaced, a live one or a non-socket refused;
// close() removes the file if it is still ours. TCP listens on the given IP literal and port
// (port 0 picks a free one: tcp_endpoint() tells which).
//
// A failed accept (out of descriptors) is tried again after a pause (io/accept_retry.hpp).
//
// Lifetime: close() (or the destructor) stops accepting and closes every connection at once;
// device completions still pending then run later on the io_context and find their connection
// closed (connections are shared_ptr-owned and hold what they use). The BlockDevice must outlive
// those completions, not just the server.
//
// Thread-safety: none; everything on the io_context's one thread. open() changes the process
// umask for the duration of bind().
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/common/result.hpp"
#include "io/accept_retry.hpp"
#include "io/block_device.hpp"
#include "io/nbd_connection.hpp"

namespace keel::io {

constexpr std::size_t kDefaultMaxNbdConnections = 16;

struct NbdServerOptions {
  std::string export_name;  // the volume's name; clients may also ask for "" (the default)
  std::string description;  // shown by `nbdinfo --list`
  std::string unix_path;    // empty: no Unix socket
  std::string tcp_address;  // empty: no TCP listener; else an IPv4 or IPv6 literal
  std::uint16_t tcp_port = 0;
  std::size_t max_connections = kDefaultMaxNbdConnections;
};

class NbdServer {
 public:
  // Binds the listeners (nothing is accepted before start()); fails with a readable message.
  static Result<std::unique_ptr<NbdServer>> open(asio::io_context& io, BlockDevice& device,
                                                 NbdServerOptions options);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  void start();
  void close();  // idempotent

  const NbdServerStats& stats() const { return shared_->stats; }
  std::size_t connection_count() const { return connections_.size(); }
  std::optional<asio::ip::tcp::endpoint> tcp_endpoint() const;
  const std::string& unix_path() const { return options_.unix_path; }

 private:
  NbdServer(asio::io_context& io, BlockDevice& device, NbdServerOptions options);
  Result<Ok> bind_unix();
  Result<Ok> bind_tcp();
  void accept_unix();
  void accept_tcp();
  void on_accept(NbdConnection::Socket socket, std::string peer);

  asio::io_context& io_;
  NbdServerOptions options_;
  std::shared_ptr<NbdShared> shared_;
  asio::local::stream_protocol::acceptor unix_acceptor_;
  asio::ip::tcp::acceptor tcp_acceptor_;
  AcceptRetry unix_retry_;  // after a failed accept (out of descriptors)
  AcceptRetry tcp_retry_;
  std::map<std::uint64_t, std::shared_ptr<NbdConnection>> connections_;
  std::uint64_t next_id_ = 1;
  std::uint64_t socket_inode_ = 0;  // of the Unix socket file we created
  bool closed_ = false;
};

}  // namespace keel::io
