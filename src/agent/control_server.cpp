#include "agent/control_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/control_protocol.hpp"
#include "core/common/assert.hpp"
#include "core/ring/group_wire.hpp"
#include "io/errno_text.hpp"
#include "io/unix_socket_path.hpp"

namespace keel::agent {

using io::errno_text;

using nlohmann::json;

namespace {

constexpr mode_t kSocketDirectoryMode = 0755;
constexpr mode_t kSocketMode = 0600;

// mkdir -p for the directory holding `path`; directories it creates get mode 0755.
Result<Ok> make_parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Ok{};
  const std::string parent = path.substr(0, slash);
  for (std::size_t next = parent.find('/', 1);; next = parent.find('/', next + 1)) {
    const std::string prefix = parent.substr(0, next);
    if (::mkdir(prefix.c_str(), kSocketDirectoryMode) != 0 && errno != EEXIST) {
      return Error{"cannot create directory " + prefix + ": " + errno_text()};
    }
    if (next == std::string::npos) break;
  }
  struct stat info {};
  if (::stat(parent.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return Error{parent + " is not a directory"};
  }
  return Ok{};
}

// The request's "group", or an error message.
std::optional<std::string> group_of(const json& request, std::string& error) {
  const auto group = request.find("group");
  if (group == request.end() || !group->is_string()) {
    error = "the request needs \"group\": a string";
    return std::nullopt;
  }
  const std::string& name = group->get_ref<const std::string&>();
  if (auto problem = ring::check_group_name(name)) {
    error = *problem;
    return std::nullopt;
  }
  return name;
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::open(asio::io_context& io,
                                                           const std::string& path,
                                                           ControlHandler& handler,
                                                           std::chrono::milliseconds request_wait) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{"control socket path '" + path + "' must have 1 to " +
                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes"};
  }
  if (auto made = make_parent_directory(path); !made.ok()) return made.error();
  if (auto cleared = io::clear_socket_path(path, "control socket", " (a running keel agent?)",
                                           "; remove it or set [agent] control_socket");
      !cleared.ok())
    return cleared.error();
  std::unique_ptr<ControlServer> server(new ControlServer(io, path, handler, request_wait));
  if (auto bound = server->bind(); !bound.ok()) return bound.error();
  return server;
}

ControlServer::ControlServer(asio::io_context& io, std::string path, ControlHandler& handler,
                             std::chrono::milliseconds request_wait)
    : path_(std::move(path)),
      handler_(handler),
      request_wait_(request_wait),
      acceptor_(io),
      accept_retry_(io, "control socket " + path_) {}

ControlServer::~ControlServer() { close(); }

Result<Ok> ControlServer::bind() {
  const asio::local::stream_protocol::endpoint endpoint(path_);
  asio::error_code error;
  acceptor_.open(endpoint.protocol(), error);
  if (error) return Error{"cannot create the control socket: " + error.message()};
  // The socket file takes its mode from the umask: 0600 from the start, never briefly wider.
  const mode_t old_mask = ::umask(0777 & ~kSocketMode);
  acceptor_.bind(endpoint, error);
  ::umask(old_mask);
  if (error) return Error{"cannot bind the control socket " + path_ + ": " + error.message()};
  acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) return Error{"cannot listen on " + path_ + ": " + error.message()};
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) return Error{"cannot stat " + path_ + ": " + errno_text()};
  KEEL_ASSERT((info.st_mode & 0777) == kSocketMode);
  socket_inode_ = info.st_ino;
  return Ok{};
}

void ControlServer::start() { accept_next(); }

void ControlServer::accept_next() {
  acceptor_.async_accept(
      [this, alive = std::weak_ptr<int>(alive_)](const asio::error_code& error,
                                                 asio::local::stream_protocol::socket socket) {
        if (alive.expired() || closed_ || error == asio::error::operation_aborted) return;
        if (error) {
          // Out of descriptors, most likely: try again once sessions may have ended.
          accept_retry_.failed(error, [this, alive] {
            if (!alive.expired() && !closed_) accept_next();
          });
          return;
        }
        accept_retry_.succeeded();
        on_accept(std::move(socket));
        accept_next();
      });
}

