#include "keel_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "agent/control_frames.hpp"

namespace keel::bench {
namespace {

constexpr std::size_t kSendWindow = 256;                // unanswered send requests (JSON)
constexpr std::size_t kMaxUnwrittenBytes = 256 * 1024;  // frames queued here, not yet written
constexpr std::int64_t kRetryPauseNs = 500'000;         // after a full send queue
constexpr std::size_t kMaxLatencySamples = 4'000'000;

// A non-blocking Unix stream connection that reads and writes whole lines, and once switched,
// binary frames (agent/control_frames.hpp).
class LineSocket {
 public:
  ~LineSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connect(const std::string& path, std::string& error) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(address.sun_path)) {
      error = "cannot make a socket for " + path;
      return false;
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      error = "cannot connect to " + path + ": " + std::strerror(errno);
      return false;
    }
    return true;
  }
  int fd() const { return fd_; }
  void queue(std::string_view line) { out_.append(line); }
  std::string& output() { return out_; }
  bool wants_write() const { return written_ < out_.size(); }
  std::size_t unwritten() const { return out_.size() - written_; }
  // From the next unread byte on, the input is frames.
  void read_frames() { frames_ = true; }
  bool flush(std::string& error) {
    while (written_ < out_.size()) {
      const ssize_t n = ::send(fd_, out_.data() + written_, out_.size() - written_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        error = std::string("control socket write failed: ") + std::strerror(errno);
        return false;
      }
      written_ += static_cast<std::size_t>(n);
    }
    if (written_ == out_.size()) {
      out_.clear();
      written_ = 0;
    }
    return true;
  }
  // Reads what is there; calls on_line for each complete line and, once switched to frames (which
  // on_line may do), on_frame for each complete frame. False on EOF or error.
  template <typename OnLine, typename OnFrame>
  bool read(OnLine&& on_line, OnFrame&& on_frame, std::string& error) {
    char chunk[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n == 0) {
        error = "the agent closed the control connection";
        return false;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        error = std::string("control socket read failed: ") + std::strerror(errno);
        return false;
      }
      in_.append(chunk, static_cast<std::size_t>(n));
    }
    std::size_t start = 0;
    for (std::size_t end; !frames_ && (end = in_.find('\n', start)) != std::string::npos;
         start = end + 1) {
      on_line(std::string_view(in_).substr(start, end - start));
    }
    while (frames_) {
      const auto parse = agent::parse_frame(
          {reinterpret_cast<const std::uint8_t*>(in_.data()) + start, in_.size() - start},
          std::size_t{64} << 20);
      if (parse.status == agent::FrameParse::Status::invalid) {
        error = "bad frame from the agent: " + parse.error;
        return false;
      }
      if (parse.status == agent::FrameParse::Status::incomplete) break;
      on_frame(parse.frame);
      start += parse.consumed;
    }
    in_.erase(0, start);
    return true;
  }

 private:
  int fd_ = -1;
  bool frames_ = false;
  std::string out_;
  std::size_t written_ = 0;
  std::string in_;
};

std::string payload(int host, std::uint64_t seq, std::int64_t sent_ns, std::size_t size) {
  std::string text =
      "k" + std::to_string(host) + "." + std::to_string(seq) + "." + std::to_string(sent_ns) + ".";
  if (text.size() < size) text.append(size - text.size(), 'x');
  return text;
}

// The send time in one of our payloads ("k<host>.<seq>.<sent_ns>.xxx"), from just after the 'k'.
std::optional<std::int64_t> payload_time(std::string_view rest) {
  for (int dots = 0; dots < 2; ++dots) {
    const auto dot = rest.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    rest = rest.substr(dot + 1);
  }
  std::int64_t value = 0;
  std::size_t digits = 0;
  for (; digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9'; ++digits) {
    value = value * 10 + (rest[digits] - '0');
  }
  if (digits == 0) return std::nullopt;
  return value;
}

// The send time inside a delivered message line, found without a JSON parse: the payload is
// ours and needs no escaping, and parsing every line would make the client the bottleneck.
std::optional<std::int64_t> sent_time(std::string_view line) {
  constexpr std::string_view kKey = "\"message\":\"k";
  const auto at = line.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  return payload_time(line.substr(at + kKey.size()));
}

std::size_t message_bytes(std::string_view line) {
  constexpr std::string_view kKey = "\"message\":\"";
  const auto at = line.find(kKey);
  if (at == std::string_view::npos) return 0;
  const auto end = line.find('"', at + kKey.size());
  return end == std::string_view::npos ? 0 : end - at - kKey.size();
}

}  // namespace

