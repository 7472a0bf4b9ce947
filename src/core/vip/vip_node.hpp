// VipNode: one host's floating-IP state machine, as a pure object (no I/O, no clock).
//
// Events in: the ring's views (regular and transitional), the vip group's messages in the agreed
// order the ring delivered them (interleaved with the views exactly as the ring emitted them),
// local health changes per pool, drain and undrain, and ticks. Actions out (take_actions()):
// Broadcast (a payload to send to the group kVipGroup as an agreed message), Acquire and Release
// (add or delete an address on this host), Notice (something an operator should read). Time is
// whatever the caller says; next_deadline() says when on_tick() next has work.
//
// The protocol (docs/vip.md has the operator's version):
//  1. On every regular view each member broadcasts a State: the view's ring id, its config
//     digest, whether it is drained, which pools are healthy on it, which addresses it holds, and
//     `seen`, how many vip messages of the view it had processed. Messages tagged with another
//     view are ignored; nothing is decided in a transitional view (the next regular view
//     re-synchronises everything).
//  2. Once the States of every member of the view are delivered (the sync point), every member
//     builds the same replicated table from the same ordered input: per address an owner (the one
//     holder, or if several hold it after a merge, the winner: eligible first, then the preferred
//     node, then the holder with the fewest of the pool's addresses so far for its weight, then
//     the lowest node id; the others release it at once).
//  3. After the sync point and after every later State, every member recomputes placement
//     (placement.hpp) from the owners and the members' eligibility (pool allows the node, healthy,
//     not drained), and updates the table in the same way:
//       - an address without owner gets its target as owner;
//       - an owner that is drained hands over (make-before-break): the target becomes the owner
//         at once and acquires; the old holder releases when a State of the new one shows it;
//       - any other owner is asked to release (break-before-make): it stays owner until a State
//         of its own sent after the request (seen >= the request) shows it without the address;
//         then the address is free and goes to its target;
//       - an owner whose State says its pool is unhealthy, or that it is drained, and that it does
//         not hold the address loses it at once (a host releases a pool's addresses before it
//         announces it unhealthy, and acquires nothing while drained).
//  4. A member acquires an address it owns when its pool is healthy here, it is not drained, the
//     settle time since the regular view has passed, and no other member's latest State shows the
//     address (except the drained host it takes over from), and, after a health loss, a drain or
//     an undrain, once its own State announcing it has come back (its table is then no longer
//     behind what the others will decide from it). It broadcasts a State after every acquire or
//     release.
// Safety: within one view at most one member owns an address, and a new owner acquires only
// after every other holder announced its release (or, for a drain, while the drained holder still
// holds it). Addresses held on both sides of a partition are resolved at the merge as in step 2.
//
// The shell must run Acquire/Release in order and must submit Broadcasts in order (retrying any
// the ring refuses). An Acquire that fails on the host should be reported as an unhealthy pool.
// Every host of the cluster must run the same VipConfig (a mismatch blocks acquisitions in the
// component and is reported as a Notice). Thread-safety: none; one thread drives an instance.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"
#include "core/ring/events.hpp"
#include "core/vip/pools.hpp"
#include "core/vip/vip_wire.hpp"

namespace keel::vip {

// The process group every vip host joins; its messages are fed to on_message().
inline constexpr const char* kVipGroup = "keel.vip";

// A regular view whose members' States are not all in this long after it began gets a Notice
// naming the silent members: until they speak nothing is placed, and a member that never does
// (an agent without the same [vip] pools, a stuck vip thread) would otherwise stall every
// failover without a word. Placing without them is no answer: a silent member may hold addresses.
inline constexpr TimeUs kSilentMemberNoticeUs = 5'000'000;

// This node's State is due: when the action is executed, after the ones before it, encode it
// with VipNode::state_message() and send it to the group kVipGroup, in agreed order, once per
// Broadcast (the node counts them). Encoded then, not when asked for, so that an acquisition
// whose add failed (acquire_failed()) is never claimed as held.
struct Broadcast {};
struct Acquire {
  std::uint32_t address = 0;  // global address number (pools.hpp)
  std::uint32_t pool = 0;
  std::string text;  // the address as configured
};
struct Release {
  std::uint32_t address = 0;
  std::uint32_t pool = 0;
  std::string text;
};
struct Notice {
  std::string text;
};
using VipAction = std::variant<Broadcast, Acquire, Release, Notice>;

class VipNode {
 public:
  // `config` must pass validate_vip_config(). `adopted`: addresses (global numbers) this host
  // already holds at start (found on its interfaces); they are kept, not flapped, when placement
  // agrees, and unconfirmed() until it has. A pool with an adopted address starts healthy (as its
  // last holder knew it), every other pool unhealthy, until set_healthy() says otherwise.
  VipNode(NodeId self, VipConfig config, std::vector<std::uint32_t> adopted = {});

  void on_view(const ring::View& view, TimeUs now);
  void on_message(NodeId origin, std::span<const std::uint8_t> payload, TimeUs now);
  // An unhealthy pool's addresses are released at once, before the State announcing it.
  void set_healthy(std::uint32_t pool, bool healthy, TimeUs now);
  // The add an Acquire asked for failed here: `address` is not held, and its pool counts as
  // unhealthy here, as after set_healthy(pool, false), until set_healthy() says otherwise. Call
  // it before executing the actions after that Acquire.
  void acquire_failed(std::uint32_t address, TimeUs now);
  void drain(TimeUs now);
  void undrain(TimeUs now);
  void on_tick(TimeUs now);

