#include "lab/probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/errno_text.hpp"
#include "io/unique_fd.hpp"

namespace keel::lab {
namespace {

using nlohmann::json;

std::string failed(const char* what) { return std::string(what) + ": " + io::errno_text(); }

using Fd = io::UniqueFd;

// One probe in flight, as a small state machine driven by poll().
struct Probe {
  enum class Phase { connecting, reading };
  Phase phase = Phase::connecting;
  Fd socket;
  double started_ms = 0;
  std::string answer;
};

// A target and its probes in flight: at most ProbeOptions::in_flight at once, so that one
// probe waiting out its timeout does not hide what later ones would have seen.
struct Target {
  std::string name;
  sockaddr_in address{};
  double next_ms = 0;
  std::vector<Probe> probes;
};

void serve_one(int client) {
  // Long enough for a test to send its request on a connection opened before a handover.
  timeval timeout{10, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char request[4096];
  std::size_t have = 0;
  while (have < sizeof request) {
    const ssize_t n = ::recv(client, request + have, sizeof request - have, 0);
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
    if (std::string_view(request, have).find("\r\n\r\n") != std::string_view::npos) break;
  }
  (void)have;
}

}  // namespace

double realtime_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

Result<Ok> run_http_responder(const ServeOptions& options) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return Error{failed("socket")};
  const int on = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(options.port);
  address.sin_addr.s_addr = htonl(INADDR_ANY);  // the floating addresses come and go
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return Error{failed("bind")};
  }
  if (::listen(listener.get(), 128) != 0) return Error{failed("listen")};
  const std::string body = options.name + "\n";
  const std::string response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (;;) {
    Fd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client.get() < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return Error{failed("accept")};
    }
    // A thread per connection: a client that connected and then went silent (its address moved
    // to another host mid-connection) must not hold up the answers to everyone else.
    std::thread([client = std::move(client), response]() {
      serve_one(client.get());
      (void)::send(client.get(), response.data(), response.size(), MSG_NOSIGNAL);
    }).detach();
  }
}

