#include "measure.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "corosync_host.hpp"
#include "keel_client.hpp"
#include "lab/process.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;
constexpr std::int64_t kNsPerMs = 1'000'000;
constexpr std::int64_t kViewTimeoutNs = 60'000 * kNsPerMs;

// What one host's client reports, whichever tool it ran against.
struct HostFigures {
  bool sender = false;
  std::uint64_t delivered = 0;
  std::uint64_t bytes = 0;
  std::int64_t first_send_ns = 0;
  std::int64_t last_delivery_ns = 0;
  std::vector<std::int64_t> latencies_ns;
};

double percentile(const std::vector<std::int64_t>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  const auto at = static_cast<std::size_t>(fraction * static_cast<double>(sorted.size() - 1));
  return static_cast<double>(sorted[at]);
}

// Throughput is what the slowest receiver achieved, from the first send anywhere to its last
// delivery: agreed order is only as fast as every member delivers.
json summarize(const std::string& tool, int hosts, const Load& load,
               std::vector<HostFigures>& figures) {
  std::int64_t start = 0;
  for (const auto& host : figures) {
    if (host.sender && (start == 0 || host.first_send_ns < start)) start = host.first_send_ns;
  }
  double slowest = -1, slowest_mb = 0;
  std::vector<std::int64_t> latencies;
  for (auto& host : figures) {
    const double seconds = static_cast<double>(host.last_delivery_ns - start) / 1e9;
    const double rate = seconds > 0 ? static_cast<double>(host.delivered) / seconds : 0;
    if (slowest < 0 || rate < slowest) {
      slowest = rate;
      slowest_mb = seconds > 0 ? static_cast<double>(host.bytes) / seconds / 1e6 : 0;
    }
    latencies.insert(latencies.end(), host.latencies_ns.begin(), host.latencies_ns.end());
  }
  std::sort(latencies.begin(), latencies.end());
  return json{{"tool", tool},
              {"hosts", hosts},
              {"size", load.size},
              {"senders", load.all_send ? "all" : "one"},
              {"messages", load.total},
              {"rate_per_sender", load.rate},
              {"msgs_per_s", std::round(slowest)},
              {"mb_per_s", std::round(slowest_mb * 100) / 100},
              {"latency_p50_us", std::round(percentile(latencies, 0.5) / 100) / 10},
              {"latency_p99_us", std::round(percentile(latencies, 0.99) / 100) / 10}};
}

// Samples the resident memory of some processes until stopped; keeps each one's peak.
class MemorySampler {
 public:
  explicit MemorySampler(std::vector<int> pids) : pids_(std::move(pids)), peak_(pids_.size()) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        for (std::size_t i = 0; i < pids_.size(); ++i) {
          peak_[i] = std::max(peak_[i], rss_kib(pids_[i]));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  ~MemorySampler() { finish(); }
  std::uint64_t finish() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return peak_.empty() ? 0 : *std::max_element(peak_.begin(), peak_.end());
  }
  // The largest RSS half a second after the load: what a daemon keeps once a burst is over.
  std::uint64_t settled() const {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::uint64_t largest = 0;
    for (int pid : pids_) largest = std::max(largest, rss_kib(pid));
    return largest;
  }

