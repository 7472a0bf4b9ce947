#include "io/nbd_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/errno_text.hpp"
#include "io/tcp_keepalive.hpp"
#include "io/unix_socket_path.hpp"

namespace keel::io {
namespace {

constexpr mode_t kSocketMode = 0600;

std::string describe(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  const std::string text = address.to_string();
  return (address.is_v6() ? "[" + text + "]" : text) + ":" + std::to_string(endpoint.port());
}

}  // namespace

Result<std::unique_ptr<NbdServer>> NbdServer::open(asio::io_context& io, BlockDevice& device,
                                                   NbdServerOptions options) {
  if (options.export_name.empty() || options.export_name.size() > nbd::kMaxStringBytes) {
    return Error{"the NBD export name must have 1 to " + std::to_string(nbd::kMaxStringBytes) +
                 " bytes"};
  }
  if (options.description.size() > nbd::kMaxStringBytes) {
    return Error{"the NBD export description is longer than the protocol allows"};
  }
  if (options.unix_path.empty() && options.tcp_address.empty()) {
    return Error{"the NBD server needs a Unix socket path or a TCP address"};
  }
  if (options.max_connections == 0) return Error{"the NBD server must allow a connection"};
  std::unique_ptr<NbdServer> server(new NbdServer(io, device, std::move(options)));
  if (!server->options_.unix_path.empty()) {
    if (auto bound = server->bind_unix(); !bound.ok()) return bound.error();
  }
  if (!server->options_.tcp_address.empty()) {
    if (auto bound = server->bind_tcp(); !bound.ok()) return bound.error();
  }
  return server;
}

NbdServer::NbdServer(asio::io_context& io, BlockDevice& device, NbdServerOptions options)
    : io_(io),
      options_(std::move(options)),
      shared_(std::make_shared<NbdShared>(device, options_.export_name, options_.description)),
      unix_acceptor_(io),
      tcp_acceptor_(io),
      unix_retry_(io, "nbd: " + options_.unix_path),
      tcp_retry_(io, "nbd: tcp") {
  shared_->on_closed = [this](std::uint64_t id) { connections_.erase(id); };
}

NbdServer::~NbdServer() {
  close();
  shared_->on_closed = nullptr;  // connections alive after us must not call back
}

Result<Ok> NbdServer::bind_unix() {
  const std::string& path = options_.unix_path;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{"NBD socket path '" + path + "' is longer than " +
                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes"};
  }
  if (auto cleared = clear_socket_path(path, "NBD socket", "", ""); !cleared.ok())
    return cleared.error();
  const asio::local::stream_protocol::endpoint endpoint(path);
  asio::error_code error;
  unix_acceptor_.open(endpoint.protocol(), error);
  if (error) return Error{"cannot create the NBD socket: " + error.message()};
  // The socket file takes its mode from the umask: 0600 from the start, never briefly wider.
  const mode_t old_mask = ::umask(0777 & ~kSocketMode);
  unix_acceptor_.bind(endpoint, error);
  ::umask(old_mask);
  if (error) return Error{"cannot bind the NBD socket " + path + ": " + error.message()};
  unix_acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) return Error{"cannot listen on " + path + ": " + error.message()};
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return Error{"cannot stat " + path + ": " + errno_text()};
  KEEL_ASSERT((info.st_mode & 0777) == kSocketMode);
  socket_inode_ = info.st_ino;
  return Ok{};
}

Result<Ok> NbdServer::bind_tcp() {
  asio::error_code error;
  const auto address = asio::ip::make_address(options_.tcp_address, error);
  if (error) return Error{"NBD address '" + options_.tcp_address + "' is not an IP address"};
  const asio::ip::tcp::endpoint endpoint(address, options_.tcp_port);
  tcp_acceptor_.open(endpoint.protocol(), error);
  if (!error) tcp_acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  // The address is usually a floating IP that follows the primary: every node of the volume
  // listens on it from the start, whether it holds it yet or not (IP_FREEBIND applies to IPv6
  // sockets too).
  if (!error)
    tcp_acceptor_.set_option(asio::detail::socket_option::boolean<IPPROTO_IP, IP_FREEBIND>(true),
                             error);
  if (!error) tcp_acceptor_.bind(endpoint, error);
  if (!error) tcp_acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error)
    return Error{"cannot listen for NBD on " + describe(endpoint) + ": " + error.message()};
  return Ok{};
}