Result<Ok> run_prober(const ProbeOptions& options) {
  std::FILE* out = std::fopen(options.out.c_str(), "a");
  if (out == nullptr) return Error{failed(("open " + options.out).c_str())};
  std::vector<Target> targets(options.targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    targets[i].name = options.targets[i];
    targets[i].address.sin_family = AF_INET;
    targets[i].address.sin_port = htons(options.port);
    if (inet_pton(AF_INET, options.targets[i].c_str(), &targets[i].address.sin_addr) != 1) {
      std::fclose(out);
      return Error{"not an IPv4 address: " + options.targets[i]};
    }
  }
  const std::size_t in_flight = static_cast<std::size_t>(std::max(1, options.in_flight));
  // Logs the probe and marks it done (socket closed); done probes are swept after each round.
  auto finish = [&](const Target& target, Probe& probe, bool ok, const std::string& detail) {
    const double now = realtime_ms();
    json line{{"t", probe.started_ms},
              {"target", target.name},
              {"ok", ok},
              {"ms", std::round((now - probe.started_ms) * 100) / 100}};
    line[ok ? "host" : "error"] = detail;
    std::fputs((line.dump() + "\n").c_str(), out);
    std::fflush(out);
    probe.socket.reset();
  };
  auto start_probe = [&](Target& target, double now) {
    Probe& probe = target.probes.emplace_back();
    probe.started_ms = now;
    probe.socket = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const int rc = ::connect(probe.socket.get(), reinterpret_cast<const sockaddr*>(&target.address),
                             sizeof target.address);
    if (rc != 0 && errno != EINPROGRESS) finish(target, probe, false, failed("connect"));
  };
  for (;;) {
    const double now = realtime_ms();
    std::vector<pollfd> fds;
    std::vector<std::pair<Target*, Probe*>> polled;
    double wake = now + options.interval_ms;
    for (auto& target : targets) {
      if (target.probes.size() < in_flight && target.next_ms <= now) {
        // With one probe at a time the next starts an interval after this one started or when
        // it ends, whichever is later; with more, every interval.
        target.next_ms = now + options.interval_ms;
        start_probe(target, now);
      }
      if (target.probes.size() < in_flight) wake = std::min(wake, target.next_ms);
      for (auto& probe : target.probes) {
        if (probe.socket.get() < 0) continue;
        if (now - probe.started_ms > options.timeout_ms) {
          finish(
              target, probe, false,
              probe.phase == Probe::Phase::connecting ? "connect: timed out" : "answer: timed out");
          continue;
        }
        wake = std::min(wake, probe.started_ms + options.timeout_ms);
        fds.push_back(
            {probe.socket.get(),
             static_cast<short>(probe.phase == Probe::Phase::connecting ? POLLOUT : POLLIN), 0});
        polled.emplace_back(&target, &probe);
      }
    }
    const int wait_ms = std::max(0, static_cast<int>(wake - realtime_ms()) + 1);
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
      return Error{failed("poll")};
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Target& target = *polled[i].first;
      Probe& probe = *polled[i].second;
      if (probe.phase == Probe::Phase::connecting) {
        int error = 0;
        socklen_t length = sizeof error;
        ::getsockopt(probe.socket.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
          errno = error;
          finish(target, probe, false, failed("connect"));
          continue;
        }
        static const char kRequest[] = "GET / HTTP/1.0\r\nHost: keel-lab\r\n\r\n";
        (void)::send(probe.socket.get(), kRequest, sizeof kRequest - 1, MSG_NOSIGNAL);
        probe.phase = Probe::Phase::reading;
        continue;
      }
      char buffer[2048];
      const ssize_t n = ::recv(probe.socket.get(), buffer, sizeof buffer, 0);
      if (n > 0) {
        probe.answer.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      const auto body = probe.answer.find("\r\n\r\n");
      if (n < 0 || probe.answer.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
        finish(target, probe, false, n < 0 ? failed("answer") : "answer: not HTTP");
        continue;
      }
      std::string host = probe.answer.substr(body + 4);
      while (!host.empty() && (host.back() == '\n' || host.back() == '\r')) host.pop_back();
      finish(target, probe, true, host.empty() ? "?" : host);
    }
    for (auto& target : targets) {
      std::erase_if(target.probes, [](const Probe& probe) { return probe.socket.get() < 0; });
    }
  }
}

Result<Ok> ProbeLog::read_more(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read " + path};
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline yet: the prober is still writing it
    offset_ += line.size() + 1;
    auto value = json::parse(line, nullptr, false);
    if (!value.is_object()) continue;
    ProbeResult result;
    result.t_ms = value.value("t", 0.0);
    result.target = value.value("target", "");
    result.ok = value.value("ok", false);
    result.host = value.value("host", "");
    result.error = value.value("error", "");
    results_.push_back(std::move(result));
  }
  return Ok{};
}

std::map<std::string, TargetSummary> ProbeLog::summarize(double from_ms, double to_ms) const {
  std::map<std::string, TargetSummary> out;
  std::map<std::string, double> failing_since;  // per target: start of the current failure run
  for (const auto& result : results_) {
    if (result.t_ms < from_ms || result.t_ms >= to_ms) continue;
    TargetSummary& summary = out[result.target];
    ++summary.probes;
    if (!result.ok) {
      ++summary.failures;
      failing_since.emplace(result.target, result.t_ms);
      continue;
    }
    ++summary.answered_by[result.host];
    summary.last_host = result.host;
    if (auto since = failing_since.find(result.target); since != failing_since.end()) {
      summary.longest_outage_ms = std::max(summary.longest_outage_ms, result.t_ms - since->second);
      failing_since.erase(since);
    }
  }
  for (const auto& [target, since] : failing_since) {
    out[target].longest_outage_ms = std::max(out[target].longest_outage_ms, to_ms - since);
  }
  return out;
}

std::map<std::string, ProbeResult> ProbeLog::latest(double since_ms) const {
  std::map<std::string, ProbeResult> out;
  for (const auto& result : results_) {
    if (result.t_ms >= since_ms) out[result.target] = result;
  }
  return out;
}

}  // namespace keel::lab
