// SimCluster: N ring hosts (node ids 1..N) in one thread, on a simulated clock and network.
//
// One event queue ordered by (time, insertion counter) holds packet arrivals, host timers and
// scheduled actions (faults, submissions), so a run is a pure function of its options and seed.
// A step processes one event. After every call into a host's Ring the cluster takes its actions:
// sends go through the Network (kAllNodes means every other configured node), views, deliveries
// and receipts go to the Checker (and to an optional observer), and the host's single timer is
// moved to the ring's next_deadline() (older timer events are recognised by a generation number
// and ignored).
//
// Host states: up; paused (its clock stops: nothing is processed, packets to it queue in order
// and are handed over after an on_tick() at resume); crashed (packets to it are dropped; restart
// makes a fresh Ring whose ring_seq_floor is the current time in microseconds + 1, as the agent
// does with its boot time, and a new incarnation).
//
// The run stops at the first checker violation: step() then returns false.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <variant>
#include <vector>

#include "core/ring/ring.hpp"
#include "sim/checkers.hpp"
#include "sim/event_queue.hpp"
#include "sim/message.hpp"
#include "sim/network.hpp"
#include "sim/random.hpp"
#include "sim/trace.hpp"

namespace keel::sim {

struct ClusterOptions {
  std::size_t hosts = 3;
  std::uint64_t seed = 1;
  ring::RingTunables tunables;  // report_receipts is forced on
  NetworkOptions network;
  std::size_t paused_queue_limit = 20000;  // packets a paused host buffers; more are dropped
  std::size_t trace_capacity = 200;
};

enum class HostState : std::uint8_t { up, paused, crashed };
const char* host_state_name(HostState state);

struct ClusterStats {
  std::uint64_t steps = 0;
  std::uint64_t submits_refused = 0;
  std::uint64_t paused_packets_dropped = 0;
  std::uint64_t crashes = 0;
  std::uint64_t pauses = 0;
};

class SimCluster {
 public:
  using Observer = std::function<void(NodeId host, const ring::Action& action, TimeUs now)>;

  explicit SimCluster(ClusterOptions options);
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // ---- running ----
  TimeUs now() const { return now_; }
  // Processes one event; false when there is none or a checker has failed.
  bool step();
  // Processes every event due at or before `time`, then sets the clock to `time`.
  void run_until(TimeUs time);
  void run_for(TimeUs duration) { run_until(now_ + duration); }
  void run_steps(std::uint64_t steps);
  // Steps until `done()` holds (checked after every step) or the clock passes `deadline`.
  bool run_until(const std::function<bool()>& done, TimeUs deadline);
  // Runs `action` at `time` (>= now) as one step; `label` goes to the trace.
  void at(TimeUs time, std::string label, std::function<void()> action);

  // ---- messages ----
  // Submits a simulated message (header + filler_bytes of filler) at an up host; the id, or
  // nothing when the host is not up or its ring refused the message.
  std::optional<MessageId> submit(NodeId host, std::size_t filler_bytes, ring::DeliveryKind kind);

  // ---- faults ----
  void partition(const std::vector<std::vector<NodeId>>& groups);
  void cut(NodeId from, NodeId to);
  void restore(NodeId from, NodeId to);
  void isolate(NodeId host);
  void rejoin(NodeId host);
  void heal_network();
  void set_loss(double loss) { network_.set_loss(loss); }
  void set_duplicate(double duplicate) { network_.set_duplicate(duplicate); }
  void set_delay(TimeUs min_us, TimeUs max_us) { network_.set_delay(min_us, max_us); }
  void pause(NodeId host);
  void resume(NodeId host);
  void crash(NodeId host);
  // A graceful stop: the host announces that it leaves the ring, then stops like a crash.
  void stop(NodeId host);
  void restart(NodeId host);
  // Heals the network, resumes paused hosts and restarts crashed ones.
  void heal_all();
  bool all_healed() const;

  // ---- inspection ----
  std::size_t hosts() const { return options_.hosts; }
  const ClusterOptions& options() const { return options_; }
  HostState state(NodeId host) const;
  std::uint32_t incarnation(NodeId host) const;
  const ring::Ring* ring(NodeId host) const;  // null when crashed
  std::optional<ring::View> view(NodeId host) const;
  // Every host up and operational in one regular view holding all hosts.
  bool converged() const;
  Network& network() { return network_; }
  const Network& network() const { return network_; }
  Checker& checker() { return checker_; }
  const Checker& checker() const { return checker_; }
  Trace& trace() { return trace_; }
  const ClusterStats& stats() const { return stats_; }
  // Summed over every host and every incarnation that ever ran.
  ring::RingStats ring_stats() const;
  ring::Coverage coverage() const;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  void note(NodeId host, std::string text);  // a line in the trace

 private:
  struct Host {
    std::unique_ptr<ring::Ring> ring;
    HostState state = HostState::up;
    std::uint32_t incarnation = 0;
    std::uint64_t timer_generation = 0;
    TimeUs timer_at = kNever;
    std::uint64_t next_counter = 0;
    std::deque<PacketEvent> paused_queue;
    TimeUs last_tick_at = kNever;  // spin detection: ticks at one instant
    std::uint32_t ticks_at_instant = 0;
  };

  Host& host(NodeId id);
  const Host& host(NodeId id) const;
  void push(TimeUs at, EventBody body);
  bool stale(const Event& event) const;
  bool step_before(TimeUs limit);
  void process(Event& event);
  void on_packet(PacketEvent& packet);
  void on_timer(const TimerEvent& timer);
  void start_host(NodeId id);
  void after_call(NodeId id);  // takes actions, re-arms the timer
  void route(NodeId from, ring::Send& send);
  void send_one(NodeId from, NodeId to, const std::shared_ptr<const Bytes>& bytes);
  void handle_action(NodeId id, const ring::Action& action);
  void rearm_timer(NodeId id);
  void retire_ring(Host& h);
  void fault(std::string text);

  ClusterOptions options_;
  std::vector<NodeId> nodes_;
  Rng rng_;  // the root of the cluster's own randomness (the network's generator is forked off)
  Network network_;
  Checker checker_;
  Trace trace_;
  std::vector<Host> hosts_;  // by node id; index 0 unused
  EventQueue queue_;
  TimeUs now_ = 0;
  ClusterStats stats_;
  ring::RingStats retired_stats_;
  ring::Coverage retired_coverage_{};
  Observer observer_;
};

}  // namespace keel::sim