  TimeUs next_deadline() const;
  std::vector<VipAction> take_actions();
  // The State to send for a Broadcast being executed: this node as it is now.
  Bytes state_message() const;

  // ---- inspection ----
  NodeId self() const { return self_; }
  const VipConfig& config() const { return config_; }
  const AddressIndex& index() const { return index_; }
  std::optional<std::uint32_t> pool_number(const std::string& name) const;
  std::optional<std::uint32_t> address_number(const std::string& text) const;
  const std::set<std::uint32_t>& held() const { return held_; }
  // `address` is held because it was adopted, and placement has not yet said that it is this
  // host's: the shell must not announce it. It was left by the agent before this one, and while
  // that one was gone another host may have taken it over; announcing it would steal its
  // traffic. Placement says so once, in a synced view, this host owns it, no other member holds
  // it and no release is asked, and the view has settled. Alone in its views since it started,
  // the host can tell neither a dead cluster from one it has not found yet nor a partition, so
  // it waits for the startup time, as it does before it takes any address that has no holder;
  // unless only this host may hold the address, when nobody else can have taken it.
  bool unconfirmed(std::uint32_t address) const { return unconfirmed_.count(address) != 0; }
  bool healthy(std::uint32_t pool) const { return healthy_.at(pool); }
  // healthy(pool) is still the adopted addresses' word: no set_healthy() for it yet.
  bool presumed(std::uint32_t pool) const { return presumed_.at(pool); }
  bool drained() const { return drained_; }
  const std::optional<RingId>& view() const { return view_; }
  // The States of every member of the current regular view are in and nothing is frozen.
  bool synced() const { return synced_; }
  // The members of the current regular view whose State (with this node's pools) is not in yet;
  // empty once synced, and while frozen (the next view is awaited, not States).
  std::vector<NodeId> waiting_for() const;
  // Synced, and nothing is in motion: every address sits with its target (or with a drained
  // owner when it has none), every member's latest State matches the table, no request pending.
  bool quiescent() const;
  NodeId owner(std::uint32_t address) const;  // kNoNode when not synced or none
  std::uint64_t seen() const { return seen_; }
  // This node processed every State `other` sent in this view, and the latest says what `other`
  // is now (drained, health, holdings).
  bool knows_current(const VipNode& other) const;
  std::uint64_t states_sent() const { return states_sent_; }
  // The drained holder handing `address` over to its owner, or kNoNode.
  NodeId handover_from(std::uint32_t address) const;

 private:
  struct Record {  // a member's latest State in this view
    bool drained = false;
    std::vector<bool> healthy;  // by pool
    std::vector<bool> held;     // by address
    std::uint64_t seen = 0;
    std::uint64_t messages = 0;  // States of this member processed in this view
  };
  struct Slot {  // the replicated table, per address
    NodeId owner = kNoNode;
    NodeId handover_from = kNoNode;   // drained holder releasing once the owner holds it
    std::uint64_t release_asked = 0;  // owner must confirm release with seen >= this; 0: none
  };

  void sync();
  void reconcile();
  void free_confirmed();
  std::vector<NodeId> targets() const;
  bool eligible(NodeId node, std::uint32_t pool) const;
  void act(TimeUs now);
  bool should_release(std::uint32_t address) const;
  bool can_acquire(std::uint32_t address, bool ignore_settle) const;
  bool placed_here(std::uint32_t address, bool ignore_settle) const;
  void acquire(std::uint32_t address);
  void release(std::uint32_t address);
  void send_state();
  void notice_silent_members();
  void notice(std::string text) { actions_.push_back(Notice{std::move(text)}); }

  NodeId self_;
  VipConfig config_;
  AddressIndex index_;
  std::uint64_t digest_;
  std::vector<bool> healthy_;   // by pool: the local health check
  std::vector<bool> presumed_;  // by pool: healthy_ is the last agent's word, not a check yet
  bool drained_ = false;
  std::set<std::uint32_t> held_;
  std::set<std::uint32_t> unconfirmed_;  // adopted, held, not yet placed here (unconfirmed())
  TimeUs now_ = 0;

  std::optional<RingId> view_;  // the last regular view
  std::vector<NodeId> members_;
  bool frozen_ = false;  // a transitional view came after view_
  TimeUs settle_at_ = 0;
  TimeUs silent_notice_at_ = kNever;     // kNever once given, or when not due in this view
  std::optional<TimeUs> first_view_us_;  // the first regular view (startup_us counts from it)
  bool met_others_ = false;              // some regular view had another member
  std::uint64_t seen_ = 0;               // vip messages of view_ processed
  std::map<NodeId, Record> records_;
  bool synced_ = false;
  std::vector<Slot> slots_;
  std::vector<NodeId> targets_;  // placement at the last reconcile
  std::uint64_t last_sent_seen_ = 0;
  // A health loss, a drain or an undrain puts this host ahead of the table: no acquisition until
  // the State announcing it has come back through the ring (own_states_seen_ >=
  // acquire_blocked_until_), lest it acquire from a table that still names this host the owner
  // while the others are about to free the address (after a health loss or a drain), or that
  // keeps it, as a drained holder, an address it has already released (after an undrain).
  std::uint64_t states_sent_ = 0;  // in view_
  std::uint64_t own_states_seen_ = 0;
  std::uint64_t acquire_blocked_until_ = 0;
  std::set<NodeId> mismatch_reported_;
  std::vector<VipAction> actions_;
};

}  // namespace keel::vip
