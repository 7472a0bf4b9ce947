// Real `keel agent` processes on 127.0.0.x: a SIGTERM makes the agent leave so that the others
// re-form well before the token timeout; the CLI talks to agents; and a config, key or node
// problem makes `keel agent` exit 1 with the reason on one line.
//
// The keel binary is $KEEL_BINARY, else the `keel` beside this test binary's directory (the
// build tree's layout); the tests are skipped, saying so, when neither exists.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "agent_test_support.hpp"
#include "io/boot_epoch.hpp"

extern char** environ;

namespace keel::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Clock;
using testing::in_ring_of;
using testing::Listener;
using testing::TestCluster;
using testing::wait_until;

std::string keel_binary() {
  if (const char* path = std::getenv("KEEL_BINARY")) return path;
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  return (self.parent_path().parent_path() / "keel").string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// This process's environment without systemd's variables, plus `extra` ("NAME=value").
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const std::string name = text.substr(0, text.find('='));
    if (name == "NOTIFY_SOCKET" || name == "WATCHDOG_USEC" || name == "WATCHDOG_PID" ||
        name == "JOURNAL_STREAM") {
      continue;
    }
    out.push_back(text);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

// A child process running keel, killed (SIGKILL) and reaped on destruction if still running.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& output,
        const std::vector<std::string>& extra_environment = {}) {
    std::vector<char*> argv;
    const std::string binary = keel_binary();
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, (output + ".out").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, (output + ".err").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> environment = child_environment(extra_environment);
    std::vector<char*> envp;
    for (std::string& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);
    const int spawned =
        posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) pid_ = -1;
    output_ = output;
  }
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  void signal(int number) const { ::kill(pid_, number); }
  // The exit code once it exits within `timeout`; nullopt if it is still running or was killed.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    std::optional<int> code;
    wait_until(timeout, [&] {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
      pid_ = -1;
      if (WIFEXITED(status)) code = WEXITSTATUS(status);
      return true;
    });
    return code;
  }
  std::string out() const { return read_text(output_ + ".out"); }
  std::string err() const { return read_text(output_ + ".err"); }

 private:
  pid_t pid_ = -1;
  std::string output_;
};

class AgentProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat info {};
    if (::stat(keel_binary().c_str(), &info) != 0) {
      GTEST_SKIP() << "no keel binary at " << keel_binary() << " (build it, or set KEEL_BINARY)";
    }
  }
  // Runs keel to completion (at most 10 s) and returns its exit code.
  int run(const std::vector<std::string>& args, const std::string& output, std::string* err) {
    Child child(args, output);
    const auto code = child.wait_exit(10s);
    if (err) *err = child.err();
    return code.value_or(-1);
  }
};

// The token timeout is long (2 s) so that a re-formation faster than that can only come from
// the leave message, not from the token loss being noticed.
TEST_F(AgentProcess, SigtermLeavesAndTheOthersReformAtOnce) {
  TestCluster cluster(3, "token_timeout_ms = 2000\nconsensus_timeout_ms = 1200\n");
  cluster.write_configs();
  std::vector<std::unique_ptr<Child>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(std::make_unique<Child>(
        std::vector<std::string>{"agent", "--config", cluster.config_path(i)},
        cluster.dir.file("agent" + std::to_string(i))));
  }
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(wait_until(10s,
                           [&] {
                             return in_ring_of(cluster.socket_path(i), {1, 2, 3});
                           }))
        << "node " << i << ": " << agents[i - 1]->err();
  }
  Listener listener(cluster.socket_path(1), "g");
  const auto sent_at = Clock::now();
  agents[2]->signal(SIGTERM);
  ASSERT_TRUE(listener.read_until(5s, [](const json& event) {
    return event["event"] == "view" && event["kind"] == "regular" &&
           event["members"] == json::array({1, 2});
  }));
  const auto reformed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent_at).count();
  std::printf("SIGTERM to new view on the survivors: %lld ms (token timeout 2000 ms)\n",
              static_cast<long long>(reformed_ms));
  RecordProperty("reformed_ms", std::to_string(reformed_ms));
  EXPECT_LT(reformed_ms, 1000);
  EXPECT_EQ(agents[2]->wait_exit(5s), 0);
  EXPECT_FALSE(std::filesystem::exists(cluster.socket_path(3)));  // removed on the way out
  EXPECT_TRUE(in_ring_of(cluster.socket_path(2), {1, 2}));
  // Node 1 recorded the epochs its peers seal with: its next run's replay floors.
  auto floors = io::read_peer_epochs(cluster.dir.file("state-n1"));
  ASSERT_TRUE(floors.ok()) << floors.error().message;
  for (NodeId peer : {2u, 3u}) {
    const std::string boot =
        read_text(cluster.dir.file("state-n" + std::to_string(peer)) + "/" + io::kBootEpochFile);
    EXPECT_EQ(std::to_string(floors.value()[peer]) + "\n", boot) << "node " << peer;
  }
}

