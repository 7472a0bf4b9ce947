#include "io/accept_retry.hpp"

#include <spdlog/spdlog.h>

namespace keel::io {

void AcceptRetry::failed(const asio::error_code& error, std::function<void()> again) {
  ++failures_;
  ++run_;
  const auto now = std::chrono::steady_clock::now();
  if (run_ == 1 || now - last_logged_ >= kAcceptRetryLogInterval) {
    last_logged_ = now;
    spdlog::warn("{}: accept failed ({} times in a row): {}; trying again every {} ms", what_, run_,
                 error.message(), kAcceptRetryDelay.count());
  }
  timer_.expires_after(kAcceptRetryDelay);
  timer_.async_wait([again = std::move(again)](const asio::error_code& waited) {
    if (!waited) again();
  });
}

void AcceptRetry::succeeded() {
  if (run_ == 0) return;
  spdlog::info("{}: accepting again after {} failed accepts", what_, run_);
  run_ = 0;
}

}  // namespace keel::io
