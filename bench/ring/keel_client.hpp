// keel's side of the ring benchmark: one client per lab host, talking to that host's agent over
// its control socket exactly as an application would (docs/control-protocol.md).
//
// Each client holds two connections: a `listen` stream on the benchmark group, and a send
// connection. By default both use the binary frames an application moving many messages would
// (docs/control-protocol.md, "Binary frames"): a `send_stream` connection the client writes
// frames to as fast as the agent reads them, and a binary listen stream. With `binary` off they
// use JSON lines: `send` requests pipelined (up to kSendWindow unanswered), so that the socket
// round trip does not limit throughput; a "send queue full" reply is flow control there: that
// message is sent again a moment later. Every message carries the sending host, a sequence number
// and its send time; the listener records each delivery's latency, and every view and group view
// with the time it was read (for failover timing).
//
// Clients of one run start sending together: each first waits until its listener shows the group
// with all expected members, then waits at a shared StartLine.
//
// Thread-safety: run() blocks its calling thread; run one client per thread. The StartLine and
// the stop flag are the only shared state.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace keel::bench {

std::int64_t now_ns();  // CLOCK_REALTIME, as cpg_bench uses: one clock for every process here

// A barrier that also releases everyone if one party gives up.
class StartLine {
 public:
  explicit StartLine(int parties) : waiting_(parties) {}
  // False if the line was abandoned or the deadline passed first.
  bool arrive_and_wait(std::int64_t deadline_ns);
  void abandon();

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int waiting_;
  bool abandoned_ = false;
};

struct ViewRecord {
  std::int64_t seen_ns = 0;
  std::string kind;  // "regular", "transitional" or "group"
  std::vector<int> members;
};

struct ClientPlan {
  int host = 0;
  std::string socket;
  std::string group = "bench";
  int members = 1;           // wait until the group has this many members
  std::uint64_t send = 0;    // messages to send
  std::size_t size = 100;    // bytes per message
  double rate = 0;           // messages per second; 0: as fast as the agent takes them
  std::uint64_t expect = 0;  // stop once this many are delivered (0: once sent)
  std::int64_t timeout_ns = 60'000'000'000;
  const std::atomic<bool>* stop = nullptr;  // watch mode: run until set (send == expect == 0)
  bool binary = true;                       // binary frames, else JSON lines
  std::function<void(int host, const ViewRecord&)> on_view;  // called on the client's thread
};

struct ClientResult {
  int host = 0;
  std::uint64_t sent = 0;
  std::uint64_t retried = 0;  // sends refused by a full queue and sent again
  std::uint64_t delivered = 0;
  std::uint64_t bytes = 0;
  std::int64_t first_send_ns = 0;
  std::int64_t last_delivery_ns = 0;
  std::vector<std::int64_t> latencies_ns;
  std::vector<ViewRecord> views;
  std::string error;  // empty on success
};

ClientResult run_keel_client(const ClientPlan& plan, StartLine& start);

}  // namespace keel::bench
