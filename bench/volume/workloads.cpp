#include "workloads.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <thread>

#include "lab/process.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

constexpr Milliseconds kCopyTimeout{30 * 60 * 1000};

json base_row(const Target& target, const std::string& test) {
  return json{{"target", target.name()}, {"test", test}};
}

// CPU seconds the target's server processes use during a workload.
class CpuMeter {
 public:
  explicit CpuMeter(const Target& target) : pids_(target.cpu_pids()) {
    for (const auto& [name, pid] : pids_) start_.push_back(cpu_seconds(pid));
  }
  json used() const {
    json out = json::object();
    for (std::size_t i = 0; i < pids_.size(); ++i) {
      out[pids_[i].first] = std::round((cpu_seconds(pids_[i].second) - start_[i]) * 100) / 100;
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, int>> pids_;
  std::vector<double> start_;
};

// fio's JSON: the output from its first '{' (the nbd engine prints a line before it).
Result<json> parse_fio(const std::string& out) {
  const auto start = out.find('{');
  if (start == std::string::npos) return Error{"fio printed no JSON: " + out.substr(0, 500)};
  auto parsed = json::parse(out.substr(start), nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("jobs") || parsed["jobs"].empty()) {
    return Error{"fio's JSON has no job"};
  }
  const json& job = parsed["jobs"][0];
  if (job.value("error", 0) != 0) return Error{"fio job error " + job["error"].dump()};
  return job;
}

// The CPU fio itself used over the job (the client's share of the machine): its usr_cpu and
// sys_cpu are percentages of the job's runtime (ms).
double fio_cpu_seconds(const json& job) {
  const double percent = job.value("usr_cpu", 0.0) + job.value("sys_cpu", 0.0);
  return percent / 100.0 * job.value("job_runtime", 0.0) / 1000.0;
}

double percentile_us(const json& latency, const char* which) {
  if (!latency.contains("percentile") || !latency["percentile"].contains(which)) return 0;
  return latency["percentile"][which].get<double>() / 1000.0;
}

struct Sampled {
  Result<std::string> out = Error{"not run"};
  double seconds = 0;
  std::uint64_t peak_rss = 0;
};

// Runs argv while sampling the RSS of `pid` every 100 ms.
Sampled run_sampled(const std::vector<std::string>& argv, Milliseconds timeout, int pid) {
  Sampled sampled;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    sampled.out = run_tool(argv, timeout, &sampled.seconds);
    done = true;
  });
  while (!done) {
    sampled.peak_rss = std::max(sampled.peak_rss, rss_bytes(pid));
    std::this_thread::sleep_for(Milliseconds{100});
  }
  runner.join();
  return sampled;
}

struct FioJob {
  const char* name;
  const char* rw;
  int depth;
  bool flush_each;
};

constexpr FioJob kFioJobs[] = {
    {"randwrite_qd1", "randwrite", 1, false},  {"randwrite_qd32", "randwrite", 32, false},
    {"randwrite_fsync", "randwrite", 1, true}, {"randread_qd1", "randread", 1, false},
    {"randread_qd32", "randread", 32, false},
};

std::vector<std::string> fio_argv(const Target& target, const FioJob& job, int runtime) {
  std::vector<std::string> argv{"fio",
                                std::string("--name=") + job.name,
                                std::string("--rw=") + job.rw,
                                "--bs=4k",
                                "--iodepth=" + std::to_string(job.depth),
                                "--time_based",
                                "--runtime=" + std::to_string(runtime),
                                "--norandommap",
                                "--randrepeat=0",
                                "--output-format=json"};
  if (target.uri().empty()) {
    argv.push_back("--filename=" + target.file());
    argv.push_back(job.depth > 1 ? "--ioengine=libaio" : "--ioengine=psync");
    if (job.flush_each) argv.push_back("--fdatasync=1");
  } else {
    argv.push_back("--ioengine=nbd");
    argv.push_back("--uri=" + target.uri());
    if (job.flush_each) argv.push_back("--fsync=1");
  }
  return argv;
}

