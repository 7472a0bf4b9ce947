#include "agent/control_session.hpp"

#include <array>

#include "agent/control_protocol.hpp"
#include "core/common/assert.hpp"

namespace keel::agent {

ControlSession::ControlSession(asio::local::stream_protocol::socket socket, std::uint64_t id,
                               LineHandler on_line, CloseHandler on_close)
    : socket_(std::move(socket)),
      id_(id),
      on_line_(std::move(on_line)),
      on_close_(std::move(on_close)),
      grace_timer_(socket_.get_executor()) {}

void ControlSession::start() { read_request(); }

void ControlSession::read_request() {
  auto self = shared_from_this();
  asio::async_read_until(
      socket_, asio::dynamic_buffer(input_, kMaxRequestLineBytes + 1), '\n',
      [self](const asio::error_code& error, std::size_t size) { self->on_request(error, size); });
}

void ControlSession::on_request(const asio::error_code& error, std::size_t size) {
  if (closed_) return;
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
  } else if (!writing_) {
    read_paused_ = false;
    read_request();
  }
}

void ControlSession::discard_input() {
  auto self = shared_from_this();
  auto buffer = std::make_shared<std::array<char, 4096>>();
  socket_.async_read_some(asio::buffer(*buffer),
                          [self, buffer](const asio::error_code& error, std::size_t) {
                            if (self->closed_) return;
                            if (error) {
                              self->close();
                            } else {
                              self->discard_input();
                            }
                          });
}

void ControlSession::write_line(const std::string& line) {
  if (closed_ || finishing_) return;
  output_.push_back(line + '\n');
  output_bytes_ += output_.back().size();
  if (!writing_) write_next();
}

bool ControlSession::stream_line(const std::string& line) {
  if (closed_ || finishing_) return false;
  if (output_bytes_ + line.size() + 1 <= kMaxListenerBacklogBytes) {
    write_line(line);
    return true;
  }
  // Drop what has not started to go out; the line being written must finish whole.
  while (output_.size() > (writing_ ? 1u : 0u)) {
    output_bytes_ -= output_.back().size();
    output_.pop_back();
  }
  finish(to_line(error_reply("listener fell more than " + std::to_string(kMaxListenerBacklogBytes) +
                             " bytes behind the events and was disconnected")));
  return false;
}

void ControlSession::finish(const std::string& line) {
  if (closed_ || finishing_) return;
  write_line(line);
  finishing_ = true;
  close_later();
}

void ControlSession::write_next() {
  KEEL_ASSERT(!writing_ && !output_.empty());
  writing_ = true;
  auto self = shared_from_this();
  asio::async_write(
      socket_, asio::buffer(output_.front()),
      [self](const asio::error_code& error, std::size_t) { self->on_written(error); });
}

void ControlSession::on_written(const asio::error_code& error) {
  writing_ = false;
  if (closed_) return;
  if (error) {
    close();
    return;
  }
  output_bytes_ -= output_.front().size();
  output_.pop_front();
  if (!output_.empty()) {
    write_next();
  } else if (finishing_) {
    close();
  } else if (read_paused_ && !listening_) {
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

void ControlSession::set_listening(std::string group) {
  KEEL_ASSERT(!listening_);
  listening_ = true;
  group_ = std::move(group);
}

void ControlSession::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  grace_timer_.cancel();
  socket_.close(ignored);  // pending operations complete as aborted; their buffers stay alive
  auto self = shared_from_this();
  asio::post(socket_.get_executor(), [self] { self->on_close_(*self); });
}

}  // namespace keel::agent
