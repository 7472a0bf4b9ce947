#include "lab/guarded_lab.hpp"

#include <fmt/format.h>

namespace keel::lab {

GuardedLab::~GuardedLab() {
  if (!lab) return;  // up() failed: it tore down what it built and kept the logs
  const std::string dir = lab->dir();
  auto down = lab->down(!keep_logs);
  if (!down) {
    fmt::print(stderr, "{}: taking the lab down: {}\n", owner, down.error().message);
    return;  // the armed guard tries again when it is destroyed
  }
  if (guard) guard->disarm();
  if (keep_logs) fmt::print(stderr, "{}: the lab's logs are kept in {}\n", owner, dir);
}

Result<Ok> GuardedLab::up(LabOptions options) {
  options.on_claimed = [this](const std::string& dir, const std::string& keel_binary) {
    arm(dir, keel_binary);
  };
  auto made = Lab::up(options);
  if (!made) return made.error();
  lab.emplace(std::move(made.value()));
  return Ok{};
}

void GuardedLab::arm(const std::string& dir, const std::string& keel_binary) {
  if (auto armed = CleanupGuard::arm(keel_binary, dir)) guard.emplace(std::move(armed.value()));
}

}  // namespace keel::lab