// ext4 on the target: nbdfuse exposes the export as a file, a loop device makes it a block
// device (the raw target: a loop device on the file). Undone in the destructor: nbdfuse is
// killed first (an export that went away would otherwise leave the unmount waiting forever for
// ext4's last writes), then the lazy unmount, the loop device and the FUSE mount.
class Ext4Stack {
 public:
  Ext4Stack(const std::string& work_dir, const std::string& name)
      : fuse_dir_(work_dir + "/fuse-" + name), mount_point_(work_dir + "/mnt-" + name) {}
  ~Ext4Stack() { tear_down(); }
  Ext4Stack(const Ext4Stack&) = delete;
  Ext4Stack& operator=(const Ext4Stack&) = delete;

  Result<Ok> up(const Target& target) {
    std::filesystem::create_directories(mount_point_);
    std::string device_file = target.file();
    if (device_file.empty()) {
      std::filesystem::create_directories(fuse_dir_);
      lab::SpawnOptions spawn_options;
      spawn_options.output_path = fuse_dir_ + ".log";
      auto fuse = lab::spawn({"nbdfuse", fuse_dir_, "--unix", target.socket()}, spawn_options);
      if (!fuse) return fuse.error();
      nbdfuse_ = fuse.value();
      fuse_mounted_ = true;
      device_file = fuse_dir_ + "/nbd";
      const auto deadline = Clock::now() + Milliseconds{10000};
      struct stat info {};
      while (::stat(device_file.c_str(), &info) != 0 && Clock::now() < deadline) {
        std::this_thread::sleep_for(Milliseconds{20});
      }
      if (::stat(device_file.c_str(), &info) != 0) {
        return Error{"nbdfuse did not expose " + device_file};
      }
    }
    auto loop = run_tool({"losetup", "--find", "--show", "--direct-io=off", device_file},
                         Milliseconds{30000});
    if (!loop) return loop.error();
    loop_ = loop.value();
    while (!loop_.empty() && (loop_.back() == '\n' || loop_.back() == ' ')) loop_.pop_back();
    // Inode tables and journal written now, not by ext4lazyinit during the measurements.
    auto made = run_tool(
        {"mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", loop_},
        Milliseconds{300000});
    if (!made) return made.error();
    auto mounted = run_tool({"mount", "-t", "ext4", loop_, mount_point_}, Milliseconds{60000});
    if (!mounted) return mounted.error();
    mounted_ = true;
    return Ok{};
  }

  const std::string& mount_point() const { return mount_point_; }

  void tear_down() {
    if (nbdfuse_.valid()) {
      lab::send_signal(nbdfuse_, SIGKILL);
      lab::wait_gone(nbdfuse_, Milliseconds{10000});
      nbdfuse_ = {};
    }
    if (mounted_) {
      (void)lab::run_capture({"umount", "-l", mount_point_}, Milliseconds{30000});
      mounted_ = false;
    }
    if (!loop_.empty()) {
      (void)lab::run_capture({"losetup", "-d", loop_}, Milliseconds{30000});
      loop_.clear();
    }
    std::error_code error;
    if (fuse_mounted_) {
      // Not std::filesystem::exists: a FUSE mount whose server died fails stat (ENOTCONN).
      (void)lab::run_capture({"fusermount3", "-u", "-z", fuse_dir_}, Milliseconds{10000});
      std::filesystem::remove(fuse_dir_, error);
      std::filesystem::remove(fuse_dir_ + ".log", error);
      fuse_mounted_ = false;
    }
    std::filesystem::remove(mount_point_, error);
  }

 private:
  std::string fuse_dir_, mount_point_;
  lab::ProcessId nbdfuse_;
  bool fuse_mounted_ = false;  // nbdfuse was started: its mount may be there, alive or not
  std::string loop_;
  bool mounted_ = false;
};

}  // namespace

