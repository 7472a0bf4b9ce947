// ControlSession: one connection to the control socket.
//
// It reads newline-terminated request lines (at most kMaxRequestLineBytes each) and hands each to
// the server, one at a time: the next line is read only once the reply has been written, so a
// client that sends requests without reading replies cannot make the agent buffer them. A reply
// may come later than the request's handler (defer_reply(): a volume's thread answers it); the
// next line waits for it all the same. A session that has not sent a whole line within its
// request wait (set_request_wait()) of the start of the read is sent a final error line and
// closed, so that silent clients cannot hold every one of the server's connections. A session
// that becomes a listener streams events, as lines or, for a binary listener, as frames
// (control_frames.hpp); if more than kMaxListenerBacklogBytes are waiting for a slow reader, the
// queued events are dropped, a final error is sent and the connection closes (after at most
// kCloseGraceMs if the reader never drains it). A listener's further input is read and discarded,
// only to notice when the client goes away: the end of that input is not its going away (a client
// may shut down its writing side after the request, as `nc -N` does), a hang-up, an error or a
// failed write is. A session switched to send frames (send_stream) reads frames instead of lines
// and hands each to the server; when the server answers `retry` (the ring's send queue is full),
// the session stops reading and offers the same frame again after kRetryPauseMs, so a bulk sender
// is held back by its socket, never refused.
//
// Output is written in batches: every queued line or frame (up to kMaxWriteBatch) goes out in one
// gathered write.
//
// Lifetime: shared_ptr; pending operations hold a reference. close() is idempotent and calls the
// close handler exactly once, from a posted handler (never from inside a server call).
// Thread-safety: none; the io_context's thread only.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/control_frames.hpp"

namespace keel::agent {

class ControlSession : public std::enable_shared_from_this<ControlSession> {
 public:
  using LineHandler = std::function<void(ControlSession& session, const std::string& line)>;
  using CloseHandler = std::function<void(ControlSession& session)>;
  // What the server did with a frame: took it (or refused it and finished the session), or could
  // not take it yet.
  enum class FrameOutcome { taken, retry };
  using FrameHandler = std::function<FrameOutcome(ControlSession& session, const Frame& frame)>;

  static constexpr int kCloseGraceMs = 2000;
  static constexpr int kRetryPauseMs = 1;
  static constexpr std::size_t kMaxWriteBatch = 64;
  static constexpr std::size_t kReadChunkBytes = 64 * 1024;

  ControlSession(asio::local::stream_protocol::socket socket, std::uint64_t id, LineHandler on_line,
                 CloseHandler on_close, FrameHandler on_frame = nullptr);

  // How long the session may take to send each request line; zero (the default) for as long as
  // it likes. Set before start().
  void set_request_wait(std::chrono::milliseconds wait) { request_wait_ = wait; }
  void start();
  // Queues a reply line (newline added). Replies are lines whatever the session's format.
  void write_line(const std::string& line);
  // The current request's reply will be written later (write_line()); until then no further
  // request is read.
  void defer_reply() { reply_deferred_ = true; }
  // What became of an event offered to a listener: queued; dropped because this very event
  // took the listener past kMaxListenerBacklogBytes, so it is now being disconnected; or
  // dropped because the session was already closing (the disconnection was reported before).
  enum class Streamed { queued, disconnected, dropped };
  // Queues an event for a listener: the JSON text as a line, or as a json_event frame on a binary
  // stream.
  Streamed stream_line(const std::string& line);
  // Queues bytes already in this session's format (a line with its newline, or a frame), with
  // the same bound as stream_line.
  Streamed stream_encoded(std::string bytes);
  // Sends the JSON text `line` as the last event (a line, or a frame once the session carries
  // frames), then closes.
  void finish(const std::string& line);
  void close();

  // Listens to `group`; events are frames when `binary`.
  void set_listening(std::string group, bool binary = false);
  // From the next byte after the current request line on, the input is send frames for `group`
  // (the session must not be listening) and final errors are frames.
  void set_sending(std::string group);
  bool listening() const { return listening_; }
  bool sending() const { return sending_; }
  bool binary_events() const { return binary_events_; }
  const std::string& group() const { return group_; }
  std::uint64_t id() const { return id_; }
  bool closed() const { return closed_; }

 private:
  void read_request();
  void on_request_wait_over();
  void on_request(const asio::error_code& error, std::size_t size);
  void discard_input();
  void wait_for_hang_up();
  void read_frames();
  void take_frames();
  void queue(std::string bytes);
  std::string encode_event(const std::string& line) const;
  void write_next();
  void on_written(const asio::error_code& error, std::size_t entries);
  void close_later();

  asio::local::stream_protocol::socket socket_;
  std::uint64_t id_;
  LineHandler on_line_;
  CloseHandler on_close_;
  FrameHandler on_frame_;
  std::string input_;
  std::deque<std::string> output_;
  std::vector<asio::const_buffer> write_buffers_;  // the batch being written: output_'s front
  std::size_t output_bytes_ = 0;
  std::size_t writing_ = 0;      // entries of output_ in the write under way
  bool read_paused_ = false;     // a request waits for its reply to be written
  bool reply_deferred_ = false;  // ... which has not been queued yet
  bool listening_ = false;
  bool sending_ = false;        // the input is send frames
  bool binary_events_ = false;  // events and the final error are frames
  bool finishing_ = false;      // close once the output is written
  bool closed_ = false;
  std::string group_;
  asio::steady_timer grace_timer_;
  asio::steady_timer retry_timer_;
  std::chrono::milliseconds request_wait_{0};
  asio::steady_timer request_timer_;  // runs while a request line is being read
  bool reading_request_ = false;
};

}  // namespace keel::agent
