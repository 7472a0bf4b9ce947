// ControlServer: the agent's local control socket (a Unix stream socket).
//
// open() prepares the path: creates a missing parent directory (mode 0755), replaces a stale
// socket file only when nothing listens on it (refusing otherwise, and refusing to touch anything
// that is not a socket), then binds with umask 077 so the socket is created mode 0600: only its
// owner (root by default) can talk to the agent. close() stops accepting, closes every session
// and removes the socket file if it is still the one this server created.
//
// Requests (docs/control-protocol.md): status, send, send_stream, listen. The server parses and
// validates them and calls the ControlHandler; it keeps the listeners per group, asks the handler
// to join a group when its first listener arrives and to leave it when its last one goes, and fans
// events out (a message is encoded once per format, JSON line or binary frame, and only for a
// format some listener of its group reads). Frames from a send_stream session are sent to its
// group; while the handler's send queue is full, the session is told to retry.
// It remembers the last regular view and every group's members as published, so that a listener
// starts with where it stands (that view, and its group's members) rather than waiting for the
// next change. What it remembers is bounded by the group layer's own bounds (kMaxGroupsPerHost per
// node; groups without members are forgotten).
// A failed accept (out of descriptors) is tried again after a pause (io/accept_retry.hpp).
// Bounds: kMaxControlSessions connections, kMaxListeners listeners, kRequestWaitMs for each
// request, and the per-session bounds of ControlSession.
//
// Thread-safety: none; the io_context's thread only. open() changes the process umask for the
// duration of bind().
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/control_protocol.hpp"
#include "agent/control_session.hpp"
#include "core/common/byte_io.hpp"
#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/ring/events.hpp"
#include "core/ring/groups.hpp"
#include "io/accept_retry.hpp"

namespace keel::agent {

// What the control socket asks of the agent.
class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  virtual nlohmann::json status() = 0;
  virtual Result<Ok> send(const std::string& group, const Bytes& payload, bool safe) = 0;
  // Whether send() would fail now only because the send queue is full.
  virtual bool send_queue_full() const { return false; }
  virtual Result<Ok> join(const std::string& group) = 0;
  virtual void leave(const std::string& group) = 0;
  // Any other op answered on this thread: the reply object, or nothing for an unknown op.
  virtual std::optional<nlohmann::json> command(const std::string& op,
                                                const nlohmann::json& request) = 0;
  // Writes the reply to a deferred command on its session, if that is still open.
  using Reply = std::function<void(const nlohmann::json& reply)>;
  // An op whose answer comes from another thread (vip_status, drain, undrain, volume_*): true
  // when `op` is one, and `reply` is then called exactly once on this thread, perhaps before this
  // returns, perhaps much later.
  // The session reads no further request meanwhile; the agent's loop goes on.
  virtual bool deferred_command(const std::string& /*op*/, const nlohmann::json& /*request*/,
                                Reply /*reply*/) {
    return false;
  }
};

class ControlServer {
 public:
  // `request_wait`: how long each connection may take to send its next request
  // (ControlSession::set_request_wait); tests shorten it.
  static Result<std::unique_ptr<ControlServer>> open(
      asio::io_context& io, const std::string& path, ControlHandler& handler,
      std::chrono::milliseconds request_wait = std::chrono::milliseconds(kRequestWaitMs));
  ~ControlServer();

  void start();
  void close();

  // Sends an event line to every listener, or to those of `group`.
  void publish_all(const nlohmann::json& event);
  void publish(const std::string& group, const nlohmann::json& event);
  // A delivered group message, to the listeners of its group.
  void publish_message(const ring::GroupMessage& message, const ring::DeliveredMessage& carrier);
  // The ring's events: published as above, and remembered for listeners that come later.
  void publish_view(const ring::View& view);
  void publish_group_view(const ring::GroupView& view);

  std::size_t session_count() const { return sessions_.size(); }
  std::size_t listener_count() const;
  std::uint64_t accept_failures() const { return accept_retry_.failures(); }

 private:
  ControlServer(asio::io_context& io, std::string path, ControlHandler& handler,
                std::chrono::milliseconds request_wait);
  Result<Ok> bind();
  void accept_next();
  void on_accept(asio::local::stream_protocol::socket socket);
  void on_line(ControlSession& session, const std::string& line);
  static ControlHandler::Reply reply_later(ControlSession& session);
  void on_send(ControlSession& session, const nlohmann::json& request);
  void on_send_stream(ControlSession& session, const nlohmann::json& request);
  ControlSession::FrameOutcome on_frame(ControlSession& session, const Frame& frame);
  void on_listen(ControlSession& session, const nlohmann::json& request);
  void on_close(ControlSession& session);
  void stream_current_state(ControlSession& session);
  void stream_to(std::set<std::uint64_t> ids, const std::string& line);

  std::string path_;
  ControlHandler& handler_;
  std::chrono::milliseconds request_wait_;
  asio::local::stream_protocol::acceptor acceptor_;
  io::AcceptRetry accept_retry_;  // after a failed accept (out of descriptors)
  std::map<std::uint64_t, std::shared_ptr<ControlSession>> sessions_;
  std::map<std::string, std::set<std::uint64_t>> listeners_;  // group -> session ids
  std::optional<ring::View> last_regular_view_;
  std::map<std::string, std::vector<NodeId>> group_members_;  // groups with members, as published
  std::uint64_t next_id_ = 1;
  std::uint64_t socket_inode_ = 0;
  bool closed_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handlers hold it weakly
};

}  // namespace keel::agent
