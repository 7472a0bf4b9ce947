// keel_vip_bench: keel's floating IPs beside keepalived and ucarp in the same lab, in the same
// run, seen by the same client probe (bench/RESULTS.md).
//
//   keel_vip_bench [--hosts 4] [--addresses 4] [--repetitions 10] [--only keel,keepalived,ucarp]
//                  [--faults link_down,freeze,stop,drain] [--keel-configs defaults,tuned]
//                  [--tuned TOKEN,CONSENSUS,JOIN,HOLD] [--interval-ms 10] [--timeout-ms 50]
//                  [--in-flight N] [--out FILE] [--keel PATH]
//
// One lab (src/lab, as `keel lab` does) with the client namespace: an HTTP responder on every
// host (`keel lab serve`) and one prober in the client (`keel lab probe`) connecting to every
// floating address every --interval-ms, several probes of an address in flight at once so that
// an outage's end is seen to within one interval. The tools run one after the other on the same
// hosts: keel with its default ring timeouts, keel with a fast-LAN profile (--tuned),
// keepalived with the fastest advertisement interval it accepts and with its default, ucarp
// with its default. For each tool and fault, each repetition waits until placement has settled,
// picks a host holding an address (the hosts take turns), injects the fault, waits until the
// client gets every address from another host, then a second more, and measures from the probe
// log the outage of each address the victim held (outage.hpp) and every failed probe; then it
// undoes the fault and measures the same until placement has settled again. A row per tool,
// configuration and fault is printed as a JSON line and appended to --out.
//
// Root only (namespaces). The lab is torn down at the end, and by its cleanup guard if this
// process dies first.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "core/ring/tunables.hpp"
#include "lab/guarded_lab.hpp"
#include "lab/lab.hpp"
#include "lab/names.hpp"
#include "observer.hpp"
#include "outage.hpp"
#include "tools.hpp"

namespace keel::bench {
namespace {

using lab::Milliseconds;
using nlohmann::json;

constexpr std::uint16_t kHttpPort = 8080;
constexpr Milliseconds kSettleHold{1000};  // placement unchanged this long counts as settled
constexpr Milliseconds kSettleTimeout{30000};
constexpr Milliseconds kTakeoverTimeout{20000};
constexpr Milliseconds kTail{1000};  // watched after the takeover, for late failures

struct Options {
  int hosts = 4;
  int addresses = 4;
  int repetitions = 10;
  std::vector<std::string> only{"keel", "keepalived", "ucarp"};
  std::vector<std::string> faults{"link_down", "freeze", "stop", "drain"};
  // keel's tuned profile: token, consensus and join timeouts and token hold, in ms.
  std::vector<std::uint32_t> tuned{10, 5, 1, 2};
  std::vector<std::string> keel_configs{"defaults", "tuned"};
  std::string keel_log_level = "warn";  // for the agents' logs in the lab directory
  int interval_ms = 10;
  int timeout_ms = 50;
  int in_flight = 0;  // 0: enough that a probe starts every interval (timeout / interval + 1)
  std::string out;
  std::string keel;
  bool keep_logs = false;  // keep the lab's directory after a clean run too
};

std::vector<std::string> floating_addresses(int count) {
  std::vector<std::string> addresses;
  for (int i = 0; i < count; ++i) {
    addresses.push_back(lab::kAddressBase + std::to_string(lab::kFirstFloatingOctet + i));
  }
  return addresses;
}

// One pool of every floating address, no health check (keepalived and ucarp have none here
// either), the default announcements.
std::string vip_toml(const std::vector<std::string>& addresses) {
  std::string list;
  for (const auto& address : addresses) {
    list +=
        (list.empty() ? "\"" : ", \"") + address + "/" + std::to_string(lab::kPrefixLength) + "\"";
  }
  return "[[vip.pool]]\nname = \"bench\"\naddresses = [" + list + "]\ninterface = \"eth0\"\n";
}

using lab::GuardedLab;

Result<Ok> build_lab(GuardedLab& built, const Options& options, const std::string& keel,
                     const lab::HostConfigSettings& config) {
  lab::LabOptions lab_options;
  lab_options.hosts = options.hosts;
  lab_options.keel_binary = keel;
  lab_options.config = config;
  lab_options.client = true;
  lab_options.progress = [](const std::string& line) { std::cerr << "lab: " << line << "\n"; };
  return built.up(std::move(lab_options));
}

int probes_in_flight(const Options& options) {
  return options.in_flight > 0 ? options.in_flight : options.timeout_ms / options.interval_ms + 1;
}

Result<Ok> start_client_side(lab::Lab& lab, const Options& options,
                             const std::vector<std::string>& addresses,
                             const std::string& probe_log) {
  for (int host = 1; host <= lab.host_count(); ++host) {
    auto started = lab.start_in(host,
                                {lab.keel_binary(), "lab", "serve", "--port",
                                 std::to_string(kHttpPort), "--name", lab.host(host).name},
                                lab.host(host).dir + "/serve.log");
    if (!started) return started.error();
  }
  std::vector<std::string> argv = {lab.keel_binary(),
                                   "lab",
                                   "probe",
                                   "--port",
                                   std::to_string(kHttpPort),
                                   "--interval-ms",
                                   std::to_string(options.interval_ms),
                                   "--timeout-ms",
                                   std::to_string(options.timeout_ms),
                                   "--in-flight",
                                   std::to_string(probes_in_flight(options)),
                                   "--out",
                                   probe_log};
  for (const auto& address : addresses) {
    argv.push_back("--target");
    argv.push_back(address);
  }
  auto prober = lab.start_in(lab::Lab::kClient, argv, lab.dir() + "/probe.err");
  if (!prober) return prober.error();
  return Ok{};
}

class Report {
 public:
  explicit Report(const std::string& path) {
    if (!path.empty()) out_.open(path, std::ios::app);
  }
  void add(const json& row) {
    std::cout << row.dump() << std::endl;
    if (out_) out_ << row.dump() << std::endl;
  }