std::optional<asio::ip::tcp::endpoint> NbdServer::tcp_endpoint() const {
  if (!tcp_acceptor_.is_open()) return std::nullopt;
  asio::error_code error;
  auto endpoint = tcp_acceptor_.local_endpoint(error);
  if (error) return std::nullopt;
  return endpoint;
}

void NbdServer::start() {
  KEEL_ASSERT(!closed_);
  if (unix_acceptor_.is_open()) accept_unix();
  if (tcp_acceptor_.is_open()) accept_tcp();
  spdlog::info("nbd: serving export '{}' ({} bytes){}{}", options_.export_name,
               shared_->device.size_bytes(),
               options_.unix_path.empty() ? "" : " on " + options_.unix_path,
               tcp_acceptor_.is_open() ? " on " + describe(*tcp_endpoint()) : "");
}

void NbdServer::accept_unix() {
  unix_acceptor_.async_accept(
      [this, shared = shared_](const asio::error_code& error,
                               asio::local::stream_protocol::socket socket) {
        if (!shared->on_closed || closed_ || error == asio::error::operation_aborted) return;
        if (error) {
          // Out of descriptors, most likely: the connection waits in the backlog meanwhile.
          ++shared->stats.accept_failures;
          unix_retry_.failed(error, [this, shared] {
            if (shared->on_closed && !closed_) accept_unix();
          });
          return;
        }
        unix_retry_.succeeded();
        on_accept(NbdConnection::Socket(std::move(socket)), "unix:" + options_.unix_path);
        accept_unix();
      });
}

void NbdServer::accept_tcp() {
  tcp_acceptor_.async_accept(
      [this, shared = shared_](const asio::error_code& error, asio::ip::tcp::socket socket) {
        if (!shared->on_closed || closed_ || error == asio::error::operation_aborted) return;
        if (error) {
          ++shared->stats.accept_failures;
          tcp_retry_.failed(error, [this, shared] {
            if (shared->on_closed && !closed_) accept_tcp();
          });
          return;
        }
        tcp_retry_.succeeded();
        asio::error_code ignored;
        socket.set_option(asio::ip::tcp::no_delay(true), ignored);  // replies are small
        // A client whose host died holds its slot until the keepalives find it gone (about
        // 75 s: 60 idle, then 5 probes 3 s apart), not for the kernel's default two hours.
        enable_tcp_keepalive(socket.native_handle(), 60, 3, 5);
        const auto remote = socket.remote_endpoint(ignored);
        on_accept(NbdConnection::Socket(std::move(socket)),
                  ignored ? std::string("tcp:?") : "tcp:" + describe(remote));
        accept_tcp();
      });
}

void NbdServer::on_accept(NbdConnection::Socket socket, std::string peer) {
  const std::uint64_t id = next_id_++;
  peer += " #" + std::to_string(id);
  ++shared_->stats.connections_accepted;
  if (connections_.size() >= options_.max_connections) {
    // NBD has no way to say why before the greeting: the client sees the connection close.
    ++shared_->stats.connections_refused;
    spdlog::warn("nbd: refusing {}: already {} connections", peer, connections_.size());
    asio::error_code ignored;
    socket.close(ignored);
    return;
  }
  ++shared_->stats.connections_open;
  auto connection =
      std::make_shared<NbdConnection>(std::move(socket), std::move(peer), id, shared_);
  connections_.emplace(id, connection);
  connection->start();
}

void NbdServer::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  unix_acceptor_.close(ignored);
  tcp_acceptor_.close(ignored);
  unix_retry_.cancel();
  tcp_retry_.cancel();
  // Closing a connection erases it from the map: close a copy.
  const auto connections = connections_;
  for (const auto& [id, connection] : connections) connection->close();
  KEEL_ASSERT(connections_.empty());
  struct stat info {};
  if (socket_inode_ != 0 && ::stat(options_.unix_path.c_str(), &info) == 0 &&
      info.st_ino == socket_inode_) {
    ::unlink(options_.unix_path.c_str());
  }
  socket_inode_ = 0;
}

}  // namespace keel::io
