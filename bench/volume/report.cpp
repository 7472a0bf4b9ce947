#include "report.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <optional>
#include <vector>

namespace keel::bench {
namespace {

using nlohmann::json;

// A figure of the final table: the ratio is keel / baseline ("nbdkit", or "raw" where the
// comparison is with a plain local copy), and the goal, if any, is on that ratio.
struct Metric {
  const char* key;
  const char* label;
  const char* unit;
  const char* baseline;
  bool higher_is_better;
  std::optional<double> goal;
};

const std::vector<Metric>& metrics() {
  static const std::vector<Metric> all = {
      {"seq_write_mbps", "durable sequential write (nbdcopy --flush)", "MB/s", "nbdkit", true, 0.8},
      {"seq_read_mbps", "sequential read (nbdcopy to null:)", "MB/s", "nbdkit", true, 1.0},
      {"randwrite_qd1_iops", "4 KiB random write, depth 1", "IOPS", "nbdkit", true, std::nullopt},
      {"randwrite_qd32_iops", "4 KiB random write, depth 32", "IOPS", "nbdkit", true, 0.7},
      {"randwrite_fsync_iops", "4 KiB random write + flush each, depth 1", "IOPS", "nbdkit", true,
       std::nullopt},
      {"randread_qd1_iops", "4 KiB random read, depth 1", "IOPS", "nbdkit", true, 1.0},
      {"randread_qd32_iops", "4 KiB random read, depth 32", "IOPS", "nbdkit", true, 1.0},
      {"ext4_seq_write_mbps", "ext4: 1 GiB sequential write, end_fsync", "MB/s", "nbdkit", true,
       0.8},
      {"ext4_fsync_iops", "ext4: 4 KiB random write, fsync each", "IOPS", "nbdkit", true, 0.8},
      {"resync_mbps", "resync after a full disconnect (raw: dd conv=fsync)", "MB/s", "raw", true,
       0.8},
      {"resync_only_mbps", "resync, from its start (raw: dd conv=fsync)", "MB/s", "raw", true,
       std::nullopt},
      {"resync_vs_link_mbps", "resync, against a plain copy across the link (raw: link_copy)",
       "MB/s", "raw", true, std::nullopt},
      {"promote_total_ms", "kill primary -> promoted -> first read on h2", "ms", "", false,
       std::nullopt},
      {"promote_command_ms", "`keel volume promote` (the successful one)", "ms", "", false,
       std::nullopt},
      {"rss_idle_mb", "server RSS, idle", "MB", "nbdkit", false, std::nullopt},
      {"rss_loaded_mb", "server RSS, peak under depth-32 random writes", "MB", "nbdkit", false,
       std::nullopt},
      {"rss_after_mb", "server RSS, idle after the fio jobs", "MB", "nbdkit", false, std::nullopt},
      {"rss_settled_mb", "server RSS, 5 s after the fio jobs", "MB", "nbdkit", false, std::nullopt},
  };
  return all;
}

const std::vector<std::pair<const char*, const char*>>& latency_jobs() {
  static const std::vector<std::pair<const char*, const char*>> jobs = {
      {"randwrite_qd1", "4 KiB random write, depth 1"},
      {"randwrite_qd32", "4 KiB random write, depth 32"},
      {"randwrite_fsync", "4 KiB random write + flush, depth 1 (write latency)"},
      {"randwrite_fsync_flush", "... the flush after each write"},
      {"randread_qd1", "4 KiB random read, depth 1"},
      {"randread_qd32", "4 KiB random read, depth 32"},
  };
  return jobs;
}

std::string number(double value) {
  if (value >= 100) {  // whole, with thousands separators: 12,345
    std::string digits = std::to_string(std::llround(value));
    for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3) digits.insert(at, ",");
    return digits;
  }
  if (value >= 10) return fmt::format("{:.1f}", value);
  return fmt::format("{:.2f}", value);
}

}  // namespace

Report::Report(const std::string& path) {
  if (!path.empty()) out_.open(path, std::ios::app);
}

void Report::add(const json& row) {
  std::cout << row.dump() << std::endl;
  if (out_) out_ << row.dump() << std::endl;
}

void Report::set(const std::string& metric, const std::string& target, double value) {
  figures_[metric][target] = value;
}

void Report::print_tables() {
  auto cell = [&](const std::string& metric, const std::string& target) -> std::string {
    auto row = figures_.find(metric);
    if (row == figures_.end()) return "";
    auto found = row->second.find(target);
    return found == row->second.end() ? "" : number(found->second);
  };
  json summary = json::object();
  std::cout << "\n| measurement | unit | keel | nbdkit | raw file | ratio | goal | met |\n"
            << "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const Metric& metric : metrics()) {
    auto row = figures_.find(metric.key);
    if (row == figures_.end()) continue;
    std::string ratio_text, goal_text, met_text;
    auto keel = row->second.find("keel");
    auto base = row->second.find(metric.baseline);
    if (keel != row->second.end() && base != row->second.end() && base->second > 0) {
      const double ratio = keel->second / base->second;
      ratio_text = fmt::format("{:.2f} (vs {})", ratio, metric.baseline);
      summary[metric.key] = {
          {"keel", keel->second}, {metric.baseline, base->second}, {"ratio", ratio}};
      if (metric.goal) {
        goal_text = fmt::format(">= {:.1f}", *metric.goal);
        met_text = ratio >= *metric.goal ? "yes" : "**no**";
        summary[metric.key]["goal"] = *metric.goal;
        summary[metric.key]["met"] = ratio >= *metric.goal;
      }
    } else if (metric.goal) {
      goal_text = fmt::format(">= {:.1f}", *metric.goal);
      met_text = "not measured";
    }
    std::cout << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", metric.label,
                             metric.unit, cell(metric.key, "keel"), cell(metric.key, "nbdkit"),
                             cell(metric.key, "raw"), ratio_text, goal_text, met_text);
  }
  std::cout << "\n| fio job | keel p50 / p99 µs | nbdkit p50 / p99 µs | raw file p50 / p99 µs |\n"
            << "| --- | --- | --- | --- |\n";
  for (const auto& [job, label] : latency_jobs()) {
    const std::string p50 = std::string(job) + "_p50_us", p99 = std::string(job) + "_p99_us";
    if (figures_.find(p50) == figures_.end()) continue;
    auto both = [&](const char* target) {
      const std::string a = cell(p50, target), b = cell(p99, target);
      return a.empty() ? std::string() : a + " / " + b;
    };
    std::cout << fmt::format("| {} | {} | {} | {} |\n", label, both("keel"), both("nbdkit"),
                             both("raw"));
  }
  std::cout << std::endl;
  add(json{{"summary", summary}});
}

}  // namespace keel::bench
