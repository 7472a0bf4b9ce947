#include "io/replication_link.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/stream_buffer.hpp"
#include "io/tcp_keepalive.hpp"
#include "io/transfer_whole.hpp"

namespace keel::io {

namespace {

constexpr std::array<char, 8> kGreetingMagic{'K', 'E', 'E', 'L', 'R', 'E', 'P', 'L'};
constexpr std::uint32_t kLinkVersion = 1;
constexpr std::size_t kGreetingNonceBytes = 32;
constexpr std::size_t kGreetingBytes = kGreetingMagic.size() + 4 + 4 + kGreetingNonceBytes;
constexpr std::size_t kProofBytes = crypto_auth_hmacsha256_BYTES;
constexpr std::size_t kMaxGatheredFrames = 64;
constexpr std::size_t kLinkReceiveBytes = 128 * 1024;
constexpr const char* kProofLabel = "keel replication link v1";
// Connections still proving themselves, per link: a newer one pushes out the oldest, so that
// strangers cannot pile them up.
constexpr std::size_t kMaxPendingConnections = 4;

void put_u32(std::uint8_t* out, std::uint32_t value) {
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(value & 0xff);
    value >>= 8;
  }
}

std::uint32_t get_u32(const std::uint8_t* in) {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | in[i];
  return value;
}

using Nonce = std::array<std::uint8_t, kGreetingNonceBytes>;
using Proof = std::array<std::uint8_t, kProofBytes>;

// HMAC over the label, the volume, the verifier's nonce, the prover's nonce and the prover's id:
// a proof made for one connection, direction and volume is worthless for any other.
Proof make_proof(const ClusterKey& key, const std::string& volume, const Nonce& verifier_nonce,
                 const Nonce& prover_nonce, NodeId prover) {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(kProofLabel),
                                std::strlen(kProofLabel) + 1);
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(volume.data()),
                                volume.size() + 0);
  crypto_auth_hmacsha256_update(&state, verifier_nonce.data(), verifier_nonce.size());
  crypto_auth_hmacsha256_update(&state, prover_nonce.data(), prover_nonce.size());
  std::array<std::uint8_t, 4> id{};
  put_u32(id.data(), prover);
  crypto_auth_hmacsha256_update(&state, id.data(), id.size());
  Proof proof{};
  crypto_auth_hmacsha256_final(&state, proof.data());
  return proof;
}

void tune_socket(asio::ip::tcp::socket& socket, std::uint32_t user_timeout_ms) {
  asio::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  const int fd = socket.native_handle();
  const int timeout = static_cast<int>(user_timeout_ms);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof timeout);
  enable_tcp_keepalive(fd, std::max(1, timeout / 3000), 1, 3);
}

}  // namespace

