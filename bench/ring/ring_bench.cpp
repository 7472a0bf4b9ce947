// keel_ring_bench: keel's ring beside corosync in the same lab, in the same run (bench/RESULTS.md).
//
//   keel_ring_bench [--hosts 3,5] [--sizes 100,1024,8192] [--failovers 5] [--only keel|corosync]
//                   [--keel-control binary|json] [--loads throughput,latency] [--out FILE]
//                   [--rounds N] [--run-mb 16] [--keel-transport unicast|broadcast]
//                   [--corosync-transport knet|udpu|udp] [--ring KEY=VALUE] [--keep-logs]
//   keel_ring_bench soak [--hosts 5] [--minutes 10] [--hogs 2] [--rate 20]
//
// For each host count it builds one lab (src/lab, as `keel lab` does), measures keel's agents,
// stops them, starts corosync on the same hosts (token timeout 300 ms as keel's default, then
// corosync's own defaults for failover) and measures the same things. Every row is printed as a
// JSON line as soon as it is measured, and appended to --out. With --rounds N all of it runs N
// times (keel, then corosync, in each round) and a summary row per load follows, pairing the two
// tools' figures within each round (paired_summary.hpp).
//
// soak: a keel lab under light traffic with CPU hogs (busy processes, one per core by default)
// for the given time, counting the view changes that nothing caused (the goal is zero).
//
// Root only (namespaces). The lab is torn down at the end, and by its cleanup guard if this
// process dies first.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "corosync_host.hpp"
#include "keel_client.hpp"
#include "lab/guarded_lab.hpp"
#include "lab/host_config.hpp"
#include "lab/lab.hpp"
#include "measure.hpp"
#include "paired_summary.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

struct Paths {
  std::string self;
  std::string keel;
  std::string cpg_bench;
};

Paths find_paths(const std::string& keel_override) {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  Paths paths{self.string(), keel_override, (self.parent_path() / "cpg_bench").string()};
  if (paths.keel.empty()) paths.keel = (self.parent_path().parent_path() / "keel").string();
  return paths;
}

using lab::GuardedLab;

// keel's [ring] settings for every lab (--ring KEY=VALUE; empty: the defaults).
std::vector<std::pair<std::string, std::string>> g_ring_settings;
bool g_keel_broadcast = false;  // [transport] mode = "broadcast" instead of unicast
// How keel's clients talk to their agents (--keel-control): binary frames or JSON lines.
bool g_keel_binary = true;
// Which traffic runs to measure (--loads): the flat-out throughput runs, the moderate-load latency.
bool g_throughput = true;
// What one throughput run moves: 16 MB by default, in 2,000 to 40,000 messages (the bound grows
// with --run-mb, so that small messages do not make a longer run last for minutes).
std::uint64_t g_run_bytes = 16'000'000;
bool g_latency = true;
// Keep every lab's directory (--keep-logs); a lab in which a run failed keeps it anyway.
bool g_keep_logs = false;
int g_failed_runs = 0;

Result<Ok> build_lab(GuardedLab& built, int hosts, const Paths& paths) {
  lab::LabOptions options;
  options.hosts = hosts;
  options.config.ring = g_ring_settings;
  if (g_keel_broadcast) {
    options.config.transport = {{"mode", "\"broadcast\""},
                                {"group", "\"" + std::string(lab::kBroadcastAddress) + "\""}};
  }
  options.keel_binary = paths.keel;
  options.config.log_level = "warn";
  options.progress = [](const std::string& line) { std::cerr << "lab: " << line << "\n"; };
  return built.up(std::move(options));
}

class Report {
 public:
  explicit Report(const std::string& path) {
    if (!path.empty()) out_.open(path, std::ios::app);
  }
  void set_round(int round) { round_ = round; }
  // Prints the row (with its round, when there are several) and keeps it for the summary.
  void add(json row) {
    if (round_ > 0) row["round"] = round_;
    print(row);
    rows_.push_back(std::move(row));
  }
  void print(const json& row) {
    std::cout << row.dump() << std::endl;
    if (out_) out_ << row.dump() << std::endl;
  }
  const std::vector<json>& rows() const { return rows_; }

