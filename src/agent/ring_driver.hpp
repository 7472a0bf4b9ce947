// RingDriver: runs this host's Ring and ProcessGroups on an io_context.
//
// Every call into the ring (a packet, a timer expiry, leaving) is followed at once by executing
// the actions it produced: first every Send, then one call of the flush function (the sender may
// hold packets until then, to send them together), then the rest in order. The token and new
// messages thus leave before this host's own applications are handed their deliveries: a delivery
// is a write to a local socket that wakes a client, and the other hosts should not wait for it
// (on each visit with new messages it would add that cost to the token's hop and to the messages'
// latency everywhere else). Sends and local deliveries are independent, so the order between them
// changes nothing the ring promises. After a submitted message (send, join, leave a group) they
// run from a handler posted to the io_context, so a request's effects come after its reply and
// never inside the code that made the request. Executing: Send goes to the sender function; View
// and DeliveredMessage go to the process-group layer and, with the group events they cause, to
// the RingEvents sink; the sync messages the group layer asks for are submitted as agreed
// messages. Then one asio::steady_timer is re-armed at ring.next_deadline(), so the ring's timers
// run on time without polling. Ring time is io::monotonic_now_us().
//
// Invariants: the timer is armed at next_deadline() whenever the driver is idle (or disarmed
// when that is kNever); after leave_ring() the ring is never called again.
// Thread-safety: none; everything runs on the io_context's thread.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "core/ring/groups.hpp"
#include "core/ring/ring.hpp"

namespace keel::agent {

// The largest message one group send may carry: a ring message holds the group header too.
constexpr std::size_t kMaxGroupPayloadBytes = (1u << 20) - 2 - ring::kMaxGroupNameBytes;

// Receives what the ring delivers, in delivery order.
class RingEvents {
 public:
  virtual ~RingEvents() = default;
  virtual void on_view(const ring::View& view) = 0;
  virtual void on_group_view(const ring::GroupView& view) = 0;
  // `carrier` is the ring message that delivered it (origin, ring, seq, index, safe).
  virtual void on_group_message(const ring::GroupMessage& message,
                                const ring::DeliveredMessage& carrier) = 0;
};

struct RingDriverOptions {
  NodeId self = kNoNode;
  std::vector<NodeId> nodes;
  ring::RingTunables tunables;
  std::uint64_t ring_seq_floor = 0;
};

class RingDriver {
 public:
  using Sender = std::function<void(NodeId to, std::span<const std::uint8_t> bytes)>;
  using Flush = std::function<void()>;

  RingDriver(asio::io_context& io, const RingDriverOptions& options, Sender sender, Flush flush,
             RingEvents& events);

  // Runs the ring's first actions and arms the timer.
  void start();
  void on_packet(NodeId from, std::span<const std::uint8_t> bytes);

  // Group requests; each becomes a ring message. Errors: bad group name, message too large, send
  // queue full, or the ring already left.
  Result<Ok> send(const std::string& group, const Bytes& payload, bool safe);
  Result<Ok> join(const std::string& group);
  void leave_group(const std::string& group);

  // Announces the departure to the others, sends those packets at once and stops the timer.
  void leave_ring();
  bool has_left() const { return ring_.has_left(); }

  const ring::Ring& ring() const { return ring_; }
  const std::set<std::string>& joined_groups() const { return joined_; }
  // Whether this host's group syncs name `group` (what the others will count it a member of).
  bool member_of(const std::string& group) const { return groups_.joined(group); }

 private:
  void settle();
  void execute(ring::Action& action);
  void deliver_group_events(const ring::DeliveredMessage* carrier);
  void submit_group_messages();
  void arm_timer();
  void on_timer(std::uint64_t generation);
  Result<Ok> submit(Bytes bytes, ring::DeliveryKind kind);

  asio::io_context& io_;
  ring::Ring ring_;
  ring::ProcessGroups groups_;
  Sender sender_;
  Flush flush_;
  RingEvents& events_;
  asio::steady_timer timer_;
  std::optional<TimeUs> armed_for_;  // the deadline the pending wait is for
  std::uint64_t timer_generation_ = 0;
  std::set<std::string> joined_;
  ring::State last_state_;
  bool settling_ = false;       // executing actions: a submit is picked up by the running loop
  bool settle_posted_ = false;  // a settle() for submitted messages is queued
};

}  // namespace keel::agent
