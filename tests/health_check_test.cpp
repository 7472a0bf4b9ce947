// Health checks (src/io/health_check.hpp): the rise/fall counter, command splitting and config
// validation as plain values; tcp, http and exec checks against real listeners and processes on
// loopback, driven by a real io_context.
#include "io/health_check.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

namespace keel::io {
namespace {

using namespace std::chrono_literals;

TEST(HealthCounter, RisesAndFallsOnConsecutiveResults) {
  HealthCounter counter(2, 3);
  EXPECT_EQ(counter.status().state, HealthState::kUnknown);
  EXPECT_FALSE(counter.status().last_result);

  EXPECT_FALSE(counter.record(true, "", 10));
  EXPECT_EQ(counter.status().state, HealthState::kUnknown);
  EXPECT_TRUE(counter.record(true, "", 20));
  EXPECT_EQ(counter.status().state, HealthState::kHealthy);
  EXPECT_EQ(counter.status().last_change_us, 20u);

  // Two failures, a success, then three failures: only the last run of three counts.
  EXPECT_FALSE(counter.record(false, "refused", 30));
  EXPECT_FALSE(counter.record(false, "refused", 40));
  EXPECT_FALSE(counter.record(true, "", 50));
  EXPECT_EQ(counter.status().consecutive_successes, 1u);
  EXPECT_EQ(counter.status().last_error, "refused");  // kept for `keel status`
  EXPECT_FALSE(counter.record(false, "a", 60));
  EXPECT_FALSE(counter.record(false, "b", 70));
  EXPECT_EQ(counter.status().consecutive_failures, 2u);
  EXPECT_TRUE(counter.record(false, "c", 80));
  EXPECT_EQ(counter.status().state, HealthState::kUnhealthy);
  EXPECT_EQ(counter.status().last_error, "c");
  EXPECT_EQ(counter.status().last_change_us, 80u);
  EXPECT_EQ(counter.status().checks, 8u);
  EXPECT_EQ(counter.status().last_check_us, 80u);
  EXPECT_EQ(counter.status().last_result, false);

  EXPECT_FALSE(counter.record(false, "d", 90));  // already unhealthy: no change
  EXPECT_EQ(counter.status().last_change_us, 80u);
}

TEST(HealthCounter, RiseAndFallOfOneFlipAtOnce) {
  HealthCounter counter(1, 1);
  EXPECT_TRUE(counter.record(false, "x", 1));
  EXPECT_EQ(counter.status().state, HealthState::kUnhealthy);
  EXPECT_TRUE(counter.record(true, "", 2));
  EXPECT_EQ(counter.status().state, HealthState::kHealthy);
}

TEST(SplitCommand, SplitsLikeAShellWithoutExpanding) {
  using Words = std::vector<std::string>;
  EXPECT_EQ(split_command("  /usr/bin/check  --fast\t-x ").value(),
            (Words{"/usr/bin/check", "--fast", "-x"}));
  EXPECT_EQ(split_command("sh -c 'test -e /run/ready && exit 0'").value(),
            (Words{"sh", "-c", "test -e /run/ready && exit 0"}));
  EXPECT_EQ(split_command(R"(echo "a \"b\" $HOME" c\ d '')").value(),
            (Words{"echo", "a \"b\" $HOME", "c d", ""}));
  EXPECT_EQ(split_command("a'b'\"c\"d").value(), (Words{"abcd"}));
  EXPECT_FALSE(split_command("").ok());
  EXPECT_FALSE(split_command("   ").ok());
  EXPECT_FALSE(split_command("sh -c 'unterminated").ok());
  EXPECT_FALSE(split_command("echo \"unterminated").ok());
  EXPECT_FALSE(split_command("trailing\\").ok());
}

TEST(HealthCheckConfig, ValidationNamesTheField) {
  HealthCheckConfig config;
  config.host = "127.0.0.1";
  config.port = 80;
  EXPECT_TRUE(validate(config).ok());
  auto bad = config;
  bad.host = "localhost";
  EXPECT_NE(validate(bad).error().message.find("host"), std::string::npos);
  bad = config;
  bad.port = 0;
  EXPECT_FALSE(validate(bad).ok());
  bad = config;
  bad.rise = 0;
  EXPECT_NE(validate(bad).error().message.find("rise"), std::string::npos);
  bad = config;
  bad.timeout_ms = 0;
  EXPECT_FALSE(validate(bad).ok());
  bad = config;
  bad.kind = HealthCheckKind::kHttp;
  bad.path = "health";
  EXPECT_NE(validate(bad).error().message.find("path"), std::string::npos);
  bad.path = "/a b";
  EXPECT_FALSE(validate(bad).ok());
  bad.path = "/";
  bad.expected_status = 42;
  EXPECT_FALSE(validate(bad).ok());
  HealthCheckConfig exec;
  exec.kind = HealthCheckKind::kExec;
  EXPECT_FALSE(validate(exec).ok());
  exec.command = {"true"};
  EXPECT_TRUE(validate(exec).ok());
}

// A temporary file path, removed at the end of the test.
class TempPath {
 public:
  TempPath() {
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("keel-health-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
  }
  ~TempPath() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// A tiny HTTP server on 127.0.0.1: answers every request with `status` (or never answers).
class HttpServer {
 public:
  explicit HttpServer(asio::io_context& io)
      : acceptor_(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept_next();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int status = 200;
  bool silent = false;
  int requests = 0;

 private:
  struct Exchange {
    explicit Exchange(asio::io_context& io) : socket(io) {}
    asio::ip::tcp::socket socket;
    std::string request;
    std::string reply;
  };

  void accept_next() {
    auto exchange = std::make_shared<Exchange>(
        static_cast<asio::io_context&>(acceptor_.get_executor().context()));
    acceptor_.async_accept(exchange->socket, [this, exchange](const asio::error_code& error) {
      if (error) return;
      ++requests;
      if (!silent)
        answer(exchange);
      else
        held_.push_back(exchange);  // kept open, never answered
      accept_next();
    });
  }

  void answer(const std::shared_ptr<Exchange>& exchange) {
    asio::async_read_until(
        exchange->socket, asio::dynamic_buffer(exchange->request), "\r\n\r\n",
        [this, exchange](const asio::error_code& error, std::size_t) {
          if (error) return;
          exchange->reply =
              "HTTP/1.0 " + std::to_string(status) + " Whatever\r\nContent-Length: 0\r\n\r\n";
          asio::async_write(exchange->socket, asio::buffer(exchange->reply),
                            [exchange](const asio::error_code&, std::size_t) {
                              asio::error_code ignored;
                              exchange->socket.shutdown(asio::socket_base::shutdown_both, ignored);
                            });
        });
  }

  asio::ip::tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<Exchange>> held_;
};

class HealthCheckTest : public ::testing::Test {
 protected:
  // Runs the io_context until `condition` holds or the deadline passes.
  bool run_until(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_one_for(10ms);
    }
    return true;
  }

  std::unique_ptr<HealthCheck> make(HealthCheckConfig config) {
    auto created = HealthCheck::create(
        io_, std::move(config), [this](const HealthStatus& s) { changes_.push_back(s.state); });
    KEEL_ASSERT(created.ok());
    return std::move(created.value());
  }

  static HealthCheckConfig quick(HealthCheckKind kind) {
    HealthCheckConfig config;
    config.kind = kind;
    config.host = "127.0.0.1";
    config.interval_ms = 20;
    config.timeout_ms = 2000;
    config.rise = 1;
    config.fall = 1;
    return config;
  }

  // A port on 127.0.0.1 with nothing listening (bound once, then closed).
  std::uint16_t closed_port() {
    asio::ip::tcp::acceptor probe(io_,
                                  asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return probe.local_endpoint().port();
  }

  asio::io_context io_;
  std::vector<HealthState> changes_;
};

TEST_F(HealthCheckTest, TcpIsHealthyWhileSomethingListens) {
  asio::ip::tcp::acceptor listener(io_,
                                   asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto config = quick(HealthCheckKind::kTcp);
  config.port = listener.local_endpoint().port();
  auto check = make(config);
  check->start();
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kHealthy; }));
  EXPECT_EQ(changes_, std::vector<HealthState>{HealthState::kHealthy});
  EXPECT_TRUE(check->status().last_change_us.has_value());
}

TEST_F(HealthCheckTest, TcpRefusedIsUnhealthyWithTheReason) {
  auto config = quick(HealthCheckKind::kTcp);
  config.port = closed_port();
  auto check = make(config);
  check->start();
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_NE(check->status().last_error.find("cannot connect to 127.0.0.1:"), std::string::npos)
      << check->status().last_error;
}

TEST_F(HealthCheckTest, HttpFollowsTheStatusCodeWithRiseAndFall) {
  HttpServer server(io_);
  auto config = quick(HealthCheckKind::kHttp);
  config.port = server.port();
  config.path = "/health";
  config.rise = 2;
  config.fall = 3;
  auto check = make(config);
  check->start();
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kHealthy; }));
  EXPECT_GE(server.requests, 2);
  EXPECT_EQ(check->status().consecutive_successes, 2u);