void ControlServer::on_accept(asio::local::stream_protocol::socket socket) {
  const std::uint64_t id = next_id_++;
  if (sessions_.size() >= kMaxControlSessions) {
    // Not registered: it lives until its error line is written.
    auto refused = std::make_shared<ControlSession>(
        std::move(socket), id, [](ControlSession&, const std::string&) {}, [](ControlSession&) {});
    refused->finish(to_line(
        error_reply("too many control connections (" + std::to_string(kMaxControlSessions) + ")")));
    return;
  }
  // The session may outlive the server (a posted close): it checks `alive` first.
  const std::weak_ptr<int> alive = alive_;
  auto session = std::make_shared<ControlSession>(
      std::move(socket), id,
      [this, alive](ControlSession& s, const std::string& line) {
        if (!alive.expired()) on_line(s, line);
      },
      [this, alive](ControlSession& s) {
        if (!alive.expired()) on_close(s);
      },
      [this, alive](ControlSession& s, const Frame& frame) {
        // A session outliving the server has nowhere to send to: it waits to be closed.
        return alive.expired() ? ControlSession::FrameOutcome::retry : on_frame(s, frame);
      });
  sessions_.emplace(id, session);
  session->set_request_wait(request_wait_);
  session->start();
}

void ControlServer::on_line(ControlSession& session, const std::string& line) {
  // Checked first: parsing what it refuses could hold up the ring for seconds.
  if (auto refused = request_structure_error(line)) {
    session.write_line(to_line(error_reply(*refused)));
    return;
  }
  const json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    session.write_line(to_line(error_reply("a request is one JSON object on one line")));
    return;
  }
  const auto op = request.find("op");
  if (op == request.end() || !op->is_string()) {
    session.write_line(
        to_line(error_reply("a request needs \"op\": status, send, send_stream or listen")));
    return;
  }
  const std::string& name = op->get_ref<const std::string&>();
  if (name == "status") {
    session.write_line(to_line(handler_.status()));
  } else if (name == "send") {
    on_send(session, request);
  } else if (name == "send_stream") {
    on_send_stream(session, request);
  } else if (name == "listen") {
    on_listen(session, request);
  } else {
    // First, since the handler may reply before it returns; each path below writes a reply, which
    // clears it.
    session.defer_reply();
    if (handler_.deferred_command(name, request, reply_later(session))) return;
    if (auto reply = handler_.command(name, request)) {
      session.write_line(to_line(*reply));
    } else {
      session.write_line(
          to_line(error_reply("unknown op \"" + name +
                              "\" (expected status, send, send_stream, listen, vip_status, "
                              "drain or undrain)")));
    }
  }
}

ControlHandler::Reply ControlServer::reply_later(ControlSession& session) {
  // The session may have closed (and the server with it) by the time the answer comes.
  return [weak = session.weak_from_this()](const json& reply) {
    if (const auto alive = weak.lock()) alive->write_line(to_line(reply));
  };
}

void ControlServer::on_send(ControlSession& session, const json& request) {
  std::string error;
  const auto group = group_of(request, error);
  const auto payload = group ? request_payload(request, error) : std::nullopt;
  const auto safe = request.find("safe");
  if (payload && safe != request.end() && !safe->is_boolean()) {
    error = "\"safe\" must be true or false";
  }
  if (!error.empty()) {
    session.write_line(to_line(error_reply(error)));
    return;
  }
  const bool is_safe = safe != request.end() && safe->get<bool>();
  auto sent = handler_.send(*group, *payload, is_safe);
  session.write_line(to_line(sent.ok() ? ok_reply() : error_reply(sent.error().message)));
}

void ControlServer::on_send_stream(ControlSession& session, const json& request) {
  std::string error;
  const auto group = group_of(request, error);
  if (!group) {
    session.write_line(to_line(error_reply(error)));
    return;
  }
  session.write_line(to_line(ok_reply()));
  session.set_sending(*group);
}

ControlSession::FrameOutcome ControlServer::on_frame(ControlSession& session, const Frame& frame) {
  const bool agreed = frame.type == static_cast<std::uint8_t>(FrameType::agreed_message);
  const bool safe = frame.type == static_cast<std::uint8_t>(FrameType::safe_message);
  if (!agreed && !safe) {
    session.finish(to_line(error_reply("unknown send frame type " + std::to_string(frame.type))));
    return ControlSession::FrameOutcome::taken;
  }
  if (handler_.send_queue_full()) return ControlSession::FrameOutcome::retry;
  auto sent = handler_.send(session.group(), Bytes(frame.body.begin(), frame.body.end()), safe);
  if (!sent.ok()) session.finish(to_line(error_reply(sent.error().message)));
  return ControlSession::FrameOutcome::taken;
}