 private:
  std::vector<int> pids_;
  std::vector<std::uint64_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::vector<int> pids_of(const std::vector<lab::ProcessId>& processes) {
  std::vector<int> pids;
  for (const auto& process : processes) pids.push_back(process.pid);
  return pids;
}

std::vector<int> survivors_of(int hosts) {
  std::vector<int> survivors;
  for (int host = 1; host < hosts; ++host) survivors.push_back(host);
  return survivors;
}

json failover_summary(const std::string& tool, int hosts, std::vector<double> times_ms) {
  std::sort(times_ms.begin(), times_ms.end());
  return json{{"tool", tool},
              {"hosts", hosts},
              {"failover_ms", times_ms},
              {"failover_median_ms", times_ms.empty() ? 0 : times_ms[times_ms.size() / 2]},
              {"failover_max_ms", times_ms.empty() ? 0 : times_ms.back()}};
}

// The membership records of every host, as the watchers report them; `hosts` members each.
class Memberships {
 public:
  void add(int host, std::int64_t seen_ns, std::vector<int> members) {
    std::lock_guard lock(mutex_);
    records_[host].push_back({seen_ns, std::move(members)});
  }
  // When `host` first reported, at or after `since`, a membership without `victim`.
  std::optional<std::int64_t> lost(int host, int victim, std::int64_t since) const {
    std::lock_guard lock(mutex_);
    auto found = records_.find(host);
    if (found == records_.end()) return std::nullopt;
    for (const auto& record : found->second) {
      if (record.seen_ns >= since &&
          std::find(record.members.begin(), record.members.end(), victim) == record.members.end()) {
        return record.seen_ns;
      }
    }
    return std::nullopt;
  }
  // Whether every host's latest membership has all `hosts` members.
  bool complete(int hosts) const {
    std::lock_guard lock(mutex_);
    for (int host = 1; host <= hosts; ++host) {
      auto found = records_.find(host);
      if (found == records_.end() || found->second.empty() ||
          static_cast<int>(found->second.back().members.size()) != hosts) {
        return false;
      }
    }
    return true;
  }

 private:
  struct Record {
    std::int64_t seen_ns;
    std::vector<int> members;
  };
  mutable std::mutex mutex_;
  std::map<int, std::vector<Record>> records_;
};

bool wait_for(const std::function<bool()>& done, std::int64_t timeout_ns,
              const std::function<void()>& poll = {}) {
  const std::int64_t deadline = now_ns() + timeout_ns;
  while (now_ns() < deadline) {
    if (poll) poll();
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Runs the failover repetitions against watchers that feed `memberships` (via `poll`).
Result<std::vector<double>> time_failovers(lab::Lab& lab, Memberships& memberships, int repetitions,
                                           const std::function<void()>& poll) {
  const int hosts = lab.host_count();
  if (!wait_for([&] { return memberships.complete(hosts); }, kViewTimeoutNs, poll)) {
    return Error{"the watchers never saw all " + std::to_string(hosts) + " hosts together"};
  }
  std::vector<double> times;
  for (int repetition = 0; repetition < repetitions; ++repetition) {
    const std::int64_t down_at = now_ns();
    if (auto down = lab.set_link(hosts, false); !down) return down.error();
    std::int64_t last = 0;
    for (int host : survivors_of(hosts)) {
      std::optional<std::int64_t> lost;
      wait_for([&] { return (lost = memberships.lost(host, hosts, down_at)).has_value(); },
               kViewTimeoutNs, poll);
      if (!lost) return Error{"host " + std::to_string(host) + " never saw the victim go"};
      last = std::max(last, *lost);
    }
    times.push_back(static_cast<double>((last - down_at) / 100'000) / 10);
    if (auto up = lab.set_link(hosts, true); !up) return up.error();
    if (!wait_for([&] { return memberships.complete(hosts); }, kViewTimeoutNs, poll)) {
      return Error{"the victim never rejoined"};
    }
  }
  return times;
}

Result<json> parse_last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty() && line.front() == '{') last = line;
  }
  auto parsed = json::parse(last, nullptr, false);
  if (!parsed.is_object()) return Error{"no result in " + path};
  return parsed;
}

}  // namespace

std::uint64_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

double cpu_seconds(const std::vector<int>& pids) {
  const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th of them.
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    std::uint64_t utime = 0, stime = 0;
    for (int index = 1; index <= 13 && fields >> field; ++index) {
      if (index == 12) utime = std::stoull(field);
      if (index == 13) stime = std::stoull(field);
    }
    total += static_cast<double>(utime + stime) / ticks_per_second;
  }
  return total;
}

std::vector<int> keel_agent_pids(const lab::Lab& lab) {
  std::vector<int> pids;
  for (int host = 1; host <= lab.host_count(); ++host) pids.push_back(lab.host(host).agent.pid);
  return pids;
}

