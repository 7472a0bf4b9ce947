#include "observer.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

namespace keel::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr lab::Milliseconds kPoll{50};

}  // namespace

Holders Observer::holders() const {
  Holders found;
  for (const auto& address : addresses_) found[address];
  for (int host = 1; host <= lab_.host_count(); ++host) {
    auto addresses = lab_.addresses(host);
    if (!addresses) continue;
    for (const auto& address : addresses.value()) {
      if (auto entry = found.find(address); entry != found.end()) entry->second.push_back(host);
    }
  }
  return found;
}

std::string Observer::describe(const Holders& holders) {
  std::string text;
  for (const auto& [address, hosts] : holders) {
    text += address + ":";
    for (int host : hosts) text += " h" + std::to_string(host);
    text += hosts.empty() ? " nobody; " : "; ";
  }
  return text;
}

bool Observer::settled(const Holders& holders) {
  std::map<int, int> counts;
  for (int host = 1; host <= lab_.host_count(); ++host) counts[host] = 0;
  for (const auto& [address, hosts] : holders) {
    if (hosts.size() != 1) return false;
    ++counts[hosts.front()];
  }
  const auto [low, high] =
      std::minmax_element(counts.begin(), counts.end(),
                          [](const auto& a, const auto& b) { return a.second < b.second; });
  if (high->second - low->second > 1) return false;
  if (!read_probes()) return false;
  const auto latest = probes_.latest(lab::realtime_ms() - 1000);
  for (const auto& [address, hosts] : holders) {
    auto found = latest.find(address);
    if (found == latest.end() || !found->second.ok) return false;
    if (found->second.host != "h" + std::to_string(hosts.front())) return false;
  }
  return true;
}

Result<Holders> Observer::wait_settled(lab::Milliseconds hold, lab::Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> since;
  Holders now;
  while (Clock::now() < deadline) {
    now = holders();
    if (!settled(now)) {
      since.reset();
    } else if (!since) {
      since = Clock::now();
    } else if (Clock::now() - *since >= hold) {
      return now;
    }
    std::this_thread::sleep_for(kPoll);
  }
  return Error{"floating IPs did not settle: " + describe(now)};
}

Result<Ok> Observer::wait_served_without(int victim, double since_ms, lab::Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string excluded = "h" + std::to_string(victim);
  while (Clock::now() < deadline) {
    if (auto read = read_probes(); !read) return read;
    const auto latest = probes_.latest(since_ms);
    const bool served = std::all_of(addresses_.begin(), addresses_.end(), [&](const auto& address) {
      auto found = latest.find(address);
      return found != latest.end() && found->second.ok && found->second.host != excluded;
    });
    if (served) return Ok{};
    std::this_thread::sleep_for(lab::Milliseconds{10});
  }
  return Error{"not every address was served by another host than " + excluded + " within " +
               std::to_string(timeout.count()) + " ms: " + describe(holders())};
}

}  // namespace keel::bench
