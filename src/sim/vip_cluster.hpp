// VipCluster: N simulated hosts (node ids 1..N), each running a ring, process groups on it and a
// vip node (src/core/vip) in the vip group, on a simulated clock and network, with the world's
// address table: which host holds which address right now.
//
// It is SimCluster's loop (one event queue ordered by (time, insertion counter), one timer per
// host, the Network deciding every packet) with the vip stack on each host: every ring action is
// fed in order to the host's ProcessGroups, the vip group's messages and every view to its
// VipNode, and the vip node's actions are run at once (Broadcast -> a group message submitted to
// the ring as agreed; Acquire/Release -> the world's table). Safety checks run on every acquire
// (vip_checks.hpp); the first violation stops the run.
//
// Faults: partitions, one-way cuts, crashes (a host's addresses vanish with it), agent crashes
// (the host lives on and so do the addresses on its interfaces, unanswered for) and restarts (a
// fresh ring, groups and vip node, which adopts whatever addresses the host still has), health
// changes per (host, pool), drain and undrain. Health and drain are properties of the host that
// survive a restart.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/ring/groups.hpp"
#include "core/ring/ring.hpp"
#include "core/vip/vip_node.hpp"
#include "sim/event_queue.hpp"
#include "sim/network.hpp"
#include "sim/random.hpp"
#include "sim/trace.hpp"

namespace keel::sim {

// How long after an agent starts its health checks first report (a check interval or so): the
// new agent may be in a view with the others well before that.
constexpr TimeUs kFirstHealthCheckUs = 250'000;

struct VipClusterOptions {
  std::size_t hosts = 3;
  std::uint64_t seed = 1;
  ring::RingTunables tunables;
  NetworkOptions network;
  vip::VipConfig config;
  std::size_t trace_capacity = 200;
};

// One acquire or release in the world, for the movement checks.
struct VipEvent {
  TimeUs at = 0;
  NodeId host = kNoNode;
  std::uint32_t address = 0;
  bool acquire = true;
};

class VipCluster {
 public:
  explicit VipCluster(VipClusterOptions options);
  VipCluster(const VipCluster&) = delete;
  VipCluster& operator=(const VipCluster&) = delete;

  // ---- running ----
  TimeUs now() const { return now_; }
  bool step();  // false when no event is left or a check failed
  void run_until(TimeUs time);
  // Steps until `done()` holds or the clock passes `deadline`; whether `done()` held.
  bool run_until(const std::function<bool()>& done, TimeUs deadline);
  void at(TimeUs time, std::string label, std::function<void()> action);

  // ---- faults ----
  void partition(const std::vector<std::vector<NodeId>>& groups);
  void cut(NodeId from, NodeId to);
  void heal_network();
  void set_loss(double loss) { network_.set_loss(loss); }
  void crash(NodeId host);
  void crash_agent(NodeId host);
  void restart(NodeId host);
  void set_healthy(NodeId host, std::uint32_t pool, bool healthy);
  void drain(NodeId host);
  void undrain(NodeId host);

  // ---- inspection ----
  std::size_t hosts() const { return options_.hosts; }
  const vip::VipConfig& config() const { return options_.config; }
  const vip::AddressIndex& index() const { return index_; }
  bool up(NodeId host) const { return hosts_.at(host).up; }
  bool healthy(NodeId host, std::uint32_t pool) const { return hosts_.at(host).healthy.at(pool); }
  bool drained(NodeId host) const { return hosts_.at(host).drained; }
  bool eligible(NodeId host, std::uint32_t pool) const;
  // eligible(), or healthy by presumption (a restarted agent before its first health check).
  bool may_acquire(NodeId host, std::uint32_t pool) const;
  const vip::VipNode* node(NodeId host) const { return hosts_.at(host).node.get(); }
  const ring::Ring* ring(NodeId host) const { return hosts_.at(host).ring.get(); }
  // The hosts holding each address now (by global address number).
  const std::vector<std::set<NodeId>>& holders() const { return holders_; }
  // Every host of `side` up, operational and in one regular view of exactly `side` (sorted), every
  // vip node of it quiescent in that view, with as many vip messages processed as the others and
  // the latest state of each (no vip message in flight that would change anything).
  bool settled(const std::vector<NodeId>& side) const;
  std::vector<NodeId> up_hosts() const;
  const std::vector<VipEvent>& events() const { return events_; }
  // Every regular view installed since clear_events(): the host and the view's members.
  const std::vector<std::pair<NodeId, std::vector<NodeId>>>& views() const { return views_; }
  void clear_events() {
    events_.clear();
    views_.clear();
  }

  // ---- checking ----
  void fail(const std::string& text);
  bool failed() const { return violation_.has_value(); }
  const std::optional<std::string>& violation() const { return violation_; }
  Trace& trace() { return trace_; }
  std::uint64_t steps() const { return steps_; }
  std::uint64_t acquires() const { return acquires_; }
  std::uint64_t releases() const { return releases_; }
  void note(NodeId host, std::string text);

 private:
  struct Host {
    bool up = false;
    std::uint32_t incarnation = 0;
    std::unique_ptr<ring::Ring> ring;
    std::unique_ptr<ring::ProcessGroups> groups;
    std::unique_ptr<vip::VipNode> node;
    std::vector<bool> healthy;         // by pool: the truth the health check reports
    bool first_check_pending = false;  // since the start: the node has no check result yet
    bool drained = false;
    std::uint64_t timer_generation = 0;
    TimeUs timer_at = kNever;
    TimeUs last_tick_at = kNever;  // spin detection: timers at one instant
    std::uint32_t ticks_at_instant = 0;
  };

  // eligible() with `healthy` standing for the host's health in the pool.
  bool eligible_if(NodeId host, std::uint32_t pool, bool healthy) const;
  void push(TimeUs at, EventBody body);
  bool step_before(TimeUs limit);
  void start_host(NodeId id);
  void pump(NodeId id);  // runs every pending action of the host's stack, re-arms its timer
  void on_ring_action(NodeId id, ring::Action& action);
  void submit(NodeId id, Result<Bytes> message);
  void run_vip_actions(NodeId id);
  void on_acquire(NodeId id, const vip::Acquire& acquire);
  void on_release(NodeId id, const vip::Release& release);
  void rearm_timer(NodeId id);

  VipClusterOptions options_;
  vip::AddressIndex index_;
  std::vector<NodeId> nodes_;
  Rng rng_;
  Network network_;
  Trace trace_;
  std::vector<Host> hosts_;  // by node id; index 0 unused
  std::vector<std::set<NodeId>> holders_;
  std::vector<VipEvent> events_;
  std::vector<std::pair<NodeId, std::vector<NodeId>>> views_;  // regular views, as events_
  EventQueue queue_;
  TimeUs now_ = 0;
  std::uint64_t steps_ = 0;
  std::uint64_t acquires_ = 0;
  std::uint64_t releases_ = 0;
  std::optional<std::string> violation_;
};

}  // namespace keel::sim
