#include "keel_scenarios.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>

#include "core/common/median.hpp"
#include "core/volume/dirty_bitmap.hpp"
#include "link_copy.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

constexpr Milliseconds kResyncTimeout{30 * 60 * 1000};
constexpr Milliseconds kPoll{50};
constexpr std::uint64_t kLinkCopyAlignment = 4096;
constexpr std::uint64_t kBytesPerBitmapPage = volume::kBitsPerPage * volume::kBlockBytes;

double ms_since(Clock::time_point start) { return seconds_since(start) * 1000; }

std::uint64_t json_u64(const json& object, const char* key) {
  return object.contains(key) && object[key].is_number() ? object[key].get<std::uint64_t>() : 0;
}

struct Retried {
  int attempts = 0;
  double last_attempt_ms = 0;  // how long the attempt that succeeded took
};

// Runs `attempt` every 10 ms until it succeeds (returns nothing) or `limit` has passed since
// `start`; the error then names `what` and the last attempt's complaint.
Result<Retried> retry_every_10ms(Clock::time_point start, Milliseconds limit,
                                 const std::string& what,
                                 const std::function<std::optional<std::string>()>& attempt) {
  Retried retried;
  std::string last_error;
  for (;;) {
    if (interrupted()) return Error{"interrupted"};
    if (Clock::now() - start > limit) {
      return Error{what + " in " + std::to_string(limit.count() / 1000) + " s: " + last_error};
    }
    ++retried.attempts;
    const auto began = Clock::now();
    auto complaint = attempt();
    if (!complaint) {
      retried.last_attempt_ms = ms_since(began);
      return retried;
    }
    last_error = *complaint;
    std::this_thread::sleep_for(Milliseconds{10});
  }
}

// The same bytes copied from h1's copy across the lab's link into a new file beside h2's copy,
// with nothing of keel in between (link_copy.hpp): the part of the resync's cost that is the
// link and the disk, not keel.
Result<double> link_copy_figures(KeelTarget& keel, Context& context, std::uint64_t bytes,
                                 const json& round) {
  const lab::Lab& lab = keel.lab();
  LinkCopy copy{.sender_netns = lab.host(1).netns,
                .receiver_netns = lab.host(2).netns,
                .receiver_address = lab.host(2).address,
                .source = keel.backing_of(1),
                .target = lab.host(2).dir + "/link-copy.img",
                .bytes = bytes / kLinkCopyAlignment * kLinkCopyAlignment};
  auto seconds = link_copy(copy);
  std::error_code error;
  std::filesystem::remove(copy.target, error);
  if (!seconds) return Error{"copy across the link: " + seconds.error().message};
  const double rate = mb_per_s(copy.bytes, seconds.value().overwrite);
  json row{{"target", "raw"}, {"test", "link_copy"}};
  row.update(round);
  row.update({{"what",
               "h1's copy -> TCP across the lab bridge -> O_DIRECT file on "
               "h2, one thread each side, 1 MiB pieces, then fdatasync"},
              {"bytes", copy.bytes},
              {"new_file_seconds", seconds.value().new_file},
              {"new_file_mb_s", round1(mb_per_s(copy.bytes, seconds.value().new_file))},
              {"overwrite_seconds", seconds.value().overwrite},
              {"mb_s", round1(rate)}});
  context.report.add(row);
  return rate;
}

// MB/s of one resync and of the two copies measured beside it.
struct ResyncRound {
  double keel = 0;       // from h2's agent's start
  double keel_only = 0;  // from when h1 was seen resyncing
  double dd = 0;
  double link = 0;
};

