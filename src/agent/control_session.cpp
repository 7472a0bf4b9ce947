#include "agent/control_session.hpp"

#include <array>

#include "agent/control_protocol.hpp"
#include "core/common/assert.hpp"

namespace keel::agent {

ControlSession::ControlSession(asio::local::stream_protocol::socket socket, std::uint64_t id,
                               LineHandler on_line, CloseHandler on_close, FrameHandler on_frame)
    : socket_(std::move(socket)),
      id_(id),
      on_line_(std::move(on_line)),
      on_close_(std::move(on_close)),
      on_frame_(std::move(on_frame)),
      grace_timer_(socket_.get_executor()),
      retry_timer_(socket_.get_executor()),
      request_timer_(socket_.get_executor()) {}

void ControlSession::start() { read_request(); }

void ControlSession::read_request() {
  auto self = shared_from_this();
  reading_request_ = true;
  // From the start of the read, not from the last byte: a client trickling a line in does not
  // hold its connection any longer than a silent one.
  if (request_wait_.count() > 0) {
    request_timer_.expires_after(request_wait_);
    request_timer_.async_wait([self](const asio::error_code& error) {
      if (!error) self->on_request_wait_over();
    });
  }
  asio::async_read_until(
      socket_, asio::dynamic_buffer(input_, kMaxRequestLineBytes + 1), '\n',
      [self](const asio::error_code& error, std::size_t size) { self->on_request(error, size); });
}

void ControlSession::on_request_wait_over() {
  // The line may have come meanwhile, its handler queued before this one.
  if (closed_ || finishing_ || !reading_request_) return;
  finish(to_line(error_reply("no request within " + std::to_string(request_wait_.count()) +
                             " ms; closing the connection")));
}

void ControlSession::on_request(const asio::error_code& error, std::size_t size) {
  reading_request_ = false;
  request_timer_.cancel();
  // Closing, or finishing after the request wait ran out (a request that comes now is not taken).
  if (closed_ || finishing_) return;
  if (error == asio::error::not_found) {
    finish(to_line(error_reply("request line longer than " + std::to_string(kMaxRequestLineBytes) +
                               " bytes")));
    return;
  }
  if (error) {  // end of file or a reset: the client is gone
    close();
    return;
  }
  KEEL_ASSERT(size >= 1 && size <= input_.size() && input_[size - 1] == '\n');
  std::string line = input_.substr(0, size - 1);
  input_.erase(0, size);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  read_paused_ = true;
  if (!line.empty()) on_line_(*this, line);
  if (closed_ || finishing_) return;
  if (listening_) {
    read_paused_ = false;
    input_.clear();
    discard_input();
  } else if (sending_) {
    read_paused_ = false;
    take_frames();  // frames may have come right behind the request line
  } else if (!writing_ && !reply_deferred_) {
    read_paused_ = false;
    read_request();
  }
}

// A listener's input is read only to notice the client going away. Its end is not that: a client
// may shut down its writing side after the request (`nc -N`, a pipe) and read the stream on.
void ControlSession::discard_input() {
  auto self = shared_from_this();
  auto buffer = std::make_shared<std::array<char, 4096>>();
  socket_.async_read_some(asio::buffer(*buffer),
                          [self, buffer](const asio::error_code& error, std::size_t) {
                            if (self->closed_) return;
                            if (error == asio::error::eof) {
                              self->wait_for_hang_up();
                            } else if (error) {
                              self->close();
                            } else {
                              self->discard_input();
                            }
                          });
}

// After the end of the input a read tells nothing more (it returns the end at once), but the
// socket reports a hang-up once the client has shut both sides or closed it, or an error: a wait
// for an error condition (epoll's EPOLLHUP and EPOLLERR) ends with either. A failed write ends
// the session too (on_written()).
void ControlSession::wait_for_hang_up() {
  auto self = shared_from_this();
  socket_.async_wait(asio::socket_base::wait_error, [self](const asio::error_code&) {
    if (!self->closed_) self->close();
  });
}

void ControlSession::read_frames() {
  // Reads straight into the tail of input_; nothing else touches input_ until this completes.
  const std::size_t kept = input_.size();
  input_.resize(kept + kReadChunkBytes);
  auto self = shared_from_this();
  socket_.async_read_some(asio::buffer(input_.data() + kept, kReadChunkBytes),
                          [self, kept](const asio::error_code& error, std::size_t size) {
                            self->input_.resize(kept + (error ? 0 : size));
                            if (self->closed_) return;
                            if (error) {
                              self->close();
                            } else {
                              self->take_frames();
                            }
                          });
}

// Hands every complete frame in input_ to the server, then reads more. input_ holds at most one
// incomplete frame (bounded by kMaxSendFrameBytes) and one read chunk.
void ControlSession::take_frames() {
  KEEL_ASSERT(sending_ && on_frame_);
  std::size_t offset = 0;
  while (!closed_ && !finishing_) {
    const auto rest = std::span<const std::uint8_t>(
        reinterpret_cast<const std::uint8_t*>(input_.data()) + offset, input_.size() - offset);
    const FrameParse parse = parse_frame(rest, kMaxSendFrameBytes);
    if (parse.status == FrameParse::Status::incomplete) break;
    if (parse.status == FrameParse::Status::invalid) {
      finish(to_line(error_reply(parse.error)));
      return;
    }
    if (on_frame_(*this, parse.frame) == FrameOutcome::retry) {
      input_.erase(0, offset);
      auto self = shared_from_this();
      retry_timer_.expires_after(std::chrono::milliseconds(kRetryPauseMs));
      retry_timer_.async_wait([self](const asio::error_code& error) {
        if (!error && !self->closed_) self->take_frames();
      });
      return;
    }
    offset += parse.consumed;
  }
  input_.erase(0, offset);
  if (!closed_ && !finishing_) read_frames();
}

void ControlSession::write_line(const std::string& line) {
  if (closed_ || finishing_) return;
  reply_deferred_ = false;
  std::string bytes;
  bytes.reserve(line.size() + 1);
  bytes.append(line).push_back('\n');
  queue(std::move(bytes));
}

std::string ControlSession::encode_event(const std::string& line) const {
  std::string bytes;
  if (binary_events_) {
    append_frame(bytes, FrameType::json_event, std::string_view(line));
  } else {
    bytes.reserve(line.size() + 1);
    bytes.append(line).push_back('\n');
  }
  return bytes;
}

ControlSession::Streamed ControlSession::stream_line(const std::string& line) {
  if (closed_ || finishing_) return Streamed::dropped;
  return stream_encoded(encode_event(line));
}

ControlSession::Streamed ControlSession::stream_encoded(std::string bytes) {
  if (closed_ || finishing_) return Streamed::dropped;
  if (output_bytes_ + bytes.size() <= kMaxListenerBacklogBytes) {
    queue(std::move(bytes));
    return Streamed::queued;
  }
  // Drop what has not started to go out; the events being written must finish whole.
  while (output_.size() > writing_) {
    output_bytes_ -= output_.back().size();
    output_.pop_back();
  }
  finish(to_line(error_reply("listener fell more than " + std::to_string(kMaxListenerBacklogBytes) +
                             " bytes behind the events and was disconnected")));
  return Streamed::disconnected;
}

void ControlSession::finish(const std::string& line) {
  if (closed_ || finishing_) return;
  queue(encode_event(line));
  finishing_ = true;
  close_later();
}

void ControlSession::queue(std::string bytes) {
  output_bytes_ += bytes.size();
  output_.push_back(std::move(bytes));
  if (!writing_) write_next();
}

void ControlSession::write_next() {
  KEEL_ASSERT(!writing_ && !output_.empty());
  write_buffers_.clear();
  for (const std::string& bytes : output_) {
    if (write_buffers_.size() == kMaxWriteBatch) break;
    write_buffers_.emplace_back(bytes.data(), bytes.size());
  }
  writing_ = write_buffers_.size();
  auto self = shared_from_this();
  // The buffers stay valid: output_ is a deque (push_back keeps references) and its first
  // `writing_` entries are never removed before this completes.
  asio::async_write(socket_, write_buffers_,
                    [self, entries = writing_](const asio::error_code& error, std::size_t) {
                      self->on_written(error, entries);
                    });
}

void ControlSession::on_written(const asio::error_code& error, std::size_t entries) {
  writing_ = 0;
  if (closed_) return;
  if (error) {
    close();
    return;
  }
  for (std::size_t i = 0; i < entries; ++i) {
    output_bytes_ -= output_.front().size();
    output_.pop_front();
  }
  if (!output_.empty()) {
    write_next();
  } else if (finishing_) {
    close();
  } else if (read_paused_ && !listening_ && !sending_) {
    read_paused_ = false;
    read_request();
  }
}

void ControlSession::close_later() {
  auto self = shared_from_this();
  grace_timer_.expires_after(std::chrono::milliseconds(kCloseGraceMs));
  grace_timer_.async_wait([self](const asio::error_code& error) {
    if (!error) self->close();
  });
}

void ControlSession::set_listening(std::string group, bool binary) {
  KEEL_ASSERT(!listening_ && !sending_);
  listening_ = true;
  binary_events_ = binary;
  group_ = std::move(group);
}

void ControlSession::set_sending(std::string group) {
  KEEL_ASSERT(!listening_ && !sending_ && on_frame_);
  sending_ = true;
  binary_events_ = true;
  group_ = std::move(group);
}

void ControlSession::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  grace_timer_.cancel();
  retry_timer_.cancel();
  request_timer_.cancel();
  socket_.close(ignored);  // pending operations complete as aborted; their buffers stay alive
  auto self = shared_from_this();
  asio::post(socket_.get_executor(), [self] { self->on_close_(*self); });
}

}  // namespace keel::agent