TEST_F(AgentProcess, StatusAndRingCommandsTalkToTheAgent) {
  TestCluster cluster(1);
  cluster.write_configs();
  Child agent({"agent", "--config", cluster.config_path(1)}, cluster.dir.file("agent"));
  ASSERT_TRUE(wait_until(10s, [&] { return in_ring_of(cluster.socket_path(1), {1}); }));
  Child listen({"ring", "listen", "g", "--socket", cluster.socket_path(1)},
               cluster.dir.file("listen"));
  ASSERT_TRUE(wait_until(5s, [&] { return listen.out().find("group g [1]") != std::string::npos; }))
      << listen.out() << listen.err();
  std::string err;
  EXPECT_EQ(run({"ring", "send", "g", "hello there", "--config", cluster.config_path(1)},
                cluster.dir.file("send"), &err),
            0)
      << err;
  EXPECT_TRUE(wait_until(5s, [&] {
    return listen.out().find("message g from 1: hello there\n") != std::string::npos;
  })) << listen.out();
  Child status({"status", "--socket", cluster.socket_path(1), "--json"},
               cluster.dir.file("status"));
  ASSERT_EQ(status.wait_exit(10s), 0) << status.err();
  const json parsed = json::parse(status.out());
  EXPECT_EQ(parsed["state"], "operational");
  EXPECT_EQ(parsed["groups"], json::array({"g"}));
  Child table({"status", "--config", cluster.config_path(1)}, cluster.dir.file("table"));
  ASSERT_EQ(table.wait_exit(10s), 0) << table.err();
  EXPECT_NE(table.out().find("state      operational"), std::string::npos) << table.out();
  EXPECT_EQ(run({"ring", "send", "bad group", "x", "--socket", cluster.socket_path(1)},
                cluster.dir.file("bad"), &err),
            1);
  EXPECT_NE(err.find("printable ASCII"), std::string::npos) << err;
}

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : socket_(io_) {
    socket_.open();
    socket_.bind(asio::local::datagram_protocol::endpoint(path));
    socket_.non_blocking(true);
  }
  // The next notification, waiting at most `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout) {
    std::optional<std::string> message;
    wait_until(timeout, [&] {
      char buffer[4096];
      asio::error_code error;
      const std::size_t size = socket_.receive(asio::buffer(buffer), 0, error);
      if (error) return false;
      message = std::string(buffer, size);
      return true;
    });
    return message;
  }

 private:
  asio::io_context io_;
  asio::local::datagram_protocol::socket socket_;
};

TEST_F(AgentProcess, NotifiesSystemdReadyWatchdogAndStopping) {
  TestCluster cluster(1);
  cluster.write_configs();
  const std::string notify_path = cluster.dir.file("notify.sock");
  NotifySocket notify(notify_path);
  Child agent({"agent", "--config", cluster.config_path(1)}, cluster.dir.file("agent"),
              {"NOTIFY_SOCKET=" + notify_path, "WATCHDOG_USEC=200000"});
  const auto ready = notify.next(10s);
  ASSERT_EQ(ready, "READY=1") << agent.err();
  // READY=1 comes only once the control socket answers.
  EXPECT_TRUE(testing::status_of(cluster.socket_path(1)));
  int watchdogs = 0;
  const auto start = Clock::now();
  while (watchdogs < 3 && Clock::now() - start < 2s) {
    const auto message = notify.next(1s);
    if (message == "WATCHDOG=1") ++watchdogs;
  }
  EXPECT_EQ(watchdogs, 3);  // every 100 ms: half of WATCHDOG_USEC
  agent.signal(SIGTERM);
  bool stopping = false;
  while (!stopping) {
    const auto message = notify.next(5s);
    if (!message) break;
    stopping = *message == "STOPPING=1";
  }
  EXPECT_TRUE(stopping);
  EXPECT_EQ(agent.wait_exit(5s), 0);
}