 private:
  std::ofstream out_;
  int round_ = 0;
  std::vector<json> rows_;
};

std::uint64_t messages_for(std::size_t size) {
  const std::uint64_t by_bytes = g_run_bytes / size;
  return std::clamp<std::uint64_t>(by_bytes, 2000,
                                   std::max<std::uint64_t>(40000, g_run_bytes / 400));
}

// A run that fails (a membership change in the middle loses the other side's messages, for
// instance) is reported as a row with its error, and the benchmark goes on.
void add_row(Report& report, const std::string& tool, int hosts, const Load& load,
             const Result<json>& row) {
  if (row) {
    report.add(row.value());
    return;
  }
  ++g_failed_runs;
  report.add(json{{"tool", tool},
                  {"hosts", hosts},
                  {"size", load.size},
                  {"senders", load.all_send ? "all" : "one"},
                  {"error", row.error().message}});
}

template <typename Measure>
void measure_traffic(Report& report, const std::string& tool, int hosts,
                     const std::vector<std::size_t>& sizes, Measure&& measure) {
  for (std::size_t size : g_throughput ? sizes : std::vector<std::size_t>{}) {
    for (bool all_send : {false, true}) {
      Load load{size, all_send, messages_for(size), 0, all_send && size == 1024};
      add_row(report, tool, hosts, load, measure(load));
    }
  }
  // Latency at a moderate load: every host sends 1 KiB messages at 200/s for 10 s.
  const Load moderate{1024, true, 0, 200, false};
  if (g_latency) add_row(report, tool, hosts, moderate, measure(moderate));
}

json idle_memory(const std::string& tool, int hosts, const std::vector<int>& pids) {
  std::uint64_t peak = 0;
  for (int pid : pids) peak = std::max(peak, rss_kib(pid));
  return json{{"tool", tool}, {"hosts", hosts}, {"rss_idle_kib", peak}};
}

void bench_hosts(GuardedLab& built, int hosts, const std::vector<std::size_t>& sizes, int failovers,
                 const std::string& only, const std::string& corosync_transport, const Paths& paths,
                 Report& report) {
  if (auto made = build_lab(built, hosts, paths); !made)
    throw std::runtime_error(made.error().message);
  lab::Lab& lab = *built.lab;
  auto moderate = [hosts](Load load) {
    if (load.rate > 0) load.total = static_cast<std::uint64_t>(load.rate * 10) * hosts;
    return load;
  };
  if (only != "corosync") {
    std::this_thread::sleep_for(std::chrono::seconds(2));  // let start-up allocations settle
    report.add(idle_memory("keel", hosts, keel_agent_pids(lab)));
    measure_traffic(report, "keel", hosts, sizes, [&](const Load& load) {
      return keel_traffic(lab, moderate(load), g_keel_binary);
    });
    auto failover = keel_failover(lab, failovers);
    if (!failover) throw std::runtime_error(failover.error().message);
    failover.value()["token_ms"] = 300;
    report.add(failover.value());
  }
  if (only == "keel") return;
  for (int host = 1; host <= hosts; ++host) {
    if (auto stopped = lab.stop_agent(host); !stopped)
      throw std::runtime_error(stopped.error().message);
  }
  for (std::optional<int> token : {std::optional<int>(300), std::optional<int>()}) {
    if (auto written = write_corosync_configs(lab, {token, corosync_transport}); !written) {
      throw std::runtime_error(written.error().message);
    }
    Corosync corosync{{}, paths.cpg_bench};
    for (int host = 1; host <= hosts; ++host) {
      auto started = start_corosync(lab, host, paths.self);
      if (!started) throw std::runtime_error(started.error().message);
      corosync.daemons.push_back(started.value());
    }
    if (token) {
      // Idle memory once the ring has formed (the first traffic run waits for that).
      auto warm = corosync_traffic(lab, corosync, Load{100, false, 100, 0, false});
      if (!warm) throw std::runtime_error(warm.error().message);
      report.add(idle_memory("corosync", hosts, [&] {
        std::vector<int> pids;
        for (const auto& daemon : corosync.daemons) pids.push_back(daemon.pid);
        return pids;
      }()));
      measure_traffic(report, "corosync", hosts, sizes, [&](const Load& load) {
        return corosync_traffic(lab, corosync, moderate(load));
      });
    }
    auto failover = corosync_failover(lab, corosync, failovers);
    if (!failover) throw std::runtime_error(failover.error().message);
    failover.value()["token_ms"] = token ? json(*token) : json("default");
    report.add(failover.value());
    lab::terminate_all(corosync.daemons, std::chrono::milliseconds(5000));
  }
}

