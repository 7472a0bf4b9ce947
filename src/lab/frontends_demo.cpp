#include "lab/frontends_demo.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "lab/cleanup_guard.hpp"
#include "lab/frontends.hpp"
#include "lab/probe.hpp"

namespace keel::lab {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kHosts = 4;
constexpr int kAddresses = 8;
constexpr Milliseconds kSettleTimeout{20000};
constexpr Milliseconds kTick{250};

std::vector<int> hosts_except(int excluded) {
  std::vector<int> hosts;
  for (int host = 1; host <= kHosts; ++host) {
    if (host != excluded) hosts.push_back(host);
  }
  return hosts;
}

class FrontendsDemo {
 public:
  explicit FrontendsDemo(const FrontendsDemoOptions& options)
      : pause_(options.pause), prefix_(options.prefix), start_ms_(realtime_ms()) {}

  int run() {
    auto done = build();
    if (done)
      done = step("h4's link goes down (the host is gone for the others)", {1, 2, 3},
                  [&] { return lab_->set_link(4, false); });
    if (done)
      done = step("h4's link comes back", hosts_except(0), [&] { return lab_->set_link(4, true); });
    if (done)
      done = step("nginx dies on h2: its health check fails", {1, 3, 4},
                  [&] { return stop_nginx(2); });
    if (done) done = step("nginx is back on h2", hosts_except(0), [&] { return start_web(2); });
    if (done) done = partition();
    if (done) done = drain();
    if (done) report();
    const bool success = done.ok();
    if (!done) fmt::print("\nkeel lab demo --frontends: {}\n", done.error().message);
    teardown(success);
    return success ? 0 : 1;
  }

 private:
  template <typename... Args>
  void say(fmt::format_string<Args...> format, Args&&... args) {
    fmt::print("[{:6.2f}s] {}\n", (realtime_ms() - start_ms_) / 1000,
               fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stdout);
  }
  void heading(const std::string& text) {
    std::this_thread::sleep_for(pause_);  // for a person to read the last part
    fmt::print("\n== {} ==\n", text);
  }

  Result<Ok> build() {
    fmt::print(
        "keel lab demo --frontends: {} frontends on this machine, each a network namespace with "
        "nginx and a keel agent, sharing {} floating IPs; a client namespace on the same bridge "
        "requests every address 50 times a second.\n\n",
        kHosts, kAddresses);
    addresses_ = floating_addresses(kAddresses);
    LabOptions options;
    options.hosts = kHosts;
    options.prefix = prefix_;
    options.client = true;
    options.config.extra = web_pool_toml(addresses_, kWebPort);
    options.progress = [this](const std::string& line) { say("lab: {}", line); };
    options.on_claimed = [this](const std::string& dir, const std::string& keel) {
      if (auto armed = CleanupGuard::arm(keel, dir)) guard_.emplace(std::move(armed.value()));
    };
    auto lab = Lab::up(options);
    if (!lab) return lab.error();
    lab_.emplace(std::move(lab.value()));
    use_nginx_ = ::access("/usr/sbin/nginx", X_OK) == 0;
    if (!use_nginx_) say("nginx is not installed: keel's own tiny HTTP responder stands in");
    for (int host = 1; host <= kHosts; ++host) {
      if (auto started = start_web(host); !started) return started;
    }
    auto log = start_prober(*lab_, addresses_, kWebPort, 20);
    if (!log) return log.error();
    probe_path_ = log.value();
    heading("The pool forms");
    return watch(hosts_except(0));
  }

  Result<Ok> start_web(int host) {
    auto started =
        use_nginx_ ? start_nginx(*lab_, host, kWebPort) : start_responder(*lab_, host, kWebPort);
    if (!started) return started.error();
    web_[host] = started.value();
    return Ok{};
  }

  Result<Ok> stop_nginx(int host) {
    send_signal(web_.at(host), SIGTERM);
    if (!wait_gone(web_.at(host), Milliseconds{5000})) return Error{"nginx did not stop"};
    return Ok{};
  }

  Result<Ok> step(const std::string& title, const std::vector<int>& live,
                  const std::function<Result<Ok>()>& action) {
    heading(title);
    const double at = realtime_ms();
    if (auto done = action(); !done) return done;
    auto settled = watch(live);
    if (!settled) return settled;
    summarize_since(at);
    return Ok{};
  }