  server.status = 503;
  ASSERT_TRUE(run_until([&] { return check->status().consecutive_failures >= 1; }));
  EXPECT_EQ(check->status().state, HealthState::kHealthy);  // one failure is not enough
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_EQ(check->status().consecutive_failures, 3u);
  EXPECT_NE(check->status().last_error.find("answered 503, expected 200"), std::string::npos)
      << check->status().last_error;

  server.status = 200;
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kHealthy; }));
  EXPECT_EQ(changes_, (std::vector<HealthState>{HealthState::kHealthy, HealthState::kUnhealthy,
                                                HealthState::kHealthy}));
}

TEST_F(HealthCheckTest, HttpTimesOutOnAServerThatNeverAnswers) {
  HttpServer server(io_);
  server.silent = true;
  auto config = quick(HealthCheckKind::kHttp);
  config.port = server.port();
  config.timeout_ms = 100;
  auto check = make(config);
  check->start();
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_EQ(check->status().last_error, "timed out after 100 ms");
}

TEST_F(HealthCheckTest, ExecFollowsTheExitStatus) {
  TempPath flag;
  auto config = quick(HealthCheckKind::kExec);
  // The shell only because the command asks for one.
  config.command = split_command("sh -c 'test -e " + flag.str() + "'").value();
  config.rise = 2;
  config.fall = 2;
  auto check = make(config);
  check->start();
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_EQ(check->status().last_error, "sh exited with status 1");
  std::ofstream(flag.str()) << "ready\n";
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kHealthy; }));
  EXPECT_EQ(changes_, (std::vector<HealthState>{HealthState::kUnhealthy, HealthState::kHealthy}));
}