int run_benchmark(const std::vector<int>& host_counts, const std::vector<std::size_t>& sizes,
                  int failovers, const std::string& only, const std::string& corosync_transport,
                  const std::string& out, int rounds, const Paths& paths) {
  Report report(out);
  for (int round = 1; round <= rounds; ++round) {
    if (rounds > 1) report.set_round(round);
    for (int hosts : host_counts) {
      GuardedLab built("keel_ring_bench");
      const int failed_before = g_failed_runs;
      try {
        bench_hosts(built, hosts, sizes, failovers, only, corosync_transport, paths, report);
      } catch (const std::exception& error) {
        std::cerr << "keel_ring_bench: " << hosts << " hosts: " << error.what() << "\n";
        built.keep_logs = true;
        return 1;
      }
      built.keep_logs = g_keep_logs || g_failed_runs > failed_before;
    }
  }
  if (rounds > 1) {
    for (const json& summary : paired_summary(report.rows())) report.print(summary);
  }
  return 0;
}

[[noreturn]] void hog() {
  volatile std::uint64_t counter = 0;
  for (;;) counter = counter + 1;
}

int run_soak(int hosts, int minutes, int hogs, double rate, const Paths& paths) {
  GuardedLab built("keel_ring_bench soak");
  built.keep_logs = true;  // until the soak has finished cleanly
  if (auto made = build_lab(built, hosts, paths); !made) {
    std::cerr << "keel_ring_bench soak: " << made.error().message << "\n";
    return 1;
  }
  lab::Lab& lab = *built.lab;
  std::vector<lab::ProcessId> hog_processes;
  for (int index = 0; index < hogs; ++index) {
    auto started = lab::spawn({paths.self, "hog"}, {});
    if (!started) {
      std::cerr << "keel_ring_bench soak: " << started.error().message << "\n";
      return 1;
    }
    (void)lab.adopt(started.value());
    hog_processes.push_back(started.value());
  }
  const auto per_host = static_cast<std::uint64_t>(rate * 60 * minutes);
  StartLine start(hosts);
  std::vector<ClientResult> results(static_cast<std::size_t>(hosts));
  std::vector<std::thread> threads;
  for (int host = 1; host <= hosts; ++host) {
    threads.emplace_back([&, host] {
      ClientPlan plan;
      plan.host = host;
      plan.socket = lab.host(host).socket;
      plan.members = hosts;
      plan.send = per_host;
      plan.size = 200;
      plan.rate = rate;
      plan.expect = per_host * static_cast<std::uint64_t>(hosts);
      plan.timeout_ns = (static_cast<std::int64_t>(minutes) * 60 + 120) * 1'000'000'000;
      results[static_cast<std::size_t>(host - 1)] = run_keel_client(plan, start);
    });
  }
  for (auto& thread : threads) thread.join();
  lab::terminate_all(hog_processes, std::chrono::milliseconds(1000));
  int spurious = 0;
  json row{{"tool", "keel"}, {"soak_minutes", minutes}, {"hosts", hosts}, {"hogs", hogs}};
  for (const auto& result : results) {
    int views = 0;
    for (const auto& view : result.views) {
      if (view.kind == "regular" && view.seen_ns > result.first_send_ns) ++views;
    }
    spurious += views;
    row["delivered"].push_back(result.delivered);
    if (!result.error.empty()) row["errors"].push_back(result.error);
  }
  row["spurious_view_changes"] = spurious;
  std::cout << row.dump() << std::endl;
  built.keep_logs = g_keep_logs || row.contains("errors");
  return row.contains("errors") ? 1 : 0;
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  if (argc == 3 && std::string(argv[1]) == "corosync-host") return run_corosync_host(argv[2]);
  if (argc == 2 && std::string(argv[1]) == "hog") hog();

  CLI::App app{"keel's ring beside corosync, in one lab (see bench/RESULTS.md)"};
  std::vector<int> host_counts{3, 5};
  std::vector<std::size_t> sizes{100, 1024, 8192};
  int failovers = 5;
  std::string only, out, keel, corosync_transport = "knet";
  app.add_option("--hosts", host_counts, "host counts to measure")->delimiter(',');
  app.add_option("--sizes", sizes, "message sizes in bytes")->delimiter(',');
  app.add_option("--failovers", failovers, "link-down repetitions per configuration");
  app.add_option("--only", only, "measure one tool")->check(CLI::IsMember({"keel", "corosync"}));
  std::uint64_t run_mb = 16;
  app.add_option("--run-mb", run_mb, "megabytes one throughput run moves (default 16)")
      ->check(CLI::Range(1, 4000));
  app.add_option("--out", out, "also append the JSON rows to this file");
  int rounds = 1;
  app.add_option("--rounds", rounds,
                 "measure everything this many times, each tool in turn, and end with one summary "
                 "row per load pairing keel's and corosync's figures round by round")
      ->check(CLI::Range(1, 100));
  app.add_option("--corosync-transport", corosync_transport,
                 "knet (default), udpu, or udp (broadcast, like --keel-transport broadcast)")
      ->check(CLI::IsMember({"knet", "udpu", "udp"}));
  std::string keel_transport = "unicast";
  app.add_option("--keel-transport", keel_transport,
                 "keel's [transport] mode: unicast (default) or broadcast to the lab's subnet")
      ->check(CLI::IsMember({"unicast", "broadcast"}));
  app.add_option("--keel", keel, "the keel binary (default: ../keel beside this one)");
  app.add_flag("--keep-logs", g_keep_logs,
               "keep each lab's directory (agents' and corosync's logs) after a clean run; a lab "
               "in which a run failed is kept anyway");
  std::vector<std::string> ring_settings;
  app.add_option("--ring", ring_settings, "keel [ring] setting KEY=VALUE (repeat)");
  std::string keel_control = "binary";
  app.add_option("--keel-control", keel_control,
                 "how keel's clients send and listen: binary frames (default) or json lines")
      ->check(CLI::IsMember({"binary", "json"}));
  std::vector<std::string> loads{"throughput", "latency"};
  app.add_option("--loads", loads, "traffic runs to measure (default: throughput,latency)")
      ->delimiter(',')
      ->check(CLI::IsMember({"throughput", "latency"}));
  auto* soak = app.add_subcommand("soak", "view changes under CPU load, with default timeouts");
  int soak_hosts = 5, minutes = 10, hogs = static_cast<int>(std::thread::hardware_concurrency());
  double rate = 20;
  soak->add_option("--hosts", soak_hosts, "hosts in the lab");
  soak->add_option("--minutes", minutes, "how long");
  soak->add_option("--hogs", hogs, "busy processes (default: one per core)");
  soak->add_option("--rate", rate, "messages per second from each host");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0) {
    std::cerr << "keel_ring_bench: needs root (it builds network namespaces)\n";
    return 1;
  }
  for (const auto& text : ring_settings) {
    auto setting = keel::lab::parse_ring_setting(text);
    if (!setting) {
      std::cerr << "keel_ring_bench: " << setting.error().message << "\n";
      return 2;
    }
    g_ring_settings.push_back(setting.value());
  }
  g_keel_binary = keel_control == "binary";
  g_keel_broadcast = keel_transport == "broadcast";
  g_run_bytes = run_mb * 1'000'000;
  g_throughput = std::find(loads.begin(), loads.end(), "throughput") != loads.end();
  g_latency = std::find(loads.begin(), loads.end(), "latency") != loads.end();
  const Paths paths = find_paths(keel);
  if (*soak) return run_soak(soak_hosts, minutes, hogs, rate, paths);
  return run_benchmark(host_counts, sizes, failovers, only, corosync_transport, out, rounds, paths);
}