Result<Ok> write_random_file(const std::string& path, std::uint64_t bytes, std::uint64_t seed) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"open " + path + " failed"};
  // xorshift64*: incompressible enough for a block device, and fast.
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  std::vector<std::uint64_t> chunk((4u << 20) / 8);
  for (std::uint64_t done = 0; done < bytes;) {
    for (auto& word : chunk) {
      state ^= state >> 12;
      state ^= state << 25;
      state ^= state >> 27;
      word = state * 0x2545F4914F6CDD1Dull;
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes - done, 4u << 20));
    if (::write(fd, chunk.data(), n) != static_cast<ssize_t>(n)) {
      ::close(fd);
      return Error{"write " + path + " failed"};
    }
    done += n;
  }
  const bool synced = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!synced) return Error{"fdatasync " + path + " failed"};
  return Ok{};
}

void record_rss(Target& target, Context& context, const std::string& metric) {
  const int pid = target.server_pid();
  if (pid == 0) return;
  const double mb = static_cast<double>(rss_bytes(pid)) / 1e6;
  context.report.set(metric, target.name(), mb);
  json row = base_row(target, metric);
  row["rss_mb"] = round1(mb);
  context.report.add(row);
}

namespace {

// Times one nbdcopy of the whole volume and reports it as `test` (MB/s, and the server's CPU).
Result<Ok> timed_copy(Target& target, Context& context, const std::string& test,
                      const std::vector<std::string>& argv) {
  double seconds = 0;
  const CpuMeter cpu(target);
  auto copied = run_tool(argv, kCopyTimeout, &seconds);
  if (!copied) return copied.error();
  const double rate = mb_per_s(context.options.size, seconds);
  context.report.set(test + "_mbps", target.name(), rate);
  json row = base_row(target, test);
  row.update({{"bytes", context.options.size}, {"seconds", seconds}, {"mb_s", round1(rate)}});
  if (target.server_pid() != 0) row["server_cpu_s"] = cpu.used();
  context.report.add(row);
  return Ok{};
}

std::string export_or_file(const Target& target) {
  return target.uri().empty() ? target.file() : target.uri();
}

}  // namespace

Result<Ok> seq_write(Target& target, Context& context) {
  return timed_copy(target, context, "seq_write",
                    {"nbdcopy", "--flush", context.source, export_or_file(target)});
}

Result<Ok> seq_read(Target& target, Context& context) {
  return timed_copy(target, context, "seq_read", {"nbdcopy", export_or_file(target), "null:"});
}

Result<Ok> fio_jobs(Target& target, Context& context) {
  const Milliseconds timeout{(context.options.runtime + 300) * 1000};
  std::string errors;
  for (const FioJob& job : kFioJobs) {
    if (!test_wanted(context.options, job.name)) continue;
    const CpuMeter cpu(target);
    auto ran =
        run_sampled(fio_argv(target, job, context.options.runtime), timeout, target.server_pid());
    if (interrupted()) return Error{"interrupted"};
    auto parsed = ran.out ? parse_fio(ran.out.value()) : Result<json>(ran.out.error());
    if (!parsed) {
      errors += std::string(job.name) + ": " + parsed.error().message + "; ";
      continue;
    }
    const json& fio = parsed.value();
    const json& side = fio[std::string(job.rw) == "randread" ? "read" : "write"];
    const double iops = side.value("iops", 0.0);
    const double p50 = percentile_us(side["clat_ns"], "50.000000");
    const double p99 = percentile_us(side["clat_ns"], "99.000000");
    const std::string name = job.name;
    context.report.set(name + "_iops", target.name(), iops);
    context.report.set(name + "_p50_us", target.name(), p50);
    context.report.set(name + "_p99_us", target.name(), p99);
    json row = base_row(target, "fio");
    row.update({{"job", name},
                {"iodepth", job.depth},
                {"runtime_s", context.options.runtime},
                {"iops", std::round(iops)},
                {"clat_p50_us", round1(p50)},
                {"clat_p99_us", round1(p99)},
                {"server_rss_peak_mb", round1(static_cast<double>(ran.peak_rss) / 1e6)},
                {"client_cpu_s", round1(fio_cpu_seconds(fio))}});
    if (target.server_pid() != 0) row["server_cpu_s"] = cpu.used();
    if (job.flush_each && fio.contains("sync")) {
      const double f50 = percentile_us(fio["sync"]["lat_ns"], "50.000000");
      const double f99 = percentile_us(fio["sync"]["lat_ns"], "99.000000");
      context.report.set("randwrite_fsync_flush_p50_us", target.name(), f50);
      context.report.set("randwrite_fsync_flush_p99_us", target.name(), f99);
      row.update({{"flush_p50_us", round1(f50)}, {"flush_p99_us", round1(f99)}});
    }
    if (name == "randwrite_qd32" && target.server_pid() != 0) {
      context.report.set("rss_loaded_mb", target.name(), static_cast<double>(ran.peak_rss) / 1e6);
    }
    context.report.add(row);
  }
  if (!errors.empty()) return Error{errors};
  return Ok{};
}

