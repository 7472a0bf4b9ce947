// keel_volume_bench: keel's mirrored volume beside nbdkit's file plugin and the raw file, on the
// same machine, in the same run (bench/RESULTS.md).
//
//   keel_volume_bench [--size 2GiB] [--runtime 15] [--only keel,nbdkit,raw] [--skip-ext4]
//                     [--activity-log-extents N] [--busy-poll-us N] [--resync-rounds N]
//                     [--out FILE] [--keel PATH]
//                     [--work-dir /tmp]
//
// The targets (targets.hpp), one after the other in the order --only names them: keel (a lab of 3
// hosts, volume "data" in sync mode with its copies on h1 and h2, exported on h1), nbdkit (`nbdkit
// -U SOCK file FILE`, one copy) and the raw file. Each runs the same workloads (workloads.hpp): a
// durable sequential write and a sequential read with nbdcopy, fio's nbd engine at depths 1 and 32
// with and without a flush per write, ext4 on the export through nbdfuse and a loop device. keel
// alone also runs the resync after a full disconnect and the failover to h2 (keel_scenarios.hpp);
// the dirty bitmap is measured in-process first, and before the raw file, what a flush of two
// copies costs this one disk (disk_flush.hpp) and what a durable write of two copies costs this
// machine (disk_copy.hpp). Every measurement is a JSON line on stdout (and
// appended to --out); the tables with the ratios keel / nbdkit and the goals come at the end.
//
// Root only (namespaces, loop devices, mounts). Everything started is undone at the end or on
// an error or SIGINT/SIGTERM: the lab (also by its cleanup guard if this process is killed),
// nbdkit, nbdfuse mounts, loop devices and the work directory.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "config/volume_config.hpp"
#include "disk_copy.hpp"
#include "disk_flush.hpp"
#include "keel_scenarios.hpp"
#include "options.hpp"
#include "report.hpp"
#include "targets.hpp"
#include "workloads.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

// Removes the work directory (the random sources, leftovers) however the run ends.
struct WorkDir {
  std::string path;
  ~WorkDir() {
    std::error_code error;
    if (!path.empty()) std::filesystem::remove_all(path, error);
  }
};

std::string first_line(const std::vector<std::string>& argv) {
  auto ran = lab::run_capture(argv, Milliseconds{5000});
  if (!ran) return "?";
  std::string text = ran.value().out.empty() ? ran.value().err : ran.value().out;
  return text.substr(0, text.find('\n'));
}

std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

json machine_row(const Options& options) {
  std::ifstream debian("/etc/debian_version");
  std::string version;
  std::getline(debian, version);
  std::ifstream meminfo("/proc/meminfo");
  std::string mem;
  std::getline(meminfo, mem);
  return json{
      {"machine",
       {{"nproc", std::thread::hardware_concurrency()},
        {"kernel", first_line({"uname", "-r"})},
        {"debian", version},
        {"memory", mem},
        {"disk", first_line({"findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", options.work_dir})},
        {"nbdkit", first_line({"nbdkit", "--version"})},
        {"libnbd", first_line({"nbdcopy", "--version"})},
        {"fio", first_line({"fio", "--version"})},
        {"load_average", load_average()}}},
      {"size_bytes", options.size},
      {"runtime_s", options.runtime},
      {"only", options.only},
      {"skip_ext4", options.skip_ext4},
      {"activity_log_extents", options.activity_log_extents},
      {"busy_poll_us", options.busy_poll_us},
      {"write_cache", options.write_cache}};
}

// Runs one workload; a failure is reported and the next one goes on.
bool step(Target& target, Context& context, const std::string& what,
          const std::function<Result<Ok>()>& workload) {
  if (interrupted()) return false;
  std::cerr << "keel_volume_bench: " << target.name() << ": " << what << "\n";
  auto done = workload();
  if (done) return true;
  std::cerr << "keel_volume_bench: " << target.name() << ": " << what << ": "
            << done.error().message << "\n";
  context.report.add(
      json{{"target", target.name()}, {"test", what}, {"error", done.error().message}});
  return false;
}

