#include "io/nbd_connection.hpp"

#include <spdlog/spdlog.h>
#include <sys/sendfile.h>

#include <cerrno>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/transfer_whole.hpp"

namespace keel::io {

using nbd::Action;
using nbd::Command;
using nbd::Request;
using nbd::Verdict;

namespace {
// Replies gathered into one write: enough to amortise the system call under pipelining.
constexpr std::size_t kRepliesPerWrite = 16;
}  // namespace

std::uint32_t to_nbd_error(int error) {
  switch (error) {
    case 0:
      return nbd::kErrorNone;
    case EPERM:
    case EROFS:
    case EBADF:  // a device opened read-only
      return nbd::kEperm;
    case ENOMEM:
      return nbd::kEnomem;
    case EINVAL:
      return nbd::kEinval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:  // the protocol asks for these to be reported as ENOSPC
      return nbd::kEnospc;
    case EOVERFLOW:
      return nbd::kEoverflow;
    case EOPNOTSUPP:
      return nbd::kEnotsup;
    case ESHUTDOWN:
      return nbd::kEshutdown;
    default:
      return nbd::kEio;
  }
}

nbd::ExportInfo NbdShared::export_info() const {
  return nbd::ExportInfo{export_name,
                         description,
                         device.size_bytes(),
                         device.writable(),
                         device.can_multi_conn(),
                         device.unavailable_reason()};
}

NbdConnection::NbdConnection(Socket socket, std::string peer, std::uint64_t id,
                             std::shared_ptr<NbdShared> shared)
    : socket_(std::move(socket)),
      peer_(std::move(peer)),
      id_(id),
      shared_(std::move(shared)),
      handshake_(shared_->export_info()),
      negotiation_timer_(socket_.get_executor()) {}

void NbdConnection::start() {
  // sendfile() must not block the loop when the socket is full (send_file waits instead).
  asio::error_code ignored;
  socket_.native_non_blocking(true, ignored);
  send(Outgoing::with_head(nbd::Handshake::greeting()));
  negotiation_timer_.expires_after(kNbdNegotiationTimeout);
  negotiation_timer_.async_wait([self = shared_from_this()](const asio::error_code& error) {
    const nbd::HandshakeState state = self->handshake_.state();
    if (error || self->closed_ || state == nbd::HandshakeState::transmission ||
        state == nbd::HandshakeState::closed) {
      return;
    }
    self->fail("negotiation not finished within " + std::to_string(kNbdNegotiationTimeout.count()) +
               " ms");
  });
  read_negotiation();
}

void NbdConnection::close() {
  if (closed_) return;
  closed_ = true;
  negotiation_timer_.cancel();
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  replies_.clear();
  KEEL_ASSERT(shared_->stats.connections_open > 0);
  --shared_->stats.connections_open;
  spdlog::debug("nbd: connection {} from {} closed", id_, peer_);
  if (shared_->on_closed) shared_->on_closed(id_);
}

// ---- Negotiation ------------------------------------------------------------------------------

void NbdConnection::read_negotiation() {
  // Never more than the handshake wants: what follows the GO belongs to the request reader.
  const std::size_t wanted = std::min(negotiation_buffer_.size(), handshake_.bytes_wanted());
  KEEL_ASSERT(wanted > 0);
  socket_.async_read_some(
      asio::buffer(negotiation_buffer_.data(), wanted),
      [self = shared_from_this()](const asio::error_code& error, std::size_t count) {
        if (self->closed_) return;
        if (error) return self->on_read_error(error);
        self->on_negotiation_bytes(count);
      });
}

void NbdConnection::on_negotiation_bytes(std::size_t count) {
  handshake_.set_export(shared_->export_info());  // availability may have changed
  auto step = handshake_.feed({negotiation_buffer_.data(), count});
  KEEL_ASSERT(step.consumed == count);
  if (!step.to_send.empty()) send(Outgoing::with_head(std::move(step.to_send)));
  switch (handshake_.state()) {
    case nbd::HandshakeState::transmission:
      negotiation_timer_.cancel();
      session_ = handshake_.session();
      ++shared_->stats.handshakes_completed;
      spdlog::info("nbd: {} connected to export '{}' ({} bytes{}{})", peer_, shared_->export_name,
                   session_.size_bytes, session_.writable ? "" : ", read-only",
                   session_.structured_replies ? ", structured replies" : "");
      return pump();
    case nbd::HandshakeState::closed:
      if (handshake_.close_reason() == nbd::CloseReason::protocol_error) {
        return fail("negotiation: " + handshake_.close_message());
      }
      if (handshake_.close_reason() == nbd::CloseReason::export_refused) {
        ++shared_->stats.handshakes_refused;
        spdlog::info("nbd: {} refused: {}", peer_, handshake_.close_message());
      }
      return close_when_idle();
    default:
      return read_negotiation();
  }
}

// ---- Requests ---------------------------------------------------------------------------------

bool NbdConnection::may_read_more() const {
  const std::size_t backlog = in_flight_ + replies_.size() + writing_.size();
  return !closed_ && !finishing_ && !reading_ &&
         handshake_.state() == nbd::HandshakeState::transmission &&
         backlog < nbd::kMaxRequestsInFlight && buffered_bytes_ < kMaxConnectionBufferBytes;
}

// Parses every whole request the buffer holds while the backlog allows, then receives more.
void NbdConnection::pump() {
  while (may_read_more()) {  // else resumed when a request completes or a reply is written
    if (in_.size() < header_.size()) return receive_more();
    std::memcpy(header_.data(), in_.data().data(), header_.size());
    const auto decoded = nbd::decode_request(header_);
    if (decoded.ok() && !payload_fits(decoded.value())) return;
    in_.consume(header_.size());
    if (!on_header(decoded)) return;
  }
}

// A write's payload is received into a buffer of its full length as soon as its header is read,
// and a read may take one: that buffer must fit under the connection's limit too, unless nothing
// else is held (one request of the largest size always goes). Otherwise the header waits for
// buffers to drain (pump() runs again as requests complete and replies go out).
bool NbdConnection::payload_fits(const Request& request) const {
  if (buffered_bytes_ == 0) return true;
  if (!request.is(Command::write) && !request.is(Command::read)) return true;
  if (request.length > nbd::kMaximumPayloadBytes) return true;  // refused, never buffered
  return buffered_bytes_ + request.length <= kMaxConnectionBufferBytes;
}

void NbdConnection::receive_more() {
  reading_ = true;
  socket_.async_read_some(
      in_.space(), [self = shared_from_this()](const asio::error_code& error, std::size_t count) {
        self->reading_ = false;
        if (self->closed_) return;
        if (error) return self->on_read_error(error);
        self->in_.commit(count);
        self->pump();
      });
}

// True when the next request may be parsed at once; false when the connection is closing or a
// payload is being received (pump() resumes after it).
bool NbdConnection::on_header(const Result<Request>& decoded) {
  if (!decoded.ok()) {
    fail(decoded.error().message);
    return false;
  }
  const Request& request = decoded.value();
  Verdict verdict = nbd::check_request(request, session_);
  if (verdict.action == Action::close) {
    fail(verdict.reason);
    return false;
  }
  if (request.type < nbd::kCommandKinds) {
    ++shared_->stats.requests[request.type];
  } else {
    ++shared_->stats.unknown_requests;
  }
  if (verdict.action == Action::disconnect) {
    // No reply; what is in flight is still answered, then the connection closes.
    spdlog::debug("nbd: {} disconnects", peer_);
    finishing_ = true;
    close_when_idle();
    return false;
  }
  if (verdict.payload_follows && request.length > 0) return read_payload(request, verdict);
  dispatch(request, verdict, nullptr);
  return !closed_;
}

bool NbdConnection::read_payload(const Request& request, Verdict verdict) {
  // The buffer the payload lands in is the one the device and replication share: no copy later.
  auto buffer = std::make_shared<volume::Bytes>(request.length);
  const std::size_t got = in_.take({buffer->data(), buffer->size()});
  if (got == buffer->size()) {
    dispatch(request, verdict, buffer);
    return !closed_;
  }
  buffered_bytes_ += request.length;
  reading_ = true;
  asio::async_read(socket_, asio::buffer(buffer->data() + got, buffer->size() - got),
                   TransferWhole{},
                   [self = shared_from_this(), request, verdict = std::move(verdict), buffer](
                       const asio::error_code& error, std::size_t) {
                     self->reading_ = false;
                     self->buffered_bytes_ -= buffer->size();
                     if (self->closed_) return;
                     if (error) return self->on_read_error(error);
                     self->dispatch(request, verdict, buffer);
                     self->pump();
                   });
  return false;
}

void NbdConnection::dispatch(const Request& request, const Verdict& verdict,
                             volume::Payload payload) {
  if (verdict.action == Action::reply_error) {
    spdlog::debug("nbd: {}: request {} refused: {}", peer_, request.type, verdict.reason);
    return reply_error(request, verdict.error, verdict.reason);
  }
  KEEL_ASSERT(verdict.action == Action::execute);
  execute(request, std::move(payload));
}

void NbdConnection::execute(const Request& request, volume::Payload payload) {
  BlockDevice& device = shared_->device;
  auto done = [self = shared_from_this(), request](int error) {
    self->on_done(request, error, nullptr);
  };
  switch (static_cast<Command>(request.type)) {
    case Command::read:
      return execute_read(request);
    case Command::write:
      KEEL_ASSERT(payload && payload->size() == request.length);
      buffered_bytes_ += request.length;  // until the device is done with it
      ++in_flight_;
      return device.write(request.offset, std::move(payload), request.fua(), std::move(done));
    case Command::flush:
      ++in_flight_;
      return device.flush(std::move(done));
    case Command::trim:
      ++in_flight_;
      return device.trim(request.offset, request.length, request.fua(), std::move(done));
    case Command::write_zeroes:
      ++in_flight_;
      return device.write_zeroes(request.offset, request.length, request.fua(), std::move(done));
    case Command::disconnect:
      break;
  }
  KEEL_ASSERT(false);  // check_request() lets only the commands above through
}

void NbdConnection::execute_read(const Request& request) {
  if (request.length >= kZeroCopyReadBytes) {
    const int fd = shared_->device.read_descriptor(request.offset, request.length);
    if (fd >= 0) {
      ++shared_->stats.zero_copy_reads;
      shared_->stats.bytes_read += request.length;
      const bool structured = session_.structured_replies;
      Outgoing reply = structured ? Outgoing::with_head(nbd::encode_offset_data_header(
                                        request.cookie, request.offset, request.length, false))
                                  : read_reply_head(request);
      reply.file = FileRange{fd, request.offset, request.length, request.cookie, structured};
      return send(std::move(reply));
    }
  }
  auto buffer = std::make_shared<volume::Bytes>(request.length);
  buffered_bytes_ += request.length;
  ++in_flight_;
  std::byte* into = buffer->data();
  shared_->device.read(request.offset, request.length, into,
                       [self = shared_from_this(), request, buffer](int error) {
                         self->on_done(request, error, buffer);
                       });
}

void NbdConnection::on_done(const Request& request, int error,
                            std::shared_ptr<volume::Bytes> data) {
  KEEL_ASSERT(in_flight_ > 0);
  --in_flight_;
  if (request.is(Command::write)) buffered_bytes_ -= request.length;
  if (data && error != 0) buffered_bytes_ -= data->size();  // a failed read sends no data
  if (closed_) return;
  if (error != 0) {
    ++shared_->stats.device_errors;
    reply_error(request, to_nbd_error(error), std::strerror(error));
  } else if (request.is(Command::read)) {
    KEEL_ASSERT(data && data->size() == request.length);
    shared_->stats.bytes_read += request.length;
    Outgoing reply = read_reply_head(request);
    reply.data = std::move(data);
    send(std::move(reply));
  } else {
    if (request.is(Command::write)) shared_->stats.bytes_written += request.length;
    send(Outgoing::with_head(nbd::encode_simple_reply(request.cookie, nbd::kErrorNone)));
  }
  pump();
  close_when_idle();
}

void NbdConnection::reply_error(const Request& request, std::uint32_t error,
                                const std::string& message) {
  KEEL_ASSERT(error != nbd::kErrorNone);
  ++shared_->stats.error_replies;
  // Structured replies are the protocol's way to carry a message, and READ must use them once
  // negotiated; other commands keep simple replies.
  if (session_.structured_replies && request.is(Command::read)) {
    return send(Outgoing::with_head(nbd::encode_error_reply(request.cookie, error, message)));
  }
  send(Outgoing::with_head(nbd::encode_simple_reply(request.cookie, error)));
}

// ---- Writing ----------------------------------------------------------------------------------

void NbdConnection::send(Outgoing reply) {
  if (closed_) return;
  replies_.push_back(std::move(reply));
  write_next();
}

NbdConnection::Outgoing NbdConnection::read_reply_head(const Request& request) const {
  if (session_.structured_replies) {
    return Outgoing::with_head(
        nbd::encode_offset_data_header(request.cookie, request.offset, request.length, true));
  }
  return Outgoing::with_head(nbd::encode_simple_reply(request.cookie, nbd::kErrorNone));
}

void NbdConnection::write_next() {
  if (closed_ || !writing_.empty() || replies_.empty()) return;
  std::vector<asio::const_buffer> buffers;
  FileRange file;
  while (!replies_.empty() && writing_.size() < kRepliesPerWrite && file.fd < 0) {
    writing_.push_back(std::move(replies_.front()));
    replies_.pop_front();
    file = writing_.back().file;  // a reply sent from a file ends the gathered write
  }
  // Once writing_ is complete: a head held inline moves with its reply when writing_ grows.
  for (const Outgoing& reply : writing_) {
    buffers.push_back(reply.head());
    if (reply.data) buffers.emplace_back(reply.data->data(), reply.data->size());
  }
  asio::async_write(socket_, buffers, TransferWhole{},
                    [self = shared_from_this(), file](const asio::error_code& error, std::size_t) {
                      if (self->closed_) return self->after_write();
                      if (error) {
                        spdlog::info("nbd: {}: write failed: {}", self->peer_, error.message());
                        self->after_write();
                        return self->close();
                      }
                      if (file.fd >= 0) return self->send_file(file);
                      self->after_write();
                    });
}

// Sends the rest of a read reply from its file, waiting for room in the socket when it is full.
void NbdConnection::send_file(FileRange range) {
  while (range.length > 0 && !closed_) {
    auto offset = static_cast<off_t>(range.offset);
    const ssize_t sent = ::sendfile(socket_.native_handle(), range.fd, &offset, range.length);
    if (sent > 0) {
      range.offset += static_cast<std::uint64_t>(sent);
      range.length -= static_cast<std::uint32_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) {
      socket_.async_wait(asio::socket_base::wait_write, [self = shared_from_this(),
                                                         range](const asio::error_code& error) {
        if (error && !self->closed_) {
          spdlog::info("nbd: {}: write failed: {}", self->peer_, error.message());
          self->close();
        }
        self->send_file(range);
      });
      return;
    }
    send_file_failed(range, sent < 0 ? errno : 0);
    break;
  }
  if (!closed_ && range.length == 0 && range.structured) {
    replies_.push_front(Outgoing::with_head(nbd::encode_none_reply(range.cookie)));
  }
  after_write();
}

// `error` 0: the file ended before the range did.
void NbdConnection::send_file_failed(const FileRange& range, int error) {
  if (error == EPIPE || error == ECONNRESET) {  // the client left: nothing to answer
    spdlog::info("nbd: {}: write failed: {}", peer_, std::strerror(error));
    return close();
  }
  ++shared_->stats.device_errors;
  const std::string why = error != 0 ? std::strerror(error) : "the volume's file ended early";
  spdlog::warn("nbd: {}: sending a read from the volume's file failed: {}", peer_, why);
  // A simple reply's header said success already: only closing can tell the client otherwise.
  if (!range.structured) return close();
  // The chunk's length was promised: zeroes make it up, then the error ends the reply.
  auto padding = std::make_shared<volume::Bytes>(range.length);
  buffered_bytes_ += padding->size();
  Outgoing pad;
  pad.data = std::move(padding);
  ++shared_->stats.error_replies;
  replies_.push_front(Outgoing::with_head(
      nbd::encode_error_reply(range.cookie, nbd::kEio, "reading the volume failed: " + why)));
  replies_.push_front(std::move(pad));
}

// The gathered write (and its file bytes, if any) is out, or the connection closed under it.
void NbdConnection::after_write() {
  for (const Outgoing& sent : writing_) {
    if (sent.data) buffered_bytes_ -= sent.data->size();
  }
  writing_.clear();
  if (closed_) return;
  write_next();
  pump();
  close_when_idle();
}

void NbdConnection::close_when_idle() {
  if (closed_) return;
  if (handshake_.state() == nbd::HandshakeState::closed) finishing_ = true;
  if (finishing_ && in_flight_ == 0 && replies_.empty() && writing_.empty()) close();
}

void NbdConnection::on_read_error(const asio::error_code& error) {
  if (error == asio::error::eof) {
    spdlog::debug("nbd: {} hung up", peer_);
  } else {
    spdlog::info("nbd: {}: read failed: {}", peer_, error.message());
  }
  close();
}

void NbdConnection::fail(const std::string& why) {
  ++shared_->stats.protocol_errors;
  spdlog::warn("nbd: closing the connection from {}: {}", peer_, why);
  close();
}

}  // namespace keel::io