 private:
  std::ofstream out_;
};

// The host that suffers repetition `rep`: the hosts take turns, skipping any that holds nothing.
std::optional<int> pick_victim(const Holders& holders, int hosts, int rep) {
  std::set<int> holding;
  for (const auto& [address, on] : holders) holding.insert(on.begin(), on.end());
  for (int step = 0; step < hosts; ++step) {
    const int host = (rep + step) % hosts + 1;
    if (holding.count(host) != 0) return host;
  }
  return std::nullopt;
}

// What one tool, configuration and fault gave over its repetitions.
struct Tally {
  std::vector<double> outages_ms;  // one per address the victim held, per repetition
  std::uint64_t failed_probes = 0;
  std::uint64_t worst_rep_failed = 0;
  std::vector<double> restore_outages_ms;  // the longest per repetition
  std::uint64_t restore_failed_probes = 0;
  int repetitions = 0;
  std::vector<std::string> errors;
};

void measure_window(Observer& observer, double from_ms, double to_ms,
                    const std::vector<std::string>& victims, std::vector<double>& outages_ms,
                    std::uint64_t& failed) {
  (void)observer.read_probes();
  const auto seen = outages(observer.probes(), from_ms, to_ms);
  for (const auto& address : victims) {
    auto found = seen.find(address);
    outages_ms.push_back(found == seen.end() ? 0 : found->second.outage_ms);
  }
  for (const auto& [address, outage] : seen) failed += outage.failures;
}

// One repetition: settle, fault, takeover, restore, settle. Errors end the repetition.
Result<Ok> repeat_once(Tool& tool, Fault fault, Observer& observer, int hosts, int rep,
                       Tally& tally) {
  auto before = observer.wait_settled(kSettleHold, kSettleTimeout);
  if (!before) return before.error();
  const auto victim = pick_victim(before.value(), hosts, rep);
  if (!victim) return Error{"nobody holds an address"};
  std::vector<std::string> held;
  for (const auto& [address, on] : before.value()) {
    if (on.front() == *victim) held.push_back(address);
  }
  const double fault_ms = lab::realtime_ms();
  if (auto injected = tool.inject(*victim, fault); !injected) return injected;
  auto served = observer.wait_served_without(*victim, fault_ms, kTakeoverTimeout);
  std::this_thread::sleep_for(kTail);
  const double restore_ms = lab::realtime_ms();
  std::vector<double> outages_ms;
  std::uint64_t failed = 0;
  measure_window(observer, fault_ms, restore_ms, held, outages_ms, failed);
  if (auto restored = tool.restore(*victim, fault); !restored) return restored;
  if (!served) return served;
  auto after = observer.wait_settled(kSettleHold, kSettleTimeout);
  if (!after) return Error{"after restoring: " + after.error().message};
  std::vector<double> restore_outages;
  std::uint64_t restore_failed = 0;
  measure_window(observer, restore_ms, lab::realtime_ms(), observer.addresses(), restore_outages,
                 restore_failed);
  tally.outages_ms.insert(tally.outages_ms.end(), outages_ms.begin(), outages_ms.end());
  tally.failed_probes += failed;
  tally.worst_rep_failed = std::max(tally.worst_rep_failed, failed);
  tally.restore_outages_ms.push_back(spread(restore_outages).max);
  tally.restore_failed_probes += restore_failed;
  ++tally.repetitions;
  json progress{{"victim", "h" + std::to_string(*victim)},
                {"held", held},
                {"outages_ms", outages_ms},
                {"failed", failed},
                {"restore_failed", restore_failed}};
  std::cerr << tool.name() << " " << tool.config() << " " << fault_name(fault) << " #" << rep
            << ": " << progress.dump() << "\n";
  return Ok{};
}

json tally_row(const Tool& tool, Fault fault, const Options& options, const Tally& tally) {
  auto rounded = [](double value) { return std::round(value * 10) / 10; };
  const Spread outage = spread(tally.outages_ms);
  const Spread restore = spread(tally.restore_outages_ms);
  json row{{"tool", tool.name()},
           {"config", tool.config()},
           {"fault", fault_name(fault)},
           {"hosts", options.hosts},
           {"addresses", options.addresses},
           {"repetitions", tally.repetitions},
           {"outage_ms_median", rounded(outage.median)},
           {"outage_ms_max", rounded(outage.max)},
           {"outage_samples", outage.count},
           {"failed_probes", tally.failed_probes},
           {"failed_probes_worst_repetition", tally.worst_rep_failed},
           {"restore_outage_ms_median", rounded(restore.median)},
           {"restore_outage_ms_max", rounded(restore.max)},
           {"restore_failed_probes", tally.restore_failed_probes}};
  json samples = json::array();
  for (double value : tally.outages_ms) samples.push_back(rounded(value));
  row["outages_ms"] = samples;
  if (!tally.errors.empty()) row["errors"] = tally.errors;
  return row;
}

// False when anything failed (reported as rows with an error).
bool bench_tool(Tool& tool, const Options& options, Observer& observer, Report& report) {
  if (auto started = tool.start(); !started) {
    report.add(json{{"tool", tool.name()},
                    {"config", tool.config()},
                    {"error", "start: " + started.error().message}});
    return false;
  }
  bool clean = true;
  for (Fault fault : tool.faults()) {
    if (std::find(options.faults.begin(), options.faults.end(), fault_name(fault)) ==
        options.faults.end()) {
      continue;
    }
    Tally tally;
    int failures = 0;
    for (int rep = 0; tally.repetitions < options.repetitions; ++rep) {
      if (auto done = repeat_once(tool, fault, observer, options.hosts, rep, tally); !done) {
        std::cerr << tool.name() << " " << tool.config() << " " << fault_name(fault) << " #" << rep
                  << ": " << done.error().message << "\n";
        tally.errors.push_back(done.error().message);
        clean = false;
        if (++failures > options.repetitions / 2) break;
      }
    }
    report.add(tally_row(tool, fault, options, tally));
  }
  if (auto stopped = tool.stop(); !stopped) {
    report.add(json{{"tool", tool.name()},
                    {"config", tool.config()},
                    {"error", "stop: " + stopped.error().message}});
    clean = false;
  }
  return clean;
}

// Deletes any floating address a stopped tool left behind, so the next starts from nothing.
void clear_addresses(const lab::Lab& lab, const std::vector<std::string>& addresses) {
  for (int host = 1; host <= lab.host_count(); ++host) {
    auto present = lab.addresses(host);
    if (!present) continue;
    for (const auto& address : present.value()) {
      if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) continue;
      (void)lab::run_capture(
          {"ip", "-n", lab.netns_of(host), "addr", "del",
           address + "/" + std::to_string(lab::kPrefixLength), "dev", lab::kInnerInterface},
          Milliseconds{5000});
    }
  }
}

std::string first_line(const std::vector<std::string>& argv) {
  auto ran = lab::run_capture(argv, Milliseconds{5000});
  if (!ran) return "?";
  // keepalived prints its version on stderr.
  std::string text = ran.value().out.empty() ? ran.value().err : ran.value().out;
  return text.substr(0, text.find('\n'));
}

json machine_row(const Options& options) {
  std::ifstream debian("/etc/debian_version");
  std::string version;
  std::getline(debian, version);
  return json{{"machine",
               {{"nproc", std::thread::hardware_concurrency()},
                {"kernel", first_line({"uname", "-r"})},
                {"debian", version},
                {"keepalived", first_line({"keepalived", "--version"})}}},
              {"hosts", options.hosts},
              {"addresses", options.addresses},
              {"probe_interval_ms", options.interval_ms},
              {"probe_timeout_ms", options.timeout_ms},
              {"probes_in_flight", probes_in_flight(options)}};
}

struct Timeouts {
  std::uint32_t token_timeout_ms, consensus_timeout_ms, join_timeout_ms;
};

std::string describe_timeouts(const Timeouts& timeouts) {
  return "token " + std::to_string(timeouts.token_timeout_ms) + " ms, consensus " +
         std::to_string(timeouts.consensus_timeout_ms) + " ms, join " +
         std::to_string(timeouts.join_timeout_ms) + " ms";
}

std::string describe_timeouts(const ring::RingTunables& tunables) {
  return describe_timeouts(
      Timeouts{tunables.token_timeout_ms, tunables.consensus_timeout_ms, tunables.join_timeout_ms});
}

bool wanted(const Options& options, const std::string& tool) {
  return std::find(options.only.begin(), options.only.end(), tool) != options.only.end();
}

bool configured(const Options& options, const std::string& keel_config) {
  return std::find(options.keel_configs.begin(), options.keel_configs.end(), keel_config) !=
         options.keel_configs.end();
}

int run(const Options& options, const std::string& keel) {
  Report report(options.out);
  report.add(machine_row(options));
  const auto addresses = floating_addresses(options.addresses);
  lab::HostConfigSettings keel_default;
  keel_default.log_level = options.keel_log_level;
  keel_default.extra = vip_toml(addresses);
  // A fast-LAN profile (--tuned): the ring loses the token after a few tens of ms of silence,
  // so only for a LAN with nothing between the hosts and an agent that runs real-time.
  const ring::RingTunables defaults;
  const Timeouts tuned{options.tuned[0], options.tuned[1], options.tuned[2]};
  lab::HostConfigSettings keel_tuned = keel_default;
  keel_tuned.ring = {{"token_timeout_ms", std::to_string(tuned.token_timeout_ms)},
                     {"consensus_timeout_ms", std::to_string(tuned.consensus_timeout_ms)},
                     {"join_timeout_ms", std::to_string(tuned.join_timeout_ms)},
                     {"token_hold_ms", std::to_string(options.tuned[3])}};

  GuardedLab built("keel_vip_bench");
  built.keep_logs = true;  // until every tool has run cleanly
  if (auto made = build_lab(built, options, keel, keel_default); !made) {
    std::cerr << "keel_vip_bench: " << made.error().message << "\n";
    return 1;
  }
  lab::Lab& lab = *built.lab;
  const std::string probe_log = lab.dir() + "/probe.jsonl";
  if (auto started = start_client_side(lab, options, addresses, probe_log); !started) {
    std::cerr << "keel_vip_bench: " << started.error().message << "\n";
    return 1;
  }
  Observer observer(lab, addresses, probe_log);

  std::vector<std::unique_ptr<Tool>> tools;
  if (wanted(options, "keel") && configured(options, "defaults")) {
    tools.push_back(
        make_keel_tool(lab, "defaults (" + describe_timeouts(defaults) + ")", keel_default));
  }
  if (wanted(options, "keel") && configured(options, "tuned")) {
    tools.push_back(make_keel_tool(lab,
                                   "fast LAN (" + describe_timeouts(tuned) + ", hold " +
                                       std::to_string(options.tuned[3]) + " ms)",
                                   keel_tuned));
  }
  if (wanted(options, "keepalived")) {
    tools.push_back(make_daemon_tool(lab, "VRRPv3, advert_int 0.01 s (fastest)",
                                     DaemonSettings{DaemonKind::keepalived, 3, "0.01", addresses}));
    tools.push_back(make_daemon_tool(lab, "VRRPv2, advert_int 1 s (default)",
                                     DaemonSettings{DaemonKind::keepalived, 2, "1", addresses}));
  }
  if (wanted(options, "ucarp")) {
    tools.push_back(make_daemon_tool(lab, "advbase 1 s (default), broadcast to 198.18.0.255",
                                     DaemonSettings{DaemonKind::ucarp, 2, "1", addresses}));
  }
  // Lab::up started keel's agents with the default configuration; stop them unless that is what
  // is measured first, so that the first tool starts from no holder with its own configuration.
  if (!wanted(options, "keel") || !configured(options, "defaults")) {
    auto none = make_keel_tool(lab, "", keel_default);
    (void)none->stop();
  }
  bool clean = true;
  for (auto& tool : tools) {
    clean = bench_tool(*tool, options, observer, report) && clean;
    clear_addresses(lab, addresses);
  }
  built.keep_logs = options.keep_logs || !clean;
  return 0;
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  CLI::App app{"keel's floating IPs beside keepalived and ucarp, in one lab (bench/RESULTS.md)"};
  Options options;
  app.add_option("--hosts", options.hosts, "hosts in the lab")->check(CLI::Range(2, 8));
  app.add_option("--addresses", options.addresses, "floating addresses")->check(CLI::Range(1, 20));
  app.add_option("--repetitions", options.repetitions, "repetitions per tool and fault")
      ->check(CLI::Range(1, 1000));
  app.add_option("--only", options.only, "tools to measure")
      ->delimiter(',')
      ->check(CLI::IsMember({"keel", "keepalived", "ucarp"}));
  app.add_option("--faults", options.faults, "faults to inject")
      ->delimiter(',')
      ->check(CLI::IsMember({"link_down", "freeze", "stop", "drain"}));
  app.add_option("--keel-configs", options.keel_configs, "keel's configurations to measure")
      ->delimiter(',')
      ->check(CLI::IsMember({"defaults", "tuned"}));
  app.add_option("--keel-log-level", options.keel_log_level,
                 "keel agents' log level (their logs are in the lab directory; see --keep-logs)")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--tuned", options.tuned,
                 "keel's tuned profile: token,consensus,join timeouts and token hold in ms")
      ->delimiter(',')
      ->expected(4);
  app.add_option("--interval-ms", options.interval_ms, "probe interval per address")
      ->check(CLI::Range(1, 1000));
  app.add_option("--timeout-ms", options.timeout_ms, "probe timeout")->check(CLI::Range(1, 5000));
  app.add_option("--in-flight", options.in_flight,
                 "probes of one address in flight at once (default: timeout / interval + 1, so "
                 "that one starts every interval)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--out", options.out, "also append the JSON rows to this file");
  app.add_option("--keel", options.keel, "the keel binary (default: ../keel beside this one)");
  app.add_flag("--keep-logs", options.keep_logs,
               "keep the lab's directory (agents', daemons' and probes' logs) after a clean run; "
               "after a failure it is kept anyway");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0) {
    std::cerr << "keel_vip_bench: needs root (it builds network namespaces)\n";
    return 1;
  }
  std::string keel = options.keel;
  if (keel.empty()) {
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
    keel = (self.parent_path().parent_path() / "keel").string();
  }
  return run(options, keel);
}
