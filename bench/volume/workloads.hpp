// The workloads every target runs, the same way for each (targets.hpp):
//   seq_write   `nbdcopy --flush SOURCE EXPORT` of --size bytes of random data (the raw file:
//               `nbdcopy --flush SOURCE FILE`, the same copier writing the file itself)
//   seq_read    `nbdcopy EXPORT null:` (raw: `nbdcopy FILE null:`)
//   fio_jobs    fio's nbd engine (raw: psync at depth 1, libaio at depth 32) over the whole
//               volume, time-based: 4 KiB random writes at depth 1 and 32, at depth 1 with a flush
//               after each (raw: fdatasync), random reads at depth 1 and 32. IOPS and p50/p99
//               completion latency from fio's JSON. The server's RSS is sampled throughout.
//   ext4_jobs   ext4 on the export through nbdfuse and a loop device (raw: a loop device on the
//               file): a 1 GiB sequential write with end_fsync, then 4 KiB random writes with an
//               fsync after each.
// Each records its figures in the report and returns an Error if it could not finish.
//
// Thread-safety: none.
#pragma once

#include <string>

#include "options.hpp"
#include "report.hpp"
#include "targets.hpp"

namespace keel::bench {

struct Context {
  const Options& options;
  Report& report;
  std::string source;  // --size bytes of random data
};

// Writes `bytes` of random data (a fixed seed) to `path`.
Result<Ok> write_random_file(const std::string& path, std::uint64_t bytes, std::uint64_t seed);

Result<Ok> seq_write(Target& target, Context& context);
Result<Ok> seq_read(Target& target, Context& context);
Result<Ok> fio_jobs(Target& target, Context& context);
Result<Ok> ext4_jobs(Target& target, Context& context);

// Records the server's RSS now as `metric` (rss_idle_mb, rss_after_mb).
void record_rss(Target& target, Context& context, const std::string& metric);

}  // namespace keel::bench
