// Support for tests of the NBD server: an NbdServer over a FileBlockDevice running in-process on
// a thread of its own (with its own io_context), on a Unix socket in a fresh temporary directory,
// and a raw client for what real clients never send.
//
// The fixture removes everything it made in TearDown, even after a failure: the server thread
// is stopped and joined, the directory removed. Tools run through lab::run_capture, which kills
// a child that outlives its timeout.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "io/block_file.hpp"
#include "io/file_block_device.hpp"
#include "io/nbd_server.hpp"
#include "lab/process.hpp"

namespace keel::testing {

constexpr char kExport[] = "vol";
constexpr lab::Milliseconds kToolTimeout{120000};

// Whether `tool` can be run from PATH.
inline bool have_tool(const std::string& tool) {
  auto result = lab::run_capture({"sh", "-c", "command -v " + tool}, lab::Milliseconds{10000});
  return result.ok() && result.value().exit_code == 0;
}

// Runs `argv`; a failure to start or a timeout is a test failure (an empty result).
inline lab::CommandResult run(const std::vector<std::string>& argv) {
  auto result = lab::run_capture(argv, kToolTimeout);
  if (!result.ok()) {
    ADD_FAILURE() << result.error().message;
    return lab::CommandResult{-1, "", ""};
  }
  return result.value();
}

class NbdServerFixture : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kVolumeBytes = 64ull << 20;

  void SetUp() override {
    char pattern[] = "/tmp/keel-nbd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ + "/nbd.sock";
    data_path_ = dir_ + "/volume.img";
  }

  void TearDown() override {
    stop_server();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Opens the data file and serves it; the test fails if that does not work.
  void start_server(bool read_only = false) {
    io::BlockFileOptions file_options{data_path_, kVolumeBytes, true, false, 4};
    auto file = io::BlockFile::open(io_, file_options);
    ASSERT_TRUE(file.ok()) << file.error().message;
    file_ = std::move(file.value());
    device_ = std::make_unique<io::FileBlockDevice>(*file_, read_only);
    io::NbdServerOptions options;
    options.export_name = kExport;
    options.description = "test volume";
    options.unix_path = socket_path_;
    auto server = io::NbdServer::open(io_, *device_, options);
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server.value());
    server_->start();
    work_.emplace(asio::make_work_guard(io_));
    thread_ = std::thread([this] { io_.run(); });
  }

  // Runs `f` on the server's thread and returns its result.
  template <typename F>
  auto on_io(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  void stop_server() {
    if (!thread_.joinable()) return;
    on_io([this] {
      server_->close();
      return 0;
    });
    work_.reset();  // io_.run() returns once pending device completions have run
    thread_.join();
    server_.reset();
    file_->close();
    device_.reset();
    file_.reset();
  }

  io::NbdServerStats stats() {
    return on_io([this] { return server_->stats(); });
  }

  std::string uri() const {
    return "nbd+unix:///" + std::string(kExport) + "?socket=" + socket_path_;
  }

  std::string dir_;
  std::string socket_path_;
  std::string data_path_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::unique_ptr<io::BlockFile> file_;
  std::unique_ptr<io::FileBlockDevice> device_;
  std::unique_ptr<io::NbdServer> server_;
  std::thread thread_;
};

// A blocking client socket for raw protocol bytes; every receive waits at most 20 s.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof address.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    timeval timeout{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool send(std::span<const std::uint8_t> bytes) {
    for (std::size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Exactly `count` bytes, or nothing if the connection ended (or timed out) first.
  std::optional<Bytes> receive(std::size_t count) {
    Bytes bytes(count);
    std::size_t got = 0;
    while (got < count) {
      const ssize_t n = ::recv(fd_, bytes.data() + got, count - got, 0);
      if (n <= 0) return std::nullopt;
      got += static_cast<std::size_t>(n);
    }
    return bytes;
  }
  // True when the server closed the connection (EOF or reset) rather than time out.
  bool closed_by_server() {
    std::uint8_t byte = 0;
    for (;;) {
      const ssize_t n = ::recv(fd_, &byte, 1, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

}  // namespace keel::testing
