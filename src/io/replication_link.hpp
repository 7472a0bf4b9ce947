// ReplicationLink: the TCP connection that carries one volume's replication traffic (writes,
// acknowledgements, barriers, resync data) between its two nodes, outside the ring.
//
// Who dials: the node with the lower id connects to the other's replication address and retries
// every `retry_ms` while it is down (a connect unanswered for `user_timeout_ms` is retried); the
// higher id listens and accepts. A new connection first authenticates both ends with the cluster
// key (a challenge-response: each side sends a random nonce and answers the other's with
// HMAC-SHA-256 over the volume name, both nonces and its node id), so a host without the key cannot
// feed or read replication. An accepted connection stays pending beside the current one until it
// has proved the key, and only then replaces it; one that has not within `user_timeout_ms` is
// closed (at most 4 wait), so a stranger connecting cannot cut the link either. After that, frames
// are peer_messages.hpp frames, unencrypted (like DRBD's link: keep it on a private network);
// decode() checks every one and a malformed frame closes the connection.
//
// Sending: send() queues a frame; queued frames go out in order, gathered into one write with
// their payloads sent from the request's own buffers (no copy). Receiving: a DataWrite's or
// ResyncData's payload is read straight into a fresh buffer that becomes the message's Payload.
//
// A connection that stays silent or cannot send for `user_timeout_ms` (TCP_USER_TIMEOUT and
// keepalives) is closed; the volume service also closes it when the peer leaves the ring's view,
// which is the fast path.
//
// Thread-safety: none; everything on the io_context's one thread.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/volume/peer_messages.hpp"
#include "io/accept_retry.hpp"
#include "io/sealed_packet.hpp"

namespace keel::io {

struct ReplicationLinkOptions {
  std::string volume;
  std::uint64_t volume_bytes = 0;
  NodeId self = kNoNode;
  NodeId peer = kNoNode;
  std::string self_address;  // IP literal this node listens on
  std::string peer_address;
  std::uint16_t port = 0;
  ClusterKey key{};
  std::uint32_t retry_ms = 200;
  std::uint32_t user_timeout_ms = 5000;
};

struct ReplicationLinkStats {
  std::uint64_t connects = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t malformed = 0;
};

class ReplicationLink {
 public:
  struct Handlers {
    std::function<void()> connected;
    std::function<void(const volume::PeerMessage&)> message;
    std::function<void(const std::string& why)> disconnected;
  };

  static Result<std::unique_ptr<ReplicationLink>> open(asio::io_context& io,
                                                       ReplicationLinkOptions options,
                                                       Handlers handlers);
  ~ReplicationLink();
  ReplicationLink(const ReplicationLink&) = delete;
  ReplicationLink& operator=(const ReplicationLink&) = delete;

  void start();
  bool connected() const;
  // Queues a frame; dropped (with nothing said) when not connected: the replica learns of the
  // loss through disconnected() and resyncs from its bitmap.
  void send(const volume::PeerMessage& message);
  // The peer is back (the ring's view holds it again): the dialing side dials at once rather
  // than at its next retry, so that a resync starts without waiting up to retry_ms. Nothing
  // when connected, already dialing, or on the listening side.
  void dial_now();
  // Drops the current connection (the dialing side retries after retry_ms).
  void drop(const std::string& why);
  // Stops for good: no more handlers are called.
  void close();
  const ReplicationLinkStats& stats() const { return stats_; }
  std::size_t queued_bytes() const { return queued_bytes_; }

 private:
  class Connection;
  ReplicationLink(asio::io_context& io, ReplicationLinkOptions options, Handlers handlers);
  bool dials() const { return options_.self < options_.peer; }
  Result<Ok> listen();
  void accept();
  void dial();
  void schedule_dial();
  void on_authenticated(const std::shared_ptr<Connection>& connection);
  void on_closed(const Connection* connection, const std::string& why);

  asio::io_context& io_;
  ReplicationLinkOptions options_;
  Handlers handlers_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  asio::steady_timer retry_timer_;
  AcceptRetry accept_retry_;                            // the pause after a failed accept
  asio::steady_timer connect_timer_;                    // bounds a connect in progress
  std::shared_ptr<asio::ip::tcp::socket> dial_socket_;  // the connect in progress, if any
  // Dialing side: the connection, authenticated or authenticating. Listening side: the
  // authenticated connection only; pending_ holds those still authenticating.
  std::shared_ptr<Connection> current_;
  std::vector<std::shared_ptr<Connection>> pending_;
  ReplicationLinkStats stats_;
  std::size_t queued_bytes_ = 0;
  bool closed_ = false;
  bool dialing_ = false;  // a connect is under way (current_ is set only once it succeeds)
  friend class Connection;
};

}  // namespace keel::io
