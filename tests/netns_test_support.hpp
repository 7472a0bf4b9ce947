// Private network namespaces for tests of kernel-facing code (src/io): each test makes its own,
// named with a per-run unique prefix, and removes it in its fixture's TearDown even on failure.
//
// Code runs inside a namespace on a thread of its own (setns(CLONE_NEWNET) changes only the
// calling thread); a socket opened there stays in that namespace, so the test thread can then use
// it directly.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lab/process.hpp"

namespace keel::testing {

// Why namespace tests cannot run here, or nothing.
inline std::optional<std::string> netns_unavailable_reason() {
  if (::geteuid() != 0) return "not root: the test creates network namespaces";
  auto probe = lab::run_capture({"ip", "netns", "list"}, lab::Milliseconds{10000});
  if (!probe || probe.value().exit_code != 0) return "cannot run `ip netns`";
  return std::nullopt;
}

// "kt" + pid + random hex: unique to this run, short enough for interface names.
inline std::string unique_prefix() {
  std::random_device random;
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04x", static_cast<unsigned>(random() & 0xffff));
  return "kt" + std::to_string(::getpid()) + hex;
}

// Runs `argv`; a failure is a test failure that quotes the command and its stderr.
inline bool run_tool(const std::vector<std::string>& argv) {
  auto result = lab::run_checked(argv, lab::Milliseconds{15000});
  if (!result) ADD_FAILURE() << result.error().message;
  return result.ok();
}

// Runs `argv`, returning its stdout (empty and a test failure on error).
inline std::string tool_output(const std::vector<std::string>& argv) {
  auto result = lab::run_checked(argv, lab::Milliseconds{15000});
  if (!result) {
    ADD_FAILURE() << result.error().message;
    return {};
  }
  return result.value();
}

class TestNamespace {
 public:
  explicit TestNamespace(std::string name) : name_(std::move(name)) {
    created_ = run_tool({"ip", "netns", "add", name_});
  }
  ~TestNamespace() {
    if (created_) run_tool({"ip", "netns", "delete", name_});
  }
  TestNamespace(const TestNamespace&) = delete;
  TestNamespace& operator=(const TestNamespace&) = delete;

  const std::string& name() const { return name_; }
  bool created() const { return created_; }

  // `ip -n NAME args...`
  bool ip(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ip", "-n", name_});
    return run_tool(args);
  }
  std::string ip_output(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ip", "-n", name_});
    return tool_output(args);
  }

  // A veth pair v0, v1, both up, with `address` (a prefix) on v0.
  bool add_veth_pair(const std::string& address) const {
    return ip({"link", "add", "v0", "type", "veth", "peer", "name", "v1"}) &&
           ip({"addr", "add", address, "dev", "v0"}) && ip({"link", "set", "v0", "up"}) &&
           ip({"link", "set", "v1", "up"});
  }

  // Runs `work` on a thread inside the namespace and returns what it returns; nothing (and a
  // test failure) if the thread could not enter the namespace.
  template <typename Work>
  auto run(Work work) const -> std::optional<decltype(work())> {
    std::optional<decltype(work())> result;
    std::string error;
    std::thread thread([&] {
      const int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        error = std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return;
      }
      ::close(fd);
      result.emplace(work());
    });
    thread.join();
    if (!result) ADD_FAILURE() << "cannot enter network namespace " << name_ << ": " << error;
    return result;
  }

 private:
  std::string name_;
  bool created_ = false;
};

// Polls `condition` until it holds or `timeout` passes; the result of the last poll.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds{5000}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return true;
}

}  // namespace keel::testing
