// ControlSession: one connection to the control socket.
//
// It reads newline-terminated request lines (at most kMaxRequestLineBytes each) and hands each to
// the server, one at a time: the next line is read only once the reply has been written, so a
// client that sends requests without reading replies cannot make the agent buffer them. A session
// that becomes a listener streams event lines; if more than kMaxListenerBacklogBytes are waiting
// for a slow reader, the queued events are dropped, a final error line is sent and the connection
// closes (after at most kCloseGraceMs if the reader never drains it). A listener's further input
// is read and discarded, only to notice when the client goes away.
//
// Lifetime: shared_ptr; pending operations hold a reference. close() is idempotent and calls the
// close handler exactly once, from a posted handler (never from inside a server call).
// Thread-safety: none; the io_context's thread only.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

namespace keel::agent {

class ControlSession : public std::enable_shared_from_this<ControlSession> {
 public:
  using LineHandler = std::function<void(ControlSession& session, const std::string& line)>;
  using CloseHandler = std::function<void(ControlSession& session)>;

  static constexpr int kCloseGraceMs = 2000;

  ControlSession(asio::local::stream_protocol::socket socket, std::uint64_t id, LineHandler on_line,
                 CloseHandler on_close);

  void start();
  // Queues a reply line (newline added).
  void write_line(const std::string& line);
  // Queues an event line for a listener; false if the listener fell too far behind and is
  // being disconnected (the line is dropped then).
  bool stream_line(const std::string& line);
  // Sends `line` as the last one, then closes.
  void finish(const std::string& line);
  void close();

  void set_listening(std::string group);
  bool listening() const { return listening_; }
  const std::string& group() const { return group_; }
  std::uint64_t id() const { return id_; }
  bool closed() const { return closed_; }

 private:
  void read_request();
  void on_request(const asio::error_code& error, std::size_t size);
  void discard_input();
  void write_next();
  void on_written(const asio::error_code& error);
  void close_later();

  asio::local::stream_protocol::socket socket_;
  std::uint64_t id_;
  LineHandler on_line_;
  CloseHandler on_close_;
  std::string input_;
  std::deque<std::string> output_;
  std::size_t output_bytes_ = 0;
  bool writing_ = false;
  bool read_paused_ = false;  // a request waits for its reply to be written
  bool listening_ = false;
  bool finishing_ = false;  // close once the output is written
  bool closed_ = false;
  std::string group_;
  asio::steady_timer grace_timer_;
};

}  // namespace keel::agent