// One TCP connection: the greeting and proofs, then frames both ways. Owned by a shared_ptr that
// every pending handler holds, so a dropped connection lives until its last handler ran.
class ReplicationLink::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ReplicationLink& link, asio::ip::tcp::socket socket)
      : link_(link), socket_(std::move(socket)), handshake_timer_(socket_.get_executor()) {
    randombytes_buf(own_nonce_.data(), own_nonce_.size());
  }

  void start() {
    tune_socket(socket_, link_.options_.user_timeout_ms);
    auto self = shared_from_this();
    // A peer that connects and never proves itself must not hold a slot (or, on the dialing
    // side, the link) for long.
    handshake_timer_.expires_after(std::chrono::milliseconds(link_.options_.user_timeout_ms));
    handshake_timer_.async_wait([self](const asio::error_code& error) {
      if (error || self->closed_ || self->authenticated_) return;
      ++self->link_.stats_.auth_failures;
      self->fail("no proof of the cluster key within " +
                 std::to_string(self->link_.options_.user_timeout_ms) + " ms");
    });
    std::uint8_t* out = greeting_out_.data();
    std::memcpy(out, kGreetingMagic.data(), kGreetingMagic.size());
    put_u32(out + 8, kLinkVersion);
    put_u32(out + 12, link_.options_.self);
    std::memcpy(out + 16, own_nonce_.data(), kGreetingNonceBytes);
    asio::async_write(socket_, asio::buffer(greeting_out_),
                      [self](const asio::error_code& error, std::size_t) {
                        if (error) self->fail("sending the greeting: " + error.message());
                      });
    asio::async_read(socket_, asio::buffer(greeting_in_),
                     [self](const asio::error_code& error, std::size_t) {
                       if (error) return self->fail("reading the greeting: " + error.message());
                       self->on_greeting();
                     });
  }

  void send(const volume::PeerMessage& message) {
    if (closed_) return;
    Frame frame{volume::encode_header(message), nullptr};
    if (const auto* write = std::get_if<volume::DataWrite>(&message)) frame.payload = write->data;
    if (const auto* data = std::get_if<volume::ResyncData>(&message)) frame.payload = data->data;
    const std::size_t bytes = frame.head.size() + (frame.payload ? frame.payload->size() : 0);
    link_.queued_bytes_ += bytes;
    queue_.push_back(std::move(frame));
    if (!writing_) write_some();
  }

  void close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    handshake_timer_.cancel();
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    for (const Frame& frame : queue_) {
      link_.queued_bytes_ -= frame.head.size() + (frame.payload ? frame.payload->size() : 0);
    }
    queue_.clear();
    (void)why;
  }

  bool authenticated() const { return authenticated_; }
  bool closed() const { return closed_; }

 private:
  struct Frame {
    volume::Bytes head;
    volume::Payload payload;
  };

  void fail(const std::string& why) {
    if (closed_) return;
    close(why);
    link_.on_closed(this, why);
  }

  void on_greeting() {
    const std::uint8_t* in = greeting_in_.data();
    if (std::memcmp(in, kGreetingMagic.data(), kGreetingMagic.size()) != 0) {
      ++link_.stats_.auth_failures;
      return fail("the peer is not a keel replication link (bad greeting)");
    }
    if (get_u32(in + 8) != kLinkVersion) {
      ++link_.stats_.auth_failures;
      return fail("the peer speaks replication link version " + std::to_string(get_u32(in + 8)));
    }
    if (get_u32(in + 12) != link_.options_.peer) {
      ++link_.stats_.auth_failures;
      return fail("the peer says it is node " + std::to_string(get_u32(in + 12)) +
                  ", expected node " + std::to_string(link_.options_.peer));
    }
    std::memcpy(peer_nonce_.data(), in + 16, kGreetingNonceBytes);
    proof_out_ = make_proof(link_.options_.key, link_.options_.volume, peer_nonce_, own_nonce_,
                            link_.options_.self);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(proof_out_),
                      [self](const asio::error_code& error, std::size_t) {
                        if (error) self->fail("sending the proof: " + error.message());
                      });
    asio::async_read(socket_, asio::buffer(proof_in_),
                     [self](const asio::error_code& error, std::size_t) {
                       if (error) return self->fail("reading the proof: " + error.message());
                       self->on_proof();
                     });
  }

  void on_proof() {
    const Proof expected = make_proof(link_.options_.key, link_.options_.volume, own_nonce_,
                                      peer_nonce_, link_.options_.peer);
    if (sodium_memcmp(expected.data(), proof_in_.data(), kProofBytes) != 0) {
      ++link_.stats_.auth_failures;
      return fail("the peer's proof does not match the cluster key");
    }
    authenticated_ = true;
    handshake_timer_.cancel();
    link_.on_authenticated(shared_from_this());
    if (!closed_) pump();
  }

  // Parses every whole frame the buffer holds, then receives more; a payload or body larger
  // than what is buffered is read straight into its own buffer.
  void pump() {
    while (!closed_) {
      const auto data = in_.data();
      if (data.size() < volume::kFrameHeaderBytes) return receive_more();
      auto header = volume::decode_frame_header(data.data(), volume::kFrameHeaderBytes);
      if (!header.ok()) return malformed(header.error().message);
      const auto [type, body_bytes] = header.value();
      const bool payload = volume::has_payload(type);
      const std::size_t fixed = payload ? volume::payload_offset(type) : body_bytes;
      if (fixed > body_bytes) return malformed("a frame shorter than its fixed fields");
      const std::size_t head_bytes = volume::kFrameHeaderBytes + fixed;
      const std::size_t rest = body_bytes - fixed;
      head_.resize(head_bytes);
      if (data.size() < head_bytes) {
        if (head_bytes < in_.capacity()) return receive_more();
        // A body larger than the buffer: what is buffered, then the rest straight into head_.
        const std::size_t got = in_.take({head_.data(), head_.size()});
        auto self = shared_from_this();
        asio::async_read(socket_, asio::buffer(head_.data() + got, head_bytes - got),
                         [self, payload, rest](const asio::error_code& error, std::size_t) {
                           if (error) return self->fail(self->read_error(error));
                           if (self->after_head(payload, rest)) self->pump();
                         });
        return;
      }
      in_.take({head_.data(), head_.size()});
      if (!after_head(payload, rest)) return;
    }
  }

  void receive_more() {
    auto self = shared_from_this();
    socket_.async_read_some(in_.space(), [self](const asio::error_code& error, std::size_t count) {
      if (error) return self->fail(self->read_error(error));
      self->in_.commit(count);
      self->pump();
    });
  }

  std::string read_error(const asio::error_code& error) const {
    return error == asio::error::eof ? "the peer closed the connection"
                                     : "receiving: " + error.message();
  }

  // head_ holds the frame's header and fixed fields; delivers the frame now (true) or once its
  // payload has been read (false: pump() resumes then).
  bool after_head(bool payload, std::size_t rest) {
    if (!payload) {
      deliver(nullptr);
      return !closed_;
    }
    auto buffer = std::make_shared<volume::Bytes>(rest);
    const std::size_t got = in_.take({buffer->data(), buffer->size()});
    if (got == rest) {
      deliver(buffer);
      return !closed_;
    }
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(buffer->data() + got, rest - got), TransferWhole{},
                     [self, buffer](const asio::error_code& error, std::size_t) {
                       if (error) return self->fail(self->read_error(error));
                       self->deliver(buffer);
                       self->pump();
                     });
    return false;
  }

  void deliver(volume::Payload payload) {
    const std::uint64_t volume_bytes = link_.options_.volume_bytes;
    auto message = payload ? volume::decode_split(head_.data(), head_.size(), payload, volume_bytes)
                           : volume::decode(head_.data(), head_.size(), volume_bytes);
    if (!message.ok()) return malformed(message.error().message);
    ++link_.stats_.frames_received;
    link_.stats_.bytes_received += head_.size() + (payload ? payload->size() : 0);
    auto self = shared_from_this();
    if (link_.handlers_.message) link_.handlers_.message(message.value());
  }

  void malformed(const std::string& why) {
    ++link_.stats_.malformed;
    spdlog::warn("volume {}: malformed replication frame from node {}: {}", link_.options_.volume,
                 link_.options_.peer, why);
    fail("a malformed frame: " + why);
  }

  void write_some() {
    if (queue_.empty() || closed_) return;
    writing_ = true;
    std::vector<asio::const_buffer> buffers;
    std::size_t frames = 0;
    std::size_t bytes = 0;
    for (const Frame& frame : queue_) {
      if (frames == kMaxGatheredFrames) break;
      buffers.emplace_back(frame.head.data(), frame.head.size());
      bytes += frame.head.size();
      if (frame.payload && !frame.payload->empty()) {
        buffers.emplace_back(frame.payload->data(), frame.payload->size());
        bytes += frame.payload->size();
      }
      ++frames;
    }
    auto self = shared_from_this();
    asio::async_write(socket_, buffers, TransferWhole{},
                      [self, frames, bytes](const asio::error_code& error, std::size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (error) return self->fail("sending: " + error.message());
                        for (std::size_t i = 0; i < frames; ++i) self->queue_.pop_front();
                        self->link_.queued_bytes_ -= bytes;
                        self->link_.stats_.frames_sent += frames;
                        self->link_.stats_.bytes_sent += bytes;
                        self->write_some();
                      });
  }

  ReplicationLink& link_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer handshake_timer_;
  Nonce own_nonce_{};
  Nonce peer_nonce_{};
  std::array<std::uint8_t, kGreetingBytes> greeting_out_{};
  std::array<std::uint8_t, kGreetingBytes> greeting_in_{};
  Proof proof_out_{};
  Proof proof_in_{};
  volume::Bytes head_;
  StreamBuffer in_{kLinkReceiveBytes};
  std::deque<Frame> queue_;
  bool writing_ = false;
  bool authenticated_ = false;
  bool closed_ = false;
};