TEST_F(HealthCheckTest, ExecOfAMissingProgramFails) {
  auto config = quick(HealthCheckKind::kExec);
  config.command = {"/nonexistent/keel-check"};
  auto check = make(config);
  check->start();
  EXPECT_TRUE(changes_.empty());  // never called back from inside start()
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_NE(check->status().last_error.find("cannot run /nonexistent/keel-check"),
            std::string::npos)
      << check->status().last_error;
}

// True while `pid` exists and is not a zombie.
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

pid_t read_pid(const std::string& path) {
  std::ifstream file(path);
  pid_t pid = 0;
  file >> pid;
  return pid;
}

TEST_F(HealthCheckTest, ExecTimeoutKillsTheCommandAndWhatItStarted) {
  TempPath pids;
  auto config = quick(HealthCheckKind::kExec);
  config.timeout_ms = 300;
  config.interval_ms = 60'000;  // one check only
  // The shell starts a grandchild and waits: killing the shell alone would leave it running.
  config.command = {"/bin/sh", "-c", "sleep 60 & echo $! > " + pids.str() + "; wait"};
  auto check = make(config);
  check->start();
  pid_t sleeper = 0;
  ASSERT_TRUE(run_until([&] { return (sleeper = read_pid(pids.str())) > 0; }));
  EXPECT_TRUE(alive(sleeper));
  ASSERT_TRUE(run_until([&] { return check->status().state == HealthState::kUnhealthy; }));
  EXPECT_EQ(check->status().last_error, "timed out after 300 ms");
  ASSERT_TRUE(run_until([&] { return !alive(sleeper); })) << "pid " << sleeper << " survived";
}

TEST_F(HealthCheckTest, StopKillsARunningCommandAndReapsIt) {
  TempPath pids;
  auto config = quick(HealthCheckKind::kExec);
  config.timeout_ms = 60'000;
  config.command = {"/bin/sh", "-c", "echo $$ > " + pids.str() + "; exec sleep 60"};
  auto check = make(config);
  check->start();
  pid_t child = 0;
  ASSERT_TRUE(run_until([&] { return (child = read_pid(pids.str())) > 0; }));
  check.reset();  // destroys the check while its command runs
  // Reaped, not merely killed: a zombie child of ours would still answer kill(pid, 0).
  ASSERT_TRUE(run_until([&] { return ::kill(child, 0) != 0 && errno == ESRCH; }));
  EXPECT_TRUE(changes_.empty());
}

TEST_F(HealthCheckTest, TheCallbackMayDestroyTheCheck) {
  auto config = quick(HealthCheckKind::kTcp);
  config.port = closed_port();
  std::unique_ptr<HealthCheck> check;
  int calls = 0;
  auto created = HealthCheck::create(io_, config, [&](const HealthStatus&) {
    ++calls;
    check.reset();
  });
  ASSERT_TRUE(created.ok());
  check = std::move(created.value());
  check->start();
  ASSERT_TRUE(run_until([&] { return check == nullptr; }));
  io_.run_for(100ms);  // whatever was pending drains without touching the check
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace keel::io