std::int64_t now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

bool StartLine::arrive_and_wait(std::int64_t deadline_ns) {
  std::unique_lock lock(mutex_);
  if (--waiting_ <= 0) changed_.notify_all();
  const auto remaining =
      std::chrono::nanoseconds(std::max<std::int64_t>(0, deadline_ns - now_ns()));
  changed_.wait_for(lock, remaining, [&] { return waiting_ <= 0 || abandoned_; });
  return waiting_ <= 0 && !abandoned_;
}

void StartLine::abandon() {
  std::lock_guard lock(mutex_);
  abandoned_ = true;
  changed_.notify_all();
}

namespace {

class Client {
 public:
  Client(const ClientPlan& plan, StartLine& start) : plan_(plan), start_(start) {
    result_.host = plan.host;
    result_.latencies_ns.reserve(plan.expect ? plan.expect : 1024);
  }

  ClientResult run() {
    deadline_ = now_ns() + plan_.timeout_ns;
    if (!listen_.connect(plan_.socket, result_.error) ||
        !sender_.connect(plan_.socket, result_.error)) {
      start_.abandon();
      return result_;
    }
    if (plan_.binary) {
      listen_.queue(R"({"op":"listen","format":"binary","group":")" + plan_.group + "\"}\n");
      sender_.queue(R"({"op":"send_stream","group":")" + plan_.group + "\"}\n");
    } else {
      listen_.queue(R"({"op":"listen","group":")" + plan_.group + "\"}\n");
      send_ready_ = true;
    }
    if (!wait_for_members() || !start_.arrive_and_wait(deadline_)) {
      if (result_.error.empty()) result_.error = "the other clients never got ready";
      start_.abandon();
      return result_;
    }
    result_.first_send_ns = now_ns();
    while (result_.error.empty() && !finished()) {
      if (now_ns() > deadline_) {
        result_.error = "timed out with " + std::to_string(result_.delivered) + " of " +
                        std::to_string(plan_.expect) + " delivered, " +
                        std::to_string(result_.sent) + " of " + std::to_string(plan_.send) +
                        " sent";
        break;
      }
      queue_sends();
      pump(plan_.rate > 0 || !retry_.empty() ? 1 : 20);
    }
    return result_;
  }

 private:
  bool finished() const {
    if (plan_.stop != nullptr && plan_.send == 0 && plan_.expect == 0) return plan_.stop->load();
    return result_.sent >= plan_.send && result_.delivered >= plan_.expect;
  }

  bool wait_for_members() {
    while (result_.error.empty() && !(group_ready_ && send_ready_)) {
      if (now_ns() > deadline_) {
        result_.error = "group " + plan_.group + " never reached " + std::to_string(plan_.members) +
                        " members on host " + std::to_string(plan_.host);
        return false;
      }
      pump(20);
    }
    return result_.error.empty();
  }

  // Binary: frames go out as fast as the socket takes them; the agent holds a sender back by
  // reading no further while its send queue is full.
  void queue_frames() {
    const std::int64_t now = now_ns();
    while (next_seq_ < plan_.send && sender_.unwritten() < kMaxUnwrittenBytes) {
      if (plan_.rate > 0 &&
          static_cast<double>(next_seq_) >=
              static_cast<double>(now - result_.first_send_ns) * plan_.rate / 1e9) {
        return;
      }
      agent::append_frame(sender_.output(), agent::FrameType::agreed_message,
                          std::string_view(payload(plan_.host, next_seq_++, now_ns(), plan_.size)));
      ++result_.sent;
    }
  }

  void queue_sends() {
    if (plan_.binary) {
      queue_frames();
      return;
    }
    const std::int64_t now = now_ns();
    while (inflight_.size() < kSendWindow) {
      std::uint64_t seq;
      if (!retry_.empty()) {
        if (now < retry_after_ns_) return;
        seq = retry_.front();
        retry_.pop_front();
      } else if (next_seq_ < plan_.send) {
        if (plan_.rate > 0 &&
            static_cast<double>(next_seq_) >=
                static_cast<double>(now - result_.first_send_ns) * plan_.rate / 1e9) {
          return;
        }
        seq = next_seq_++;
      } else {
        return;
      }
      sender_.queue(R"({"op":"send","group":")" + plan_.group + R"(","message":")" +
                    payload(plan_.host, seq, now_ns(), plan_.size) + "\"}\n");
      inflight_.push_back(seq);
    }
  }

  void pump(int timeout_ms) {
    pollfd fds[2] = {{listen_.fd(), POLLIN, 0}, {sender_.fd(), POLLIN, 0}};
    if (listen_.wants_write()) fds[0].events |= POLLOUT;
    if (sender_.wants_write()) fds[1].events |= POLLOUT;
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      result_.error = std::string("poll failed: ") + std::strerror(errno);
      return;
    }
    if (!listen_.flush(result_.error) || !sender_.flush(result_.error)) return;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      listen_.read([&](std::string_view line) { on_event(line); },
                   [&](const agent::Frame& frame) { on_event_frame(frame); }, result_.error);
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      sender_.read([&](std::string_view line) { on_reply(line); },
                   [&](const agent::Frame& frame) {
                     result_.error =
                         "send stream ended: " + std::string(frame.body.begin(), frame.body.end());
                   },
                   result_.error);
    }
  }

  void on_reply(std::string_view line) {
    if (plan_.binary) {  // the reply to send_stream; frames follow
      if (line.find("\"ok\":true") == std::string_view::npos) {
        result_.error = "send_stream refused: " + std::string(line);
        return;
      }
      send_ready_ = true;
      sender_.read_frames();
      return;
    }
    if (inflight_.empty()) {
      result_.error = "a reply to no request: " + std::string(line);
      return;
    }
    const std::uint64_t seq = inflight_.front();
    inflight_.pop_front();
    if (line.find("\"ok\":true") != std::string_view::npos) {
      ++result_.sent;
    } else if (line.find("queue") != std::string_view::npos) {
      ++result_.retried;
      retry_.push_back(seq);
      retry_after_ns_ = now_ns() + kRetryPauseNs;
    } else {
      result_.error = "send refused: " + std::string(line);
    }
  }

  void on_event_frame(const agent::Frame& frame) {
    if (frame.type == static_cast<std::uint8_t>(agent::FrameType::json_event)) {
      on_event(
          std::string_view(reinterpret_cast<const char*>(frame.body.data()), frame.body.size()));
      return;
    }
    const auto event = agent::decode_message_event(frame.body);
    if (frame.type != static_cast<std::uint8_t>(agent::FrameType::message_event) || !event) return;
    const std::string_view text(reinterpret_cast<const char*>(event->payload.data()),
                                event->payload.size());
    const auto sent = text.empty() || text[0] != 'k' ? std::nullopt : payload_time(text.substr(1));
    if (!sent) return;
    record_delivery(now_ns(), *sent, text.size());
  }

  void record_delivery(std::int64_t now, std::int64_t sent, std::size_t bytes) {
    if (result_.latencies_ns.size() < kMaxLatencySamples)
      result_.latencies_ns.push_back(now - sent);
    ++result_.delivered;
    result_.bytes += bytes;
    result_.last_delivery_ns = now;
  }

  void on_event(std::string_view line) {
    const std::int64_t now = now_ns();
    if (plan_.binary && !listening_) {  // the reply to listen; frames follow
      listening_ = true;
      listen_.read_frames();
    }
    if (auto sent = sent_time(line)) {
      record_delivery(now, *sent, message_bytes(line));
      return;
    }
    auto event = nlohmann::json::parse(line, nullptr, false);
    if (!event.is_object()) return;
    if (event.contains("ok") && !event.value("ok", false)) {
      result_.error = "listen refused: " + std::string(line);
      return;
    }
    const std::string kind = event.value("event", "");
    if (kind != "view" && kind != "group_view") return;
    ViewRecord view{now, kind == "view" ? event.value("kind", "") : "group", {}};
    for (const auto& member : event.value("members", nlohmann::json::array())) {
      if (member.is_number_integer()) view.members.push_back(member.get<int>());
    }
    if (kind == "group_view" && static_cast<int>(view.members.size()) >= plan_.members) {
      group_ready_ = true;
    }
    if (plan_.on_view) plan_.on_view(plan_.host, view);
    result_.views.push_back(std::move(view));
  }

  const ClientPlan& plan_;
  StartLine& start_;
  ClientResult result_;
  LineSocket listen_;
  LineSocket sender_;
  std::int64_t deadline_ = 0;
  bool group_ready_ = false;
  bool send_ready_ = false;  // JSON: at once; binary: once send_stream is answered
  bool listening_ = false;   // binary: the listen reply was read
  std::uint64_t next_seq_ = 0;
  std::deque<std::uint64_t> inflight_;
  std::deque<std::uint64_t> retry_;
  std::int64_t retry_after_ns_ = 0;
};

}  // namespace

ClientResult run_keel_client(const ClientPlan& plan, StartLine& start) {
  Client client(plan, start);
  return client.run();
}

}  // namespace keel::bench
