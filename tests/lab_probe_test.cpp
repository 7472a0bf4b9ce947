// The lab's HTTP responder and prober (src/lab/probe.hpp) on loopback: the responder answers one
// client while another sits silent, and the prober keeps starting probes every interval while
// earlier ones wait out their timeout (what lets bench/vip see an outage's end to one interval).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lab/probe.hpp"

namespace keel::lab {
namespace {

using Clock = std::chrono::steady_clock;

// A child process running `body` until the test ends it (by PID, SIGKILL).
class Child {
 public:
  template <typename Body>
  explicit Child(Body body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      body();
      ::_exit(0);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A loopback listener that completes handshakes (the kernel does) and never answers.
struct SilentListener {
  int fd = -1;
  std::uint16_t port = 0;
  SilentListener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd, 512) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ::close(fd);
      fd = -1;
      return;
    }
    port = ntohs(address.sin_port);
  }
  ~SilentListener() {
    if (fd >= 0) ::close(fd);
  }
};

std::uint16_t free_port() {
  SilentListener probe;
  return probe.port;  // closed again on return; the responder binds it next
}

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in address = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int connect_within(std::uint16_t port, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const int fd = connect_to(port);
    if (fd >= 0 || Clock::now() > deadline) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(LabProbe, ResponderAnswersWhileAnotherClientIsSilent) {
  ServeOptions options;
  options.port = free_port();
  options.name = "h9";
  ASSERT_NE(options.port, 0);
  Child responder([&] { (void)run_http_responder(options); });
  ASSERT_TRUE(responder.started());

  const int silent = connect_within(options.port, std::chrono::seconds(5));
  ASSERT_GE(silent, 0) << "the responder never listened";
  const int asking = connect_to(options.port);
  ASSERT_GE(asking, 0);
  const auto asked = Clock::now();
  const std::string request = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(::send(asking, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string answer;
  char buffer[512];
  for (ssize_t n; (n = ::recv(asking, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, n);
  const auto waited = Clock::now() - asked;
  ::close(asking);
  ::close(silent);

  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("h9"), std::string::npos) << answer;
  // A silent client holds its own connection for up to 200 ms; the other is not kept waiting.
  EXPECT_LT(waited, std::chrono::milliseconds(150));
}

std::vector<double> probe_starts(const std::string& log_path, std::size_t want,
                                 std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    ProbeLog log;
    (void)log.read_more(log_path);
    if (log.results().size() >= want || Clock::now() > deadline) {
      std::vector<double> starts;
      for (const auto& result : log.results()) {
        EXPECT_FALSE(result.ok) << "the listener never answers";
        starts.push_back(result.t_ms);
      }
      std::sort(starts.begin(), starts.end());
      return starts;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

double median_gap(const std::vector<double>& starts) {
  std::vector<double> gaps;
  for (std::size_t i = 1; i < starts.size(); ++i) gaps.push_back(starts[i] - starts[i - 1]);
  std::sort(gaps.begin(), gaps.end());
  return gaps.empty() ? 0 : gaps[gaps.size() / 2];
}

std::string temp_log(const char* name) {
  const auto path = std::filesystem::temp_directory_path() /
                    (std::string("keel-probe-test-") + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove(path);
  return path.string();
}

// Probe starts of a prober with `in_flight` probes at once against a listener that never
// answers (every probe waits out its 60 ms timeout), once `want` are logged.
std::vector<double> silent_probe_starts(int in_flight, std::size_t want, const char* name) {
  SilentListener listener;
  EXPECT_GE(listener.fd, 0);
  ProbeOptions options;
  options.targets = {"127.0.0.1"};
  options.port = listener.port;
  options.interval_ms = 10;
  options.timeout_ms = 60;
  options.in_flight = in_flight;
  options.out = temp_log(name);
  std::vector<double> starts;
  {
    Child prober([&] { (void)run_prober(options); });
    EXPECT_TRUE(prober.started());
    starts = probe_starts(options.out, want, std::chrono::seconds(5));
  }
  std::filesystem::remove(options.out);
  return starts;
}

TEST(LabProbe, OneProbeInFlightWaitsOutEachTimeout) {
  const auto starts = silent_probe_starts(1, 6, "one");
  ASSERT_GE(starts.size(), 6u);
  EXPECT_GE(median_gap(starts), 55.0);
}

TEST(LabProbe, SeveralInFlightStartOneEveryInterval) {
  const auto starts = silent_probe_starts(8, 20, "several");
  ASSERT_GE(starts.size(), 20u);
  EXPECT_LT(median_gap(starts), 20.0);
  // Never more than in_flight at once: each probe lasts a timeout, so at most 8 start per 60 ms.
  for (std::size_t i = 8; i < starts.size(); ++i) EXPECT_GE(starts[i] - starts[i - 8], 59.0);
}

}  // namespace
}  // namespace keel::lab
