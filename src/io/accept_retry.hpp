// AcceptRetry: what an accept loop does after accept() fails for any reason but its own close.
//
// The usual reasons (EMFILE, ENFILE, ENOBUFS, ENOMEM) leave the pending connection in the
// backlog, so accepting again at once fails again at once: the loop would spin on the io_context
// at full CPU and log every try. Instead the next accept waits kAcceptRetryDelay, which gives
// closing sessions time to free descriptors, and a run of failures logs its first one, then one
// line per kAcceptRetryLogInterval with the count; the first success after a run says so.
//
// Lifetime: the retry's callback runs only if the wait was not cancelled (cancel(), or the
// destructor); a callback must still check that its server is open, as an accept handler does.
// Thread-safety: none; the io_context's thread only.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace keel::io {

constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
constexpr std::chrono::seconds kAcceptRetryLogInterval{60};

class AcceptRetry {
 public:
  // `what` names the listener in the log ("control socket /run/keel/control.sock").
  AcceptRetry(asio::io_context& io, std::string what) : timer_(io), what_(std::move(what)) {}

  // After a failed accept: logs as above, then calls `again` once the delay has passed.
  void failed(const asio::error_code& error, std::function<void()> again);
  // After a successful accept: ends a run of failures.
  void succeeded();
  void cancel() { timer_.cancel(); }

  std::uint64_t failures() const { return failures_; }  // every failed accept so far

 private:
  asio::steady_timer timer_;
  std::string what_;
  std::uint64_t failures_ = 0;
  std::uint64_t run_ = 0;  // failures since the last success
  std::chrono::steady_clock::time_point last_logged_{};
};

}  // namespace keel::io