  Result<Ok> partition() {
    heading("A partition: h1,h2 | h3,h4 (each side serves every address it can)");
    const double at = realtime_ms();
    if (auto done = lab_->partition({{1, 2}, {3, 4}}); !done) return done;
    const auto deadline = Clock::now() + kSettleTimeout;
    while (Clock::now() < deadline) {
      auto holders = floating_holders(*lab_, addresses_);
      if (!holders) return holders.error();
      show(holders.value());
      if (placement_settled(holders.value(), {1, 2}) &&
          placement_settled(holders.value(), {3, 4})) {
        break;
      }
      std::this_thread::sleep_for(kTick);
    }
    say("both sides hold every address; now the partition heals");
    if (auto healed = lab_->heal(); !healed) return healed;
    auto settled = watch(hosts_except(0));
    if (!settled) return settled;
    summarize_since(at);
    return Ok{};
  }

  Result<Ok> drain() {
    heading("keel node drain on h1: a planned handover (the new holder adds first)");
    const double at = realtime_ms();
    auto ran = run_capture({lab_->keel_binary(), "node", "drain", "--socket", lab_->host(1).socket},
                           Milliseconds{10000});
    if (!ran || ran.value().exit_code != 0) return Error{"keel node drain failed"};
    if (auto settled = watch({2, 3, 4}); !settled) return settled;
    summarize_since(at);
    heading("keel node undrain on h1: it takes its share back");
    ran = run_capture({lab_->keel_binary(), "node", "undrain", "--socket", lab_->host(1).socket},
                      Milliseconds{10000});
    if (!ran || ran.value().exit_code != 0) return Error{"keel node undrain failed"};
    return watch(hosts_except(0));
  }

  // Prints a status line every tick until placement has settled on `live` and the client is
  // answered everywhere.
  Result<Ok> watch(const std::vector<int>& live) {
    const auto deadline = Clock::now() + kSettleTimeout;
    while (Clock::now() < deadline) {
      auto holders = floating_holders(*lab_, addresses_);
      if (!holders) return holders.error();
      const bool client_ok = show(holders.value());
      if (placement_settled(holders.value(), live) && client_ok) {
        say("settled");
        return Ok{};
      }
      std::this_thread::sleep_for(kTick);
    }
    return Error{"the floating IPs did not settle within 20 s"};
  }

  // One line: per host what it holds; per address the client's latest answer. True when the
  // client's latest probe of every address succeeded.
  bool show(const Holders& holders) {
    (void)probes_.read_more(probe_path_);
    const auto latest = probes_.latest(realtime_ms() - 500);
    std::map<int, std::string> held;
    for (const auto& [address, hosts] : holders) {
      for (int host : hosts) held[host] += address.substr(address.rfind('.'));
    }
    std::string line;
    for (int host = 1; host <= kHosts; ++host) {
      line += fmt::format("h{}[{}] ", host, held[host]);
    }
    int answered = 0;
    std::string client;
    for (const auto& address : addresses_) {
      auto found = latest.find(address);
      const bool ok = found != latest.end() && found->second.ok;
      answered += ok ? 1 : 0;
      client += ok ? found->second.host.substr(1) : "-";
    }
    say("{}| client {}/{} answered (by host: {})", line, answered, kAddresses, client);
    return answered == kAddresses;
  }

  void summarize_since(double at) {
    (void)probes_.read_more(probe_path_);
    double longest = 0;
    std::uint64_t failures = 0;
    for (const auto& [target, summary] : probes_.summarize(at, realtime_ms())) {
      longest = std::max(longest, summary.longest_outage_ms);
      failures += summary.failures;
    }
    say("client: {} failed requests, longest outage of any address {:.0f} ms", failures, longest);
  }

  void report() {
    heading("Report");
    (void)probes_.read_more(probe_path_);
    fmt::print("{:<16} {:>9} {:>9} {:>20}\n", "address", "requests", "failed", "longest outage ms");
    for (const auto& [target, summary] : probes_.summarize(0, realtime_ms())) {
      fmt::print("{:<16} {:>9} {:>9} {:>20.0f}\n", target, summary.probes, summary.failures,
                 summary.longest_outage_ms);
    }
  }

  void teardown(bool success) {
    if (!lab_) return;
    auto down = lab_->down(success);
    if (down && guard_) guard_->disarm();
    fmt::print("\n{}\n",
               down ? (success ? "lab removed" : "lab removed; logs kept in " + lab_->dir())
                    : "lab teardown failed: " + down.error().message);
  }

  Milliseconds pause_;
  std::string prefix_;
  double start_ms_;
  std::vector<std::string> addresses_;
  std::optional<Lab> lab_;
  std::optional<CleanupGuard> guard_;
  bool use_nginx_ = true;
  std::map<int, ProcessId> web_;
  std::string probe_path_;
  ProbeLog probes_;
};

}  // namespace

int run_frontends_demo(const FrontendsDemoOptions& options) {
  FrontendsDemo demo(options);
  return demo.run();
}

}  // namespace keel::lab
