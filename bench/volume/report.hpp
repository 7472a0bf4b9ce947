// The volume benchmark's report: every measurement is printed as a JSON line (and appended to
// --out) as soon as it is made, and its figures are kept for the tables printed at the end:
// one row per figure with keel, nbdkit and the raw file side by side, the ratio keel / baseline
// and whether the goal is met; then fio's latency percentiles.
//
// Thread-safety: none; the benchmark reports from one thread.
#pragma once

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace keel::bench {

class Report {
 public:
  explicit Report(const std::string& path);

  // Prints `row` as a JSON line and appends it to the --out file.
  void add(const nlohmann::json& row);
  // Keeps one figure for the final tables: `metric` (see report.cpp) of `target`.
  void set(const std::string& metric, const std::string& target, double value);
  // The tables (markdown), on stdout, and a summary JSON line.
  void print_tables();

 private:
  std::ofstream out_;
  std::map<std::string, std::map<std::string, double>> figures_;
};

}  // namespace keel::bench