Result<Ok> ext4_jobs(Target& target, Context& context) {
  Ext4Stack stack(context.options.work_dir, target.name());
  if (auto up = stack.up(target); !up) return Error{"ext4 stack: " + up.error().message};
  const std::string dir = stack.mount_point();
  // 1 GiB sequential write and its fsync, timed from fio's start to its end.
  const std::uint64_t seq_bytes = std::min<std::uint64_t>(1ull << 30, context.options.size / 2);
  double seconds = 0;
  auto seq = run_tool({"fio", "--name=ext4_seq", "--directory=" + dir, "--rw=write", "--bs=1M",
                       "--size=" + std::to_string(seq_bytes), "--ioengine=psync", "--end_fsync=1",
                       "--output-format=json"},
                      kCopyTimeout, &seconds);
  if (!seq) return seq.error();
  const double rate = mb_per_s(seq_bytes, seconds);
  context.report.set("ext4_seq_write_mbps", target.name(), rate);
  json row = base_row(target, "ext4_seq_write");
  row.update({{"bytes", seq_bytes}, {"seconds", seconds}, {"mb_s", round1(rate)}});
  if (auto parsed = parse_fio(seq.value())) {
    row["fio_write_mb_s"] = round1(parsed.value()["write"].value("bw_bytes", 0.0) / 1e6);
  }
  context.report.add(row);
  std::error_code error;
  std::filesystem::remove(dir + "/ext4_seq.0.0", error);
  // 4 KiB random writes, each followed by an fsync, in a file of up to 256 MiB.
  const std::uint64_t file_bytes = std::min<std::uint64_t>(256ull << 20, context.options.size / 8);
  auto ran =
      run_tool({"fio", "--name=ext4_fsync", "--directory=" + dir, "--rw=randwrite", "--bs=4k",
                "--size=" + std::to_string(file_bytes), "--ioengine=psync", "--fsync=1",
                "--time_based", "--runtime=" + std::to_string(context.options.runtime),
                "--randrepeat=0", "--output-format=json"},
               Milliseconds{(context.options.runtime + 600) * 1000});
  if (!ran) return ran.error();
  auto parsed = parse_fio(ran.value());
  if (!parsed) return parsed.error();
  const json& write = parsed.value()["write"];
  const double iops = write.value("iops", 0.0);
  context.report.set("ext4_fsync_iops", target.name(), iops);
  json fsync_row = base_row(target, "ext4_fsync");
  fsync_row.update({{"file_bytes", file_bytes},
                    {"runtime_s", context.options.runtime},
                    {"iops", std::round(iops)},
                    {"clat_p50_us", round1(percentile_us(write["clat_ns"], "50.000000"))},
                    {"clat_p99_us", round1(percentile_us(write["clat_ns"], "99.000000"))}});
  if (parsed.value().contains("sync")) {
    const json& sync = parsed.value()["sync"]["lat_ns"];
    fsync_row.update({{"fsync_p50_us", round1(percentile_us(sync, "50.000000"))},
                      {"fsync_p99_us", round1(percentile_us(sync, "99.000000"))}});
  }
  context.report.add(fsync_row);
  return Ok{};
}

}  // namespace keel::bench