Result<ResyncRound> resync_round(KeelTarget& keel, Context& context, const std::string& source,
                                 std::uint64_t bytes, int number) {
  // Rows of a run with several rounds say which one they belong to.
  const json round = context.options.resync_rounds > 1 ? json{{"round", number}} : json::object();
  ResyncRound rates;
  if (auto ready = keel.wait_in_sync(1, 2, Milliseconds{120000}); !ready) return ready.error();
  if (auto stopped = keel.lab().stop_agent(2); !stopped) return stopped.error();
  // The first write after h2 left waits until h1 has noticed and the cluster has recorded h2's
  // copy as outdated (stored by h1 and h3); qemu-io's own start is in the figure too.
  double first_write_seconds = 0;
  auto first = run_tool({"qemu-io", "-f", "raw", "-c", "write -P 7 0 4096", keel.uri_of(1)},
                        kResyncTimeout, &first_write_seconds);
  if (!first) return first.error();
  // The write while h2 is away: every block it writes is marked in h1's bitmap.
  double write_seconds = 0;
  auto written =
      run_tool({"nbdcopy", "--flush", source, keel.uri_of(1)}, kResyncTimeout, &write_seconds);
  if (!written) return written.error();
  const json before = keel.status(1);
  const std::uint64_t dirty = json_u64(before, "out_of_sync_bytes");
  if (dirty == 0) return Error{"nothing out of sync after writing alone: " + before.dump()};
  // Pages of the bitmap a contiguous dirty range from offset 0 occupies (the write is one).
  const std::uint64_t pages = (dirty + kBytesPerBitmapPage - 1) / kBytesPerBitmapPage;
  {
    json row{{"target", "keel"}, {"test", "bitmap_after_disconnect"}};
    row.update(round);
    row.update({{"written_bytes", bytes},
                {"first_write_after_peer_left_ms", round1(first_write_seconds * 1000)},
                {"write_seconds", write_seconds},
                {"write_degraded_mb_s", round1(mb_per_s(bytes, write_seconds))},
                {"out_of_sync_bytes", dirty},
                {"dirty_blocks", dirty / volume::kBlockBytes},
                {"bitmap_pages", pages},
                {"bitmap_memory_kib", pages * volume::kBitmapPageBytes / 1024},
                {"full_bitmap_kib", (context.options.size / volume::kBlockBytes + 7) / 8 / 1024}});
    context.report.add(row);
  }

  const auto start = Clock::now();
  const double h1_cpu_before = cpu_seconds(keel.lab().host(1).agent.pid);
  if (auto started = keel.lab().start_agent(2); !started) return started.error();
  const double agent_ready_ms = ms_since(start);
  double sync_seen_ms = -1;
  std::uint64_t rate_seen = 0;
  json last;
  for (;;) {
    if (interrupted()) return Error{"interrupted"};
    if (Clock::now() - start > kResyncTimeout) {
      return Error{"resync did not finish; last status of h1: " + last.dump()};
    }
    last = keel.status(1);
    const std::string link = last.value("link", "");
    if (link == "SyncSource") {
      if (sync_seen_ms < 0) sync_seen_ms = ms_since(start);
      rate_seen =
          std::max(rate_seen, json_u64(last.value("resync", json::object()), "rate_bytes_s"));
    }
    if (in_sync_primary(last)) break;
    std::this_thread::sleep_for(kPoll);
  }
  const double total_s = seconds_since(start);
  const double h1_cpu = cpu_seconds(keel.lab().host(1).agent.pid) - h1_cpu_before;
  const double h2_cpu = cpu_seconds(keel.lab().host(2).agent.pid);
  if (sync_seen_ms < 0) sync_seen_ms = agent_ready_ms;  // too quick to see: from the agent's start
  const double resync_s = total_s - sync_seen_ms / 1000;
  const double rate = mb_per_s(dirty, total_s);
  const double rate_only = mb_per_s(dirty, resync_s);
  rates.keel = rate;
  rates.keel_only = rate_only;
  json row{{"target", "keel"}, {"test", "resync"}};
  row.update(round);
  row.update({{"resynced_bytes", dirty},
              {"seconds_from_agent_start", total_s},
              {"agent_answering_ms", round1(agent_ready_ms)},
              {"sync_source_seen_ms", round1(sync_seen_ms)},
              {"mb_s", round1(rate)},
              {"mb_s_from_resync_start", round1(rate_only)},
              {"status_rate_peak_mb_s", round1(static_cast<double>(rate_seen) / 1e6)},
              {"resync_blocks", json_u64(last.value("resync", json::object()), "blocks")},
              {"cpu_s",
               {{"source agent (h1)", std::round(h1_cpu * 100) / 100},
                {"target agent (h2, since its start)", std::round(h2_cpu * 100) / 100}}}});
  context.report.add(row);

  // A plain local copy of the same bytes: h1's copy (just written, in the page cache, like the
  // data the resync reads) to a file on the same disk, made durable. Twice: into a new file, and
  // over that file again, which is what the resync did to h2's copy (written before); the
  // baseline is the second.
  const std::string copy = context.options.work_dir + "/copy.img";
  const std::uint64_t block = 4u << 20;
  double fresh_seconds = 0, overwrite_seconds = 0;
  const std::vector<std::string> dd{"dd", "if=" + keel.backing_of(1), "of=" + copy, "bs=4M",
                                    "count=" + std::to_string((dirty + block - 1) / block)};
  auto fresh_argv = dd, overwrite_argv = dd;
  fresh_argv.push_back("conv=fsync");
  overwrite_argv.push_back("conv=fsync,notrunc");
  auto fresh = run_tool(fresh_argv, kResyncTimeout, &fresh_seconds);
  auto overwrite = fresh ? run_tool(overwrite_argv, kResyncTimeout, &overwrite_seconds) : fresh;
  std::error_code error;
  std::filesystem::remove(copy, error);
  if (!overwrite) return overwrite.error();
  rates.dd = mb_per_s(dirty, overwrite_seconds);
  json dd_row{{"target", "raw"}, {"test", "local_copy"}};
  dd_row.update(round);
  dd_row.update({{"tool", "dd bs=4M conv=fsync"},
                 {"bytes", dirty},
                 {"new_file_seconds", fresh_seconds},
                 {"new_file_mb_s", round1(mb_per_s(dirty, fresh_seconds))},
                 {"overwrite_seconds", overwrite_seconds},
                 {"mb_s", round1(rates.dd)}});
  context.report.add(dd_row);
  auto across = link_copy_figures(keel, context, dirty, round);
  if (!across) return across.error();
  rates.link = across.value();
  if (auto in_sync = keel.wait_in_sync(1, 2, Milliseconds{60000}); !in_sync) {
    return in_sync.error();
  }
  return rates;
}

}  // namespace