Result<std::unique_ptr<ReplicationLink>> ReplicationLink::open(asio::io_context& io,
                                                               ReplicationLinkOptions options,
                                                               Handlers handlers) {
  KEEL_ASSERT(options.self != options.peer);
  std::unique_ptr<ReplicationLink> link(
      new ReplicationLink(io, std::move(options), std::move(handlers)));
  if (!link->dials()) {
    if (auto listening = link->listen(); !listening) return listening.error();
  }
  return link;
}

ReplicationLink::ReplicationLink(asio::io_context& io, ReplicationLinkOptions options,
                                 Handlers handlers)
    : io_(io),
      options_(std::move(options)),
      handlers_(std::move(handlers)),
      retry_timer_(io),
      accept_retry_(io, "volume " + options_.volume + ": replication"),
      connect_timer_(io) {}

ReplicationLink::~ReplicationLink() { close(); }

Result<Ok> ReplicationLink::listen() {
  asio::error_code error;
  const auto address = asio::ip::make_address(options_.self_address, error);
  if (error) return Error{"replication address " + options_.self_address + ": " + error.message()};
  const asio::ip::tcp::endpoint endpoint(address, options_.port);
  acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(io_);
  acceptor_->open(endpoint.protocol(), error);
  if (!error) acceptor_->set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_->bind(endpoint, error);
  if (!error) acceptor_->listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return Error{"volume " + options_.volume + ": cannot listen for replication on " +
                 options_.self_address + ":" + std::to_string(options_.port) + ": " +
                 error.message()};
  }
  return Ok{};
}