constexpr std::chrono::seconds kSettleSeconds{5};

void bench_target(Target& target, Context& context, const std::string& resync_source) {
  const auto started_at = Clock::now();
  bool ok = step(target, context, "start", [&] { return target.start(); });
  if (ok) {
    context.report.add(json{{"target", target.name()},
                            {"test", "start"},
                            {"describe", target.describe()},
                            {"seconds", seconds_since(started_at)},
                            {"load_average", load_average()}});
    record_rss(target, context, "rss_idle_mb");
    const Options& options = context.options;
    if (test_wanted(options, "seq_write")) {
      ok &= step(target, context, "seq_write", [&] { return seq_write(target, context); });
    }
    if (test_wanted(options, "seq_read")) {
      ok &= step(target, context, "seq_read", [&] { return seq_read(target, context); });
    }
    ok &= step(target, context, "fio", [&] { return fio_jobs(target, context); });
    record_rss(target, context, "rss_after_mb");
    if (target.server_pid() != 0) {  // the raw file has no server to wait for
      // keel's agent hands its free heap back after two quiet looks, 2 s apart.
      std::this_thread::sleep_for(kSettleSeconds);
      record_rss(target, context, "rss_settled_mb");
    }
    if (!options.skip_ext4 && test_wanted(options, "ext4")) {
      ok &= step(target, context, "ext4", [&] { return ext4_jobs(target, context); });
    }
    if (auto* keel = dynamic_cast<KeelTarget*>(&target)) {
      if (test_wanted(options, "resync")) {
        ok &= step(target, context, "resync", [&] {
          return resync_after_disconnect(*keel, context, resync_source, options.size / 2);
        });
      }
      if (test_wanted(options, "promote")) {
        ok &= step(target, context, "promote", [&] { return time_to_promote(*keel, context); });
      }
    }
  }
  if (!ok) {
    if (auto* keel = dynamic_cast<KeelTarget*>(&target)) keel->keep_logs();
  }
  context.report.add(json{{"target", target.name()},
                          {"test", "done"},
                          {"seconds", seconds_since(started_at)},
                          {"load_average", load_average()}});
  target.stop();
}