Result<Ok> resync_after_disconnect(KeelTarget& keel, Context& context, const std::string& source,
                                   std::uint64_t bytes) {
  std::vector<ResyncRound> rounds;
  for (int number = 1; number <= context.options.resync_rounds; ++number) {
    auto rates = resync_round(keel, context, source, bytes, number);
    if (!rates) return rates.error();
    rounds.push_back(rates.value());
  }
  const auto median_of = [&](double ResyncRound::*field) {
    std::vector<double> values;
    for (const ResyncRound& r : rounds) values.push_back(r.*field);
    return median(std::move(values));
  };
  context.report.set("resync_mbps", "keel", median_of(&ResyncRound::keel));
  context.report.set("resync_only_mbps", "keel", median_of(&ResyncRound::keel_only));
  context.report.set("resync_vs_link_mbps", "keel", median_of(&ResyncRound::keel));
  context.report.set("resync_mbps", "raw", median_of(&ResyncRound::dd));
  context.report.set("resync_only_mbps", "raw", median_of(&ResyncRound::dd));
  context.report.set("resync_vs_link_mbps", "raw", median_of(&ResyncRound::link));
  return Ok{};
}

Result<Ok> time_to_promote(KeelTarget& keel, Context& context) {
  if (auto ready = keel.wait_in_sync(1, 2, Milliseconds{120000}); !ready) return ready;
  const auto start = Clock::now();
  if (auto killed = keel.lab().kill_agent(1); !killed) return killed;
  const double kill_ms = ms_since(start);
  const auto promoted = retry_every_10ms(
      start, Milliseconds{60000}, "h2 could not be promoted", [&]() -> std::optional<std::string> {
        auto done = keel.volume_command(2, {"promote", KeelTarget::kVolume});
        if (done) return std::nullopt;
        return done.error().message;
      });
  if (!promoted) return promoted.error();
  const double promote_ms = promoted.value().last_attempt_ms;
  const int attempts = promoted.value().attempts;
  const double promoted_at_ms = ms_since(start);
  keel.set_primary(2);
  const auto first_read = retry_every_10ms(
      start, Milliseconds{120000}, "no read on h2's export", [&]() -> std::optional<std::string> {
        auto read = run_tool({"qemu-io", "-r", "-f", "raw", "-c", "read 0 4096", keel.uri_of(2)},
                             Milliseconds{10000});
        if (read && read.value().find("read 4096/4096") != std::string::npos) return std::nullopt;
        return read ? read.value() : read.error().message;
      });
  if (!first_read) return first_read.error();
  const double read_ms = first_read.value().last_attempt_ms;
  const int reads = first_read.value().attempts;
  const double total_ms = ms_since(start);
  context.report.set("promote_total_ms", "keel", total_ms);
  context.report.set("promote_command_ms", "keel", promote_ms);
  json row{{"target", "keel"}, {"test", "promote"}};
  row.update({{"total_ms", round1(total_ms)},
              {"kill_ms", round1(kill_ms)},
              {"promote_attempts", attempts},
              {"promoted_at_ms", round1(promoted_at_ms)},
              {"promote_command_ms", round1(promote_ms)},
              {"read_attempts", reads},
              {"first_read_command_ms", round1(read_ms)},
              {"h2_status", keel.status(2).value("disk", "")}});
  context.report.add(row);
  return Ok{};
}

}  // namespace keel::bench