void ReplicationLink::start() {
  if (dials()) {
    dial();
  } else {
    accept();
  }
}

bool ReplicationLink::connected() const { return current_ && current_->authenticated(); }

void ReplicationLink::accept() {
  if (closed_) return;
  acceptor_->async_accept([this](const asio::error_code& error, asio::ip::tcp::socket socket) {
    if (closed_ || error == asio::error::operation_aborted) return;
    if (error) {
      accept_retry_.failed(error, [this] {
        if (!closed_) accept();
      });
      return;
    }
    accept_retry_.succeeded();
    // Only the peer dials this link: a connection from any other address is closed unheard, so
    // strangers cannot crowd the peer's own connection out of the pending ones below.
    asio::error_code ignored;
    const auto remote = socket.remote_endpoint(ignored);
    asio::error_code unparsed;
    const auto peer = asio::ip::make_address(options_.peer_address, unparsed);
    if (ignored || unparsed || remote.address() != peer) {
      ++stats_.auth_failures;
      spdlog::debug("volume {}: replication connection from {} refused: not node {}'s address",
                    options_.volume, ignored ? std::string("?") : remote.address().to_string(),
                    options_.peer);
      socket.close(ignored);
      accept();
      return;
    }
    // The connection stays pending, beside the current one, until it proves the cluster key:
    // only then does it replace the current one (after a peer restart the old one may not have
    // noticed yet), so that a stranger's connection cannot cut the link.
    if (pending_.size() == kMaxPendingConnections) {
      auto oldest = pending_.front();
      pending_.erase(pending_.begin());
      oldest->close("too many connections waiting to authenticate");
    }
    pending_.push_back(std::make_shared<Connection>(*this, std::move(socket)));
    pending_.back()->start();
    accept();
  });
}

void ReplicationLink::dial_now() {
  if (!dials() || closed_ || current_) return;
  if (dialing_) {
    // A connect sent while the peer was unreachable may wait minutes for its SYN to be
    // retried; the peer is back now, so start afresh.
    if (dial_socket_) {
      asio::error_code ignored;
      dial_socket_->close(ignored);
    }
    return;  // the aborted connect dials again at once
  }
  retry_timer_.cancel();  // its handler sees operation_aborted and does not dial
  dial();
}