void ControlServer::on_listen(ControlSession& session, const json& request) {
  std::string error;
  const auto group = group_of(request, error);
  if (!group) {
    session.write_line(to_line(error_reply(error)));
    return;
  }
  const auto format = request.find("format");
  const bool binary = format != request.end() && *format == "binary";
  if (format != request.end() && !binary && *format != "json") {
    session.write_line(to_line(error_reply("\"format\" must be \"json\" or \"binary\"")));
    return;
  }
  if (listener_count() >= kMaxListeners) {
    session.write_line(to_line(
        error_reply("too many listeners (" + std::to_string(kMaxListeners) + ") on this agent")));
    return;
  }
  auto& ids = listeners_[*group];
  if (ids.empty()) {
    auto joined = handler_.join(*group);
    if (!joined.ok()) {
      listeners_.erase(*group);
      session.write_line(to_line(error_reply(joined.error().message)));
      return;
    }
  }
  ids.insert(session.id());
  session.set_listening(*group, binary);
  session.write_line(to_line(ok_reply()));
  stream_current_state(session);
}

// A new listener learns where it stands at once: the last regular view, as if just installed,
// and the group's members as if they had all just joined. Later events follow in order.
void ControlServer::stream_current_state(ControlSession& session) {
  if (!last_regular_view_) return;
  session.stream_line(to_line(view_event(*last_regular_view_)));
  const auto members = group_members_.find(session.group());
  if (members == group_members_.end()) return;
  session.stream_line(to_line(
      group_view_event(ring::GroupView{session.group(), members->second, members->second, {}})));
}

void ControlServer::publish_view(const ring::View& view) {
  if (view.regular()) last_regular_view_ = view;
  publish_all(view_event(view));
}

void ControlServer::publish_group_view(const ring::GroupView& view) {
  if (view.members.empty()) {
    group_members_.erase(view.group);
  } else {
    group_members_[view.group] = view.members;
  }
  publish(view.group, group_view_event(view));
}

void ControlServer::on_close(ControlSession& session) {
  const auto it = sessions_.find(session.id());
  if (it == sessions_.end()) return;
  const std::shared_ptr<ControlSession> keep = it->second;  // outlives the erase below
  sessions_.erase(it);
  if (!session.listening()) return;
  auto group = listeners_.find(session.group());
  KEEL_ASSERT(group != listeners_.end());
  group->second.erase(session.id());
  if (!group->second.empty()) return;
  listeners_.erase(group);
  if (!closed_) handler_.leave(session.group());
}

void ControlServer::publish_all(const json& event) {
  std::set<std::uint64_t> ids;
  for (const auto& [group, members] : listeners_) ids.insert(members.begin(), members.end());
  stream_to(std::move(ids), to_line(event));
}

void ControlServer::publish(const std::string& group, const json& event) {
  const auto it = listeners_.find(group);
  if (it == listeners_.end()) return;
  stream_to(it->second, to_line(event));
}

void ControlServer::publish_message(const ring::GroupMessage& message,
                                    const ring::DeliveredMessage& carrier) {
  const auto it = listeners_.find(message.group);
  if (it == listeners_.end()) return;
  // Each format is encoded at most once, and only if a listener reads it.
  std::optional<std::string> line;
  std::optional<std::string> frame;
  for (const std::uint64_t id : it->second) {
    const auto session = sessions_.find(id);
    if (session == sessions_.end()) continue;
    ControlSession& listener = *session->second;
    std::optional<std::string>& encoded = listener.binary_events() ? frame : line;
    if (!encoded) {
      encoded = listener.binary_events() ? message_event_frame(message, carrier)
                                         : to_line(message_event(message, carrier)) + '\n';
    }
    if (listener.stream_encoded(*encoded) == ControlSession::Streamed::disconnected) {
      spdlog::warn("control socket: a listener of group {} fell behind and was disconnected",
                   listener.group());
    }
  }
}

void ControlServer::stream_to(std::set<std::uint64_t> ids, const std::string& line) {
  for (const std::uint64_t id : ids) {
    const auto it = sessions_.find(id);
    if (it == sessions_.end()) continue;
    if (it->second->stream_line(line) == ControlSession::Streamed::disconnected) {
      spdlog::warn("control socket: a listener of group {} fell behind and was disconnected",
                   it->second->group());
    }
  }
}

std::size_t ControlServer::listener_count() const {
  std::size_t count = 0;
  for (const auto& [group, ids] : listeners_) count += ids.size();
  return count;
}

void ControlServer::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  // Each connection learns why it ends (docs/control-protocol.md): one last error line or frame,
  // then the close, at most ControlSession::kCloseGraceMs later for a client that does not read.
  const std::string why = to_line(error_reply("the agent is shutting down"));
  for (auto& [id, session] : std::map(sessions_)) session->finish(why);
  struct stat info {};
  // Remove the file only if it is still ours (never another agent's socket).
  if (socket_inode_ != 0 && ::lstat(path_.c_str(), &info) == 0 && info.st_ino == socket_inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace keel::agent
