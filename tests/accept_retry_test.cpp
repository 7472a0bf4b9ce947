// Accept loops out of descriptors: with a connection waiting in the backlog and no descriptor
// left for it, every accept fails at once. The loop must wait between tries, not spin.
//
// Each case runs in a forked child, which lowers its own descriptor limit and uses up the rest,
// so that the test process keeps its descriptors; the child's exit code is the verdict.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio.hpp>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "agent/control_server.hpp"
#include "io/nbd_server.hpp"

// Left out of sanitizer builds: their runtime needs descriptors of its own (UBSan's check that
// a vtable is readable opens a pipe), so with none left it reports errors that are not there.
// The release build runs them.
#if !defined(__SANITIZE_ADDRESS__)

namespace keel {
namespace {

constexpr auto kRunFor = std::chrono::milliseconds(350);
// About kRunFor / kAcceptRetryDelay tries; a spinning loop makes thousands.
constexpr std::uint64_t kMostTries = 10;

class NoDevice : public io::BlockDevice {
 public:
  std::uint64_t size_bytes() const override { return 4096; }
  bool writable() const override { return false; }
  bool can_multi_conn() const override { return false; }
  std::string unavailable_reason() const override { return ""; }
  void read(std::uint64_t, std::uint32_t, std::byte*, Done done) override { done(EIO); }
  void write(std::uint64_t, volume::Payload, bool, Done done) override { done(EIO); }
  void flush(Done done) override { done(EIO); }
  void trim(std::uint64_t, std::uint32_t, bool, Done done) override { done(EIO); }
  void write_zeroes(std::uint64_t, std::uint32_t, bool, Done done) override { done(EIO); }
};

class NoHandler : public agent::ControlHandler {
 public:
  nlohmann::json status() override { return {}; }
  Result<Ok> send(const std::string&, const Bytes&, bool) override { return Ok{}; }
  Result<Ok> join(const std::string&) override { return Ok{}; }
  void leave(const std::string&) override {}
  std::optional<nlohmann::json> command(const std::string&, const nlohmann::json&) override {
    return std::nullopt;
  }
};

// In the child: connects to `path` (the connection waits in the backlog), takes every descriptor
// left, runs the loop for kRunFor and returns 0 if `failures()` counted a few tries, not a spin.
int starve_and_count(asio::io_context& io, const std::string& path,
                     const std::function<std::uint64_t()>& failures) {
  const rlimit limit{64, 64};
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
  const int client = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (client < 0 ||
      ::connect(client, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return 11;
  }
  while (::open("/dev/null", O_RDONLY) >= 0) {
  }
  if (errno != EMFILE) return 12;
  io.run_for(kRunFor);
  const std::uint64_t tries = failures();
  std::fprintf(stderr, "accept failures in %lld ms: %llu\n",
               static_cast<long long>(kRunFor.count()), static_cast<unsigned long long>(tries));
  if (tries == 0) return 13;
  return tries <= kMostTries ? 0 : 14;
}

int exit_code_of(pid_t child) {
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string socket_path(const char* name) {
  return "/tmp/keel-accept-" + std::to_string(::getpid()) + "-" + name + ".sock";
}

TEST(AcceptRetry, NbdServerOutOfDescriptorsWaitsBetweenAccepts) {
  const std::string path = socket_path("nbd");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    asio::io_context io;
    NoDevice device;
    io::NbdServerOptions options;
    options.export_name = "vol";
    options.unix_path = path;
    auto server = io::NbdServer::open(io, device, options);
    if (!server.ok()) ::_exit(20);
    server.value()->start();
    const int code =
        starve_and_count(io, path, [&] { return server.value()->stats().accept_failures; });
    ::unlink(path.c_str());
    ::_exit(code);
  }
  EXPECT_EQ(exit_code_of(child), 0);
  ::unlink(path.c_str());
}

TEST(AcceptRetry, ControlServerOutOfDescriptorsWaitsBetweenAccepts) {
  const std::string path = socket_path("control");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    asio::io_context io;
    NoHandler handler;
    auto server = agent::ControlServer::open(io, path, handler);
    if (!server.ok()) ::_exit(20);
    server.value()->start();
    const int code = starve_and_count(io, path, [&] { return server.value()->accept_failures(); });
    ::unlink(path.c_str());
    ::_exit(code);
  }
  EXPECT_EQ(exit_code_of(child), 0);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace keel

#endif  // !defined(__SANITIZE_ADDRESS__)