void ReplicationLink::dial() {
  if (closed_ || current_ || dialing_) return;
  asio::error_code error;
  const auto address = asio::ip::make_address(options_.peer_address, error);
  KEEL_ASSERT(!error);
  auto socket = std::make_shared<asio::ip::tcp::socket>(io_);
  const asio::ip::tcp::endpoint peer(address, options_.port);
  socket->open(peer.protocol(), error);
  if (!error) {
    // Bind to our own node address so the peer sees the source it expects (several lab hosts
    // share one machine; real hosts have several interfaces).
    socket->bind(asio::ip::tcp::endpoint(asio::ip::make_address(options_.self_address), 0), error);
  }
  if (error) {
    spdlog::warn("volume {}: replication socket: {}", options_.volume, error.message());
    return schedule_dial();
  }
  dialing_ = true;
  dial_socket_ = socket;
  // The kernel retries a SYN for about two minutes; a peer that does not answer within the
  // user timeout is tried again from the start.
  connect_timer_.expires_after(std::chrono::milliseconds(options_.user_timeout_ms));
  connect_timer_.async_wait([socket](const asio::error_code& waited) {
    if (waited) return;
    asio::error_code ignored;
    socket->close(ignored);
  });
  socket->async_connect(peer, [this, socket](const asio::error_code& connect_error) {
    dialing_ = false;
    dial_socket_.reset();
    connect_timer_.cancel();
    if (closed_) return;
    // Aborted: dial_now() closed it to dial afresh, or the connect timer did.
    if (connect_error == asio::error::operation_aborted) return dial();
    if (connect_error) return schedule_dial();
    current_ = std::make_shared<Connection>(*this, std::move(*socket));
    current_->start();
  });
}

void ReplicationLink::schedule_dial() {
  if (closed_) return;
  retry_timer_.expires_after(std::chrono::milliseconds(options_.retry_ms));
  retry_timer_.async_wait([this](const asio::error_code& error) {
    if (!error) dial();
  });
}

void ReplicationLink::on_authenticated(const std::shared_ptr<Connection>& connection) {
  const auto pending = std::find(pending_.begin(), pending_.end(), connection);
  if (pending != pending_.end()) {
    pending_.erase(pending);
    if (current_) drop("a new connection from the peer replaces this one");
    current_ = connection;
  }
  if (connection != current_) return;
  ++stats_.connects;
  spdlog::info("volume {}: replication link to node {} up", options_.volume, options_.peer);
  if (handlers_.connected) handlers_.connected();
}

void ReplicationLink::on_closed(const Connection* connection, const std::string& why) {
  const auto pending =
      std::find_if(pending_.begin(), pending_.end(),
                   [connection](const auto& waiting) { return waiting.get() == connection; });
  if (pending != pending_.end()) {
    spdlog::debug("volume {}: replication connection refused: {}", options_.volume, why);
    pending_.erase(pending);
    return;
  }
  if (connection != current_.get()) return;
  const bool was_up = current_->authenticated();
  current_.reset();
  if (was_up) {
    spdlog::warn("volume {}: replication link to node {} down: {}", options_.volume, options_.peer,
                 why);
    if (handlers_.disconnected) handlers_.disconnected(why);
  } else {
    spdlog::debug("volume {}: replication connection failed: {}", options_.volume, why);
  }
  if (dials()) schedule_dial();
}

void ReplicationLink::send(const volume::PeerMessage& message) {
  if (!connected()) return;
  current_->send(message);
}

void ReplicationLink::drop(const std::string& why) {
  if (!current_) return;
  auto connection = current_;
  connection->close(why);
  on_closed(connection.get(), why);
}

void ReplicationLink::close() {
  if (closed_) return;
  closed_ = true;
  retry_timer_.cancel();
  accept_retry_.cancel();
  connect_timer_.cancel();
  if (dial_socket_) {
    asio::error_code ignored;
    dial_socket_->close(ignored);
  }
  for (const auto& waiting : pending_) waiting->close("closing");
  pending_.clear();
  if (acceptor_) {
    asio::error_code ignored;
    acceptor_->close(ignored);
  }
  if (current_) current_->close("closing");
  current_.reset();
}

}  // namespace keel::io