Result<json> keel_traffic(const lab::Lab& lab, const Load& load, bool binary) {
  const int hosts = lab.host_count();
  const int senders = load.all_send ? hosts : 1;
  const std::uint64_t per_sender = load.total / static_cast<std::uint64_t>(senders);
  StartLine start(hosts);
  std::vector<ClientResult> results(static_cast<std::size_t>(hosts));
  std::optional<MemorySampler> memory;
  if (load.sample_memory) memory.emplace(keel_agent_pids(lab));
  const double cpu_before = cpu_seconds(keel_agent_pids(lab));
  std::vector<std::thread> threads;
  for (int host = 1; host <= hosts; ++host) {
    threads.emplace_back([&, host] {
      ClientPlan plan;
      plan.host = host;
      plan.socket = lab.host(host).socket;
      plan.members = hosts;
      plan.send = host <= senders ? per_sender : 0;
      plan.size = load.size;
      plan.rate = load.rate;
      plan.expect = per_sender * static_cast<std::uint64_t>(senders);
      plan.timeout_ns = 60'000 * kNsPerMs;
      plan.binary = binary;
      results[static_cast<std::size_t>(host - 1)] = run_keel_client(plan, start);
    });
  }
  for (auto& thread : threads) thread.join();
  const double cpu = cpu_seconds(keel_agent_pids(lab)) - cpu_before;
  const std::uint64_t peak = memory ? memory->finish() : 0;
  std::vector<HostFigures> figures;
  for (auto& result : results) {
    if (!result.error.empty()) {
      return Error{"keel client on host " + std::to_string(result.host) + ": " + result.error};
    }
    figures.push_back({result.host <= senders, result.delivered, result.bytes, result.first_send_ns,
                       result.last_delivery_ns, std::move(result.latencies_ns)});
  }
  auto row = summarize("keel", hosts, load, figures);
  row["control"] = binary ? "binary" : "json";
  row["daemons_cpu_s"] = std::round(cpu * 100) / 100;
  if (load.sample_memory) {
    row["rss_loaded_kib"] = peak;
    row["rss_after_kib"] = memory->settled();
  }
  return row;
}

