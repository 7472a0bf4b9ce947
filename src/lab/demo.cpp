#include "lab/demo.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <thread>

#include "lab/cleanup_guard.hpp"
#include "lab/network.hpp"
#include "lab/ring_clients.hpp"

namespace keel::lab {

namespace {

using Clock = std::chrono::steady_clock;
constexpr Milliseconds kViewTimeout{15000};
constexpr const char* kGroup = "demo";
constexpr std::size_t kShownMessages = 10;

std::vector<int> range(int first, int last) {
  std::vector<int> hosts;
  for (int host = first; host <= last; ++host) hosts.push_back(host);
  return hosts;
}

std::string host_list(const std::vector<int>& hosts) {
  std::string text;
  for (int host : hosts) text += (text.empty() ? "h" : ",h") + std::to_string(host);
  return text;
}

class Demo {
 public:
  explicit Demo(const DemoOptions& options)
      : hosts_(options.hosts),
        pause_(options.pause),
        prefix_(options.prefix),
        start_(Clock::now()) {}
  int run();

 private:
  template <typename... Args>
  void say(fmt::format_string<Args...> format, Args&&... args) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    fmt::print("[{:6.2f}s] {}\n", seconds, fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stdout);
  }
  // A pause before each part, for a person to read the last one (not a wait for a condition).
  void heading(const std::string& text) {
    std::this_thread::sleep_for(pause_);
    fmt::print("\n== {} ==\n", text);
  }

  Result<Ok> build();
  Result<Ok> formation();
  Result<Ok> kill_and_rejoin();
  Result<Ok> partition_and_heal();
  Result<Ok> traffic_and_check();
  Result<Ok> send_and_wait(const std::vector<int>& senders, int each,
                           const std::vector<int>& receivers);
  Result<Milliseconds> time_view(const std::vector<int>& hosts, SteadyTime since);
  void show_views(int host, SteadyTime since);
  void teardown(bool success);