// Expects `keel agent ARGS` to exit 1 with one line on stderr containing `expected`.
void expect_refusal(AgentProcess& test, const std::vector<std::string>& args,
                    const std::string& output, const std::string& expected) {
  std::string err;
  std::vector<std::string> full{"agent"};
  full.insert(full.end(), args.begin(), args.end());
  Child child(full, output);
  const auto code = child.wait_exit(10s);
  err = child.err();
  EXPECT_EQ(code, 1) << err;
  EXPECT_NE(err.find(expected), std::string::npos) << err;
  EXPECT_EQ(err.find("keel agent: "), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  (void)test;
}

TEST_F(AgentProcess, RefusesToStartOnConfigKeyOrNodeProblems) {
  TestCluster cluster(2);
  cluster.write_configs();
  const std::string bad = cluster.dir.file("bad.toml");
  testing::write_file(bad, "[cluster]\nname = \"test\"\nbogus = 1\n");
  expect_refusal(*this, {"--config", bad}, cluster.dir.file("bad"), "bad.toml:");
  expect_refusal(*this, {"--config", cluster.dir.file("missing.toml")}, cluster.dir.file("missing"),
                 "missing.toml");
  expect_refusal(*this, {"--config", cluster.config_path(1), "--node", "nosuch"},
                 cluster.dir.file("node"), "nosuch");
  ::chmod(cluster.key_file.c_str(), 0644);
  expect_refusal(*this, {"--config", cluster.config_path(1)}, cluster.dir.file("mode"),
                 cluster.key_file);
  std::filesystem::remove(cluster.key_file);
  expect_refusal(*this, {"--config", cluster.config_path(1)}, cluster.dir.file("nokey"),
                 cluster.key_file);
}

TEST_F(AgentProcess, UsageErrorsExitTwo) {
  TestCluster cluster(1);
  std::string err;
  EXPECT_EQ(run({"agent", "--no-such-flag"}, cluster.dir.file("usage"), &err), 2) << err;
  EXPECT_EQ(run({"ring", "send", "g"}, cluster.dir.file("usage2"), &err), 2) << err;
  EXPECT_EQ(run({"status", "--socket", "a", "--config", "b"}, cluster.dir.file("usage3"), &err), 2)
      << err;
  EXPECT_EQ(
      run({"status", "--socket", cluster.dir.file("none.sock")}, cluster.dir.file("nosock"), &err),
      1);
  EXPECT_NE(err.find("is `keel agent` running?"), std::string::npos) << err;
}

// CLI11 alone said "A subcommand is required" for a command it did not know.
TEST_F(AgentProcess, AnUnknownCommandIsNamed) {
  TestCluster cluster(1);
  std::string err;
  EXPECT_EQ(run({"bogus"}, cluster.dir.file("unknown"), &err), 2) << err;
  EXPECT_EQ(err.find("keel: unknown command 'bogus'; the commands are: sim, keygen, config, agent, "
                     "status, ring, lab, vip, node, volume\n"),
            0u)
      << err;
  EXPECT_EQ(run({"config", "chek"}, cluster.dir.file("unknown2"), &err), 2) << err;
  EXPECT_EQ(err.find("keel config: unknown command 'chek'; the commands are: check\n"), 0u) << err;
  EXPECT_EQ(run({"config"}, cluster.dir.file("none"), &err), 2) << err;
  EXPECT_NE(err.find("A subcommand is required"), std::string::npos) << err;
}

}  // namespace
}  // namespace keel::agent