// The targets named, each once, in the order first named.
std::vector<std::string> unique_targets(const std::vector<std::string>& named) {
  std::vector<std::string> order;
  for (const std::string& name : named) {
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  return order;
}

int run(const Options& options) {
  WorkDir work{options.work_dir};
  std::filesystem::create_directories(options.work_dir);
  Report report(options.out);
  report.add(machine_row(options));
  Context context{options, report, options.work_dir + "/source.img"};
  const std::string resync_source = options.work_dir + "/resync-source.img";
  std::cerr << "keel_volume_bench: writing " << options.size << " bytes of random data\n";
  if (auto made = write_random_file(context.source, options.size, 1); !made) {
    std::cerr << "keel_volume_bench: " << made.error().message << "\n";
    return 1;
  }
  if (wanted(options, "keel")) {
    if (auto made = write_random_file(resync_source, options.size / 2, 2); !made) {
      std::cerr << "keel_volume_bench: " << made.error().message << "\n";
      return 1;
    }
    bitmap_figures(context);
  }
  // In the order --only names them: what a target pays for fresh memory depends on what ran
  // before it (see bench/RESULTS.md), so both orders can be measured.
  for (const std::string& name : unique_targets(options.only)) {
    if (interrupted()) break;
    if (name == "keel") {
      KeelTarget keel(options);
      bench_target(keel, context, resync_source);
    } else {
      if (name == "raw" && test_wanted(options, "disk_flush")) {
        if (auto measured = disk_flush_pairs(context); !measured) {
          std::cerr << "keel_volume_bench: disk_flush: " << measured.error().message << "\n";
        }
      }
      if (name == "raw" && test_wanted(options, "disk_copy")) {
        if (auto measured = disk_copy_pairs(context); !measured) {
          std::cerr << "keel_volume_bench: disk_copy: " << measured.error().message << "\n";
        }
      }
      auto target = name == "nbdkit" ? make_nbdkit_target(options) : make_raw_target(options);
      bench_target(*target, context, resync_source);
    }
  }
  report.print_tables();
  return interrupted() ? 130 : 0;
}

// "2GiB", "256MiB", "512M", "1073741824": powers of 1024, as keel's configuration reads sizes.
std::optional<std::uint64_t> parse_size(const std::string& text) {
  std::size_t used = 0;
  std::uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string suffix = text.substr(used);
  if (suffix.size() == 3 && suffix.substr(1) == "iB") suffix = suffix.substr(0, 1);
  int shift = 0;
  if (suffix.empty())
    shift = 0;
  else if (suffix == "K")
    shift = 10;
  else if (suffix == "M")
    shift = 20;
  else if (suffix == "G")
    shift = 30;
  else if (suffix == "T")
    shift = 40;
  else
    return std::nullopt;
  return value << shift;
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  CLI::App app{"keel's mirrored volume beside nbdkit's file plugin and the raw file"};
  Options options;
  std::string size_text = "2GiB";
  app.add_option("--size", size_text, "volume size (and nbdkit's and the raw file's), e.g. 2GiB");
  app.add_option("--runtime", options.runtime, "seconds per time-based fio job")
      ->check(CLI::Range(1, 3600));
  app.add_option("--only", options.only,
                 "targets to measure, in this order (default: keel,nbdkit,raw)")
      ->delimiter(',')
      ->check(CLI::IsMember({"keel", "nbdkit", "raw"}));
  app.add_flag("--skip-ext4", options.skip_ext4, "skip the ext4 workloads");
  app.add_option("--tests", options.tests, "measurements to run (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember({"seq_write", "seq_read", "randwrite_qd1", "randwrite_qd32",
                             "randwrite_fsync", "randread_qd1", "randread_qd32", "ext4", "resync",
                             "promote", "disk_flush", "disk_copy"}));
  app.add_option("--activity-log-extents", options.activity_log_extents,
                 "keel's activity_log_extents for the volume (default: keel's, 1237)")
      ->check(CLI::Range(9, 4096));
  app.add_option("--busy-poll-us", options.busy_poll_us,
                 "keel's busy_poll_us for the volume (default: keel's, " +
                     std::to_string(keel::config::kDefaultBusyPollUs) + ")")
      ->check(CLI::Range(0, 1000));
  app.add_flag("!--no-write-cache", options.write_cache,
               "keel's volume with write_cache = false: the primary's large writes past its page "
               "cache");
  app.add_option("--resync-rounds", options.resync_rounds,
                 "resyncs to measure, each beside a dd and a copy across the link; the summary "
                 "takes the medians (default: 1)")
      ->check(CLI::Range(1, 50));
  app.add_option("--out", options.out, "also append the JSON rows to this file");
  app.add_option("--keel", options.keel, "the keel binary (default: ../keel beside this one)");
  std::string work_parent = "/tmp";
  app.add_option("--work-dir", work_parent,
                 "where the temporary directory keel-volume-bench-PID goes (the lab is in /tmp)");
  CLI11_PARSE(app, argc, argv);
  const auto size = parse_size(size_text);
  if (!size || *size < (64ull << 20) || *size % 4096 != 0) {
    std::cerr << "keel_volume_bench: --size must be at least 64MiB and a multiple of 4096\n";
    return 1;
  }
  options.size = *size;
  if (::geteuid() != 0) {
    std::cerr << "keel_volume_bench: needs root (namespaces, loop devices, mounts)\n";
    return 1;
  }
  if (options.keel.empty()) {
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
    options.keel = (self.parent_path().parent_path() / "keel").string();
  }
  options.work_dir = work_parent + "/keel-volume-bench-" + std::to_string(::getpid());
  start_signal_thread();
  return run(options);
}