Result<json> corosync_traffic(lab::Lab& lab, const Corosync& corosync, const Load& load) {
  static int run = 0;
  ++run;
  const int hosts = lab.host_count();
  const int senders = load.all_send ? hosts : 1;
  const std::uint64_t per_sender = load.total / static_cast<std::uint64_t>(senders);
  std::optional<MemorySampler> memory;
  if (load.sample_memory) memory.emplace(pids_of(corosync.daemons));
  const double cpu_before = cpu_seconds(pids_of(corosync.daemons));
  std::vector<lab::ProcessId> clients;
  std::vector<std::string> outputs;
  for (int host = 1; host <= hosts; ++host) {
    std::vector<std::string> argv = {
        corosync.cpg_bench,
        "--group",
        "bench" + std::to_string(run),
        "--members",
        std::to_string(hosts),
        "--send",
        std::to_string(host <= senders ? per_sender : 0),
        "--size",
        std::to_string(load.size),
        "--expect",
        std::to_string(per_sender * static_cast<std::uint64_t>(senders)),
        "--timeout",
        "60"};
    if (load.rate > 0) {
      argv.push_back("--rate");
      argv.push_back(std::to_string(load.rate));
    }
    lab::SpawnOptions options;
    options.output_path = lab.host(host).dir + "/corosync/cpg-" + std::to_string(run) + ".json";
    outputs.push_back(options.output_path);
    auto client = lab::spawn(
        in_corosync_namespaces(corosync.daemons[static_cast<std::size_t>(host - 1)], argv),
        options);
    if (!client) return client.error();
    if (auto adopted = lab.adopt(client.value()); !adopted) return adopted.error();
    clients.push_back(client.value());
  }
  for (const auto& client : clients) {
    if (!lab::wait_gone(client, std::chrono::milliseconds(80'000))) {
      lab::terminate_all(clients, std::chrono::milliseconds(1000));
      return Error{"cpg_bench did not finish"};
    }
  }
  const double cpu = cpu_seconds(pids_of(corosync.daemons)) - cpu_before;
  const std::uint64_t peak = memory ? memory->finish() : 0;
  std::vector<HostFigures> figures;
  for (int host = 1; host <= hosts; ++host) {
    auto parsed = parse_last_line(outputs[static_cast<std::size_t>(host - 1)]);
    if (!parsed) return parsed.error();
    const json& result = parsed.value();
    const auto expected = per_sender * static_cast<std::uint64_t>(senders);
    if (result.value("delivered", std::uint64_t{0}) < expected) {
      return Error{"cpg_bench on host " + std::to_string(host) + " delivered only " +
                   std::to_string(result.value("delivered", 0)) + " of " +
                   std::to_string(expected)};
    }
    figures.push_back({host <= senders, result.value("delivered", std::uint64_t{0}),
                       result.value("bytes", std::uint64_t{0}),
                       result.value("first_send_ns", std::int64_t{0}),
                       result.value("last_delivery_ns", std::int64_t{0}),
                       result.value("latencies_ns", std::vector<std::int64_t>{})});
  }
  auto row = summarize("corosync", hosts, load, figures);
  row["daemons_cpu_s"] = std::round(cpu * 100) / 100;
  if (load.sample_memory) {
    row["rss_loaded_kib"] = peak;
    row["rss_after_kib"] = memory->settled();
  }
  return row;
}

Result<json> keel_failover(lab::Lab& lab, int repetitions) {
  const int hosts = lab.host_count();
  Memberships memberships;
  std::atomic<bool> stop{false};
  StartLine start(hosts);
  std::vector<std::thread> watchers;
  std::vector<std::string> errors(static_cast<std::size_t>(hosts));
  for (int host = 1; host <= hosts; ++host) {
    watchers.emplace_back([&, host] {
      ClientPlan plan;
      plan.host = host;
      plan.socket = lab.host(host).socket;
      plan.group = "watch";
      plan.members = hosts;
      plan.stop = &stop;
      plan.timeout_ns = 3'600'000 * kNsPerMs;
      plan.on_view = [&](int from, const ViewRecord& view) {
        memberships.add(from, view.seen_ns, view.members);
      };
      errors[static_cast<std::size_t>(host - 1)] = run_keel_client(plan, start).error;
    });
  }
  auto times = time_failovers(lab, memberships, repetitions, {});
  stop.store(true);
  start.abandon();
  for (auto& watcher : watchers) watcher.join();
  if (!times) return times.error();
  return failover_summary("keel", hosts, times.value());
}

Result<json> corosync_failover(lab::Lab& lab, const Corosync& corosync, int repetitions) {
  const int hosts = lab.host_count();
  std::vector<lab::ProcessId> watchers;
  std::vector<std::string> outputs;
  for (int host = 1; host <= hosts; ++host) {
    lab::SpawnOptions options;
    options.output_path = lab.host(host).dir + "/corosync/watch.jsonl";
    ::unlink(options.output_path.c_str());
    outputs.push_back(options.output_path);
    auto watcher =
        lab::spawn(in_corosync_namespaces(corosync.daemons[static_cast<std::size_t>(host - 1)],
                                          {corosync.cpg_bench, "--group", "watch", "--watch"}),
                   options);
    if (!watcher) return watcher.error();
    if (auto adopted = lab.adopt(watcher.value()); !adopted) return adopted.error();
    watchers.push_back(watcher.value());
  }
  Memberships memberships;
  std::vector<std::size_t> read(static_cast<std::size_t>(hosts), 0);
  auto poll = [&] {
    for (int host = 1; host <= hosts; ++host) {
      std::ifstream in(outputs[static_cast<std::size_t>(host - 1)]);
      std::string line;
      auto& done = read[static_cast<std::size_t>(host - 1)];
      for (std::size_t index = 0; std::getline(in, line); ++index) {
        if (index < done) continue;
        auto event = json::parse(line, nullptr, false);
        if (!event.is_object()) break;  // still being written: read it next time
        done = index + 1;
        if (event.value("event", "") != "confchg") continue;
        memberships.add(host, event.value("ns", std::int64_t{0}),
                        event.value("members", std::vector<int>{}));
      }
    }
  };
  auto times = time_failovers(lab, memberships, repetitions, poll);
  for (const auto& watcher : watchers) lab::send_signal(watcher, SIGKILL);
  for (const auto& watcher : watchers) lab::wait_gone(watcher, std::chrono::milliseconds(5000));
  if (!times) return times.error();
  return failover_summary("corosync", hosts, times.value());
}

}  // namespace keel::bench