  int hosts_;
  Milliseconds pause_;
  std::string prefix_;
  SteadyTime start_;
  std::optional<Lab> lab_;
  std::optional<CleanupGuard> guard_;
  std::unique_ptr<ListenerSet> listeners_;
  std::unique_ptr<Traffic> traffic_;
};

Result<Ok> Demo::build() {
  fmt::print(
      "keel lab demo: {} hosts on this machine, each a network namespace with its own keel agent, "
      "talking over real UDP through a Linux bridge. Faults are real too: signals to the agents "
      "and nftables rules on the bridge.\n\n",
      hosts_);
  LabOptions options;
  options.hosts = hosts_;
  options.prefix = prefix_;
  options.progress = [this](const std::string& line) { say("lab: {}", line); };
  options.on_claimed = [this](const std::string& dir, const std::string& keel) {
    if (auto armed = CleanupGuard::arm(keel, dir)) guard_.emplace(std::move(armed.value()));
  };
  auto lab = Lab::up(options);
  if (!lab) return lab.error();
  lab_.emplace(std::move(lab.value()));
  listeners_ = std::make_unique<ListenerSet>(*lab_, kGroup);
  traffic_ = std::make_unique<Traffic>(*lab_, kGroup, Milliseconds{0});
  say("lab {} is up; its files are in {}", lab_->state().prefix, lab_->dir());
  return Ok{};
}

Result<Ok> Demo::formation() {
  heading("The ring");
  const auto all = range(1, hosts_);
  if (auto started = listeners_->start_all(all); !started) return started;
  say("a listener on every host: keel ring listen {} --json --socket hN/keel.sock", kGroup);
  auto joined = listeners_->wait_until([&] { return listeners_->joined(all); }, kViewTimeout);
  if (!joined || !joined.value()) return Error{"the listeners did not all join the group"};
  const auto view = listeners_->current_view(1);
  say("every host is in {}: one ring, every host a member", view ? to_string(*view) : "?");
  return send_and_wait(all, 2, all);
}

Result<Ok> Demo::kill_and_rejoin() {
  heading(fmt::format("A host dies: SIGKILL to h{}'s agent", hosts_));
  const auto survivors = range(1, hosts_ - 1);
  const auto killed_at = Clock::now();
  if (auto killed = lab_->kill_agent(hosts_); !killed) return killed;
  say("killed h{}; the others stop hearing the token and form a new ring", hosts_);
  auto took = time_view(survivors, killed_at);
  if (!took) return took.error();
  show_views(1, killed_at);
  say("new view of {} on every survivor {} ms after the kill", host_list(survivors),
      took.value().count());

  const auto restarted_at = Clock::now();
  if (auto started = lab_->start_agent(hosts_); !started) return started;
  if (auto listening = listeners_->start(hosts_); !listening) return listening;
  say("restarted h{}'s agent (and its listener)", hosts_);
  auto back = time_view(range(1, hosts_), restarted_at);
  if (!back) return back.error();
  show_views(1, restarted_at);
  say("h{} is back in the ring {} ms after its restart", hosts_, back.value().count());
  return Ok{};
}

Result<Ok> Demo::partition_and_heal() {
  const auto left = range(1, 2);
  const auto right = range(3, hosts_);
  heading(fmt::format("A partition: {} | {}", host_list(left), host_list(right)));
  auto joined =
      listeners_->wait_until([&] { return listeners_->joined(range(1, hosts_)); }, kViewTimeout);
  if (!joined || !joined.value()) return Error{"the restarted listener did not join the group"};
  const auto split_at = Clock::now();
  if (auto split = lab_->partition({left, right}); !split) return split;
  say("nftables now drops IPv4 between the two groups; each side forms its own ring");
  auto left_took = time_view(left, split_at);
  if (!left_took) return left_took.error();
  auto right_took = time_view(right, split_at);
  if (!right_took) return right_took.error();
  show_views(1, split_at);
  show_views(3, split_at);
  say("both sides have their own view ({} ms and {} ms) and go on delivering:",
      left_took.value().count(), right_took.value().count());
  if (auto sent = send_and_wait(left, 2, left); !sent) return sent;
  if (auto sent = send_and_wait(right, 2, right); !sent) return sent;

  heading("Heal");
  const auto healed_at = Clock::now();
  if (auto healed = lab_->heal(); !healed) return healed;
  say("rules removed; the rings hear each other's probes and merge");
  auto merged = time_view(range(1, hosts_), healed_at);
  if (!merged) return merged.error();
  show_views(1, healed_at);
  say("one view of all {} hosts again {} ms after the heal", hosts_, merged.value().count());
  return Ok{};
}

Result<Ok> Demo::traffic_and_check() {
  heading("Ordered messages, checked");
  const auto all = range(1, hosts_);
  auto joined = listeners_->wait_until([&] { return listeners_->joined(all); }, kViewTimeout);
  if (!joined || !joined.value()) return Error{"the group did not re-form after the merge"};
  if (auto sent = send_and_wait(all, 5, all); !sent) return sent;
  const LogCheck check = check_listen_logs(listeners_->all_logs(), traffic_->sent());
  say("every host's listener log, checked as the simulator checks its hosts (views agree, agreed "
      "order, virtual synchrony, no duplicates, nothing invented, own FIFO):");
  fmt::print("           {}\n", check.summary());
  fmt::print("           messages delivered in the last view, in order, per host:\n");
  for (const auto& log : listeners_->current_logs(all)) {
    std::size_t count = 0;
    const std::string fingerprint = last_view_fingerprint(log, count);
    fmt::print("             {:<4} {:>3} messages, order fingerprint {}\n", log.name(), count,
               fingerprint);
  }
  if (!listeners_->converged(all)) return Error{"the hosts are not in one view at the end"};
  if (!check.ok()) return Error{"the delivery checks failed"};
  return Ok{};
}

Result<Ok> Demo::send_and_wait(const std::vector<int>& senders, int each,
                               const std::vector<int>& receivers) {
  std::vector<std::string> texts;
  for (int round = 0; round < each; ++round) {
    for (int host : senders) texts.push_back(traffic_->send_one(host));
  }
  auto arrived =
      listeners_->wait_until([&] { return listeners_->delivered(receivers, texts); }, kViewTimeout);
  if (!arrived) return arrived.error();
  if (!arrived.value()) return Error{"messages were not delivered everywhere"};
  // Show the order at the first receiver; the check at the end compares every host.
  std::string order;
  std::size_t shown = 0;
  for (const auto& timed : listeners_->events_since(receivers.front(), SteadyTime{})) {
    const auto* message = std::get_if<MessageEvent>(&timed.event);
    if (!message || std::find(texts.begin(), texts.end(), message->message) == texts.end()) {
      continue;
    }
    if (++shown <= kShownMessages) order += " " + message->message;
  }
  if (shown > kShownMessages) order += " ...";
  say("{} messages from {} delivered at {} in one order:{}", texts.size(), host_list(senders),
      host_list(receivers), order);
  return Ok{};
}

Result<Milliseconds> Demo::time_view(const std::vector<int>& hosts, SteadyTime since) {
  return listeners_->wait_converged(hosts, since, kViewTimeout);
}

void Demo::show_views(int host, SteadyTime since) {
  for (const auto& timed : listeners_->events_since(host, since)) {
    const auto* view = std::get_if<ViewEvent>(&timed.event);
    if (!view) continue;
    const auto after = std::chrono::duration_cast<Milliseconds>(timed.seen - since).count();
    fmt::print("           h{} installs {} (+{} ms)\n", host, to_string(*view), after);
  }
}

void Demo::teardown(bool success) {
  traffic_.reset();
  listeners_.reset();
  if (!lab_) return;
  const std::string dir = lab_->dir();
  auto down = lab_->down(success);
  if (down) {
    if (guard_) guard_->disarm();
    fmt::print("\nlab {} removed (namespaces, veths, bridge, nft table, processes{}).\n",
               lab_->state().prefix, success ? ", directory" : "");
    if (!success) fmt::print("its logs are kept in {}\n", dir);
  } else {
    fmt::print(stderr, "keel lab demo: teardown: {}\n", down.error().message);
  }
}

int Demo::run() {
  Result<Ok> result = build();
  for (auto step : {&Demo::formation, &Demo::kill_and_rejoin, &Demo::partition_and_heal,
                    &Demo::traffic_and_check}) {
    if (!result) break;
    result = (this->*step)();
  }
  if (!result) fmt::print(stderr, "\nkeel lab demo: {}\n", result.error().message);
  teardown(result.ok());
  return result ? 0 : 1;
}

}  // namespace

int run_lab_demo(const DemoOptions& options) {
  if (auto reason = lab_unavailable_reason()) {
    fmt::print(stderr, "keel lab demo: {}\n", *reason);
    return 1;
  }
  return Demo(options).run();
}

}  // namespace keel::lab
