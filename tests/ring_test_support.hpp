// Bench: a few Ring instances wired together by hand, for tests that must see or steer single
// packets (which the SimCluster does not expose).
//
// Hosts are 1..N. Every packet takes exactly `latency_us` and packets are handled in the order
// sent, so a run is deterministic. A filter decides the fate of each copy of each packet (deliver,
// drop, or hold until release_held()). Each host's timer fires at its ring's next_deadline();
// timers due at the same instant as a packet run first. The Bench records every Send (decoded),
// every call into a ring with the Sends it produced, and every view and delivery. With `checked`,
// a sim::Checker watches the views and deliveries (use submit_checked(): the checker needs the
// simulator's self-describing payloads). After every call the Bench counts a deadline in the past
// (next_deadline() < now) as a fault; expect_clean() (and the destructor) report both.
//
// Thread-safety: none.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "core/ring/ring.hpp"
#include "sim/checkers.hpp"
#include "sim/message.hpp"

namespace keel::ring::test_support {

constexpr TimeUs kMs = 1000;
constexpr TimeUs kSecond = 1'000'000;

inline std::size_t mark_index(Mark mark) { return static_cast<std::size_t>(mark); }

inline std::vector<NodeId> hosts_range(NodeId first, NodeId last) {
  std::vector<NodeId> ids;
  for (NodeId id = first; id <= last; ++id) ids.push_back(id);
  return ids;
}

// One copy of a packet on its way from `from` to `to` (never kAllNodes here).
struct Packet {
  TimeUs sent_at = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Bytes bytes;
  wire::Packet decoded;
  std::size_t call = 0;  // index into Bench::calls() of the call that sent it

  bool is_mcast() const { return std::holds_alternative<wire::McastPacket>(decoded.body); }
  bool is_token() const { return std::holds_alternative<wire::Token>(decoded.body); }
  const wire::Message& message() const { return std::get<wire::McastPacket>(decoded.body).message; }
};

enum class Fate : std::uint8_t { deliver, drop, hold };

// One call into a ring: what caused it and which Sends it produced ([sends_begin, sends_end)).
struct Call {
  enum class Cause : std::uint8_t { tick, submit, packet };
  NodeId host = kNoNode;
  TimeUs at = 0;
  Cause cause = Cause::tick;
  std::optional<std::size_t> packet_type;  // the Body index of the packet handled
  bool token_accepted = false;             // the ring's tokens_received went up
  std::size_t sends_begin = 0;
  std::size_t sends_end = 0;
};

struct Delivery {
  TimeUs at = 0;
  std::size_t view_index = 0;  // how many views the host had installed before it
  DeliveredMessage message;
};

class Bench {
 public:
  using Filter = std::function<Fate(const Packet&)>;

  explicit Bench(std::size_t hosts, RingTunables tunables = {}, bool checked = false,
                 TimeUs latency_us = 100)
      : tunables_(tunables), latency_us_(latency_us), checked_(checked), hosts_(hosts + 1) {
    if (checked_) {
      tunables_.report_receipts = true;
      checker_ = std::make_unique<sim::Checker>(hosts, 1);
    }
    const std::vector<NodeId> nodes = hosts_range(1, static_cast<NodeId>(hosts));
    for (NodeId id : nodes) {
      hosts_[id].ring = std::make_unique<Ring>(id, nodes, tunables_, 1, 0);
      if (checker_) checker_->host_started(id, 1, 0);
      collect(id, Call{id, 0, Call::Cause::tick, std::nullopt, false, sends_.size(), 0});
    }
  }

  std::size_t hosts() const { return hosts_.size() - 1; }
  Ring& ring(NodeId id) { return *hosts_.at(id).ring; }
  TimeUs now() const { return now_; }
  void set_filter(Filter filter) { filter_ = std::move(filter); }

  // ---- running ----
  TimeUs next_event_at() const {
    TimeUs at = in_flight_.empty() ? kNever : in_flight_.front().sent_at + latency_us_;
    for (NodeId id = 1; id <= hosts(); ++id) at = std::min(at, hosts_[id].ring->next_deadline());
    return at;
  }
  // Handles the next timer or packet due at or before `limit`; false when there is none.
  bool step(TimeUs limit = kNever) {
    const TimeUs at = next_event_at();
    if (at == kNever || at > limit) return false;
    now_ = std::max(now_, at);
    for (NodeId id = 1; id <= hosts(); ++id) {
      if (hosts_[id].ring->next_deadline() <= now_) return tick(id), true;
    }
    Packet packet = std::move(in_flight_.front());
    in_flight_.pop_front();
    deliver(packet);
    return true;
  }
  void run_until(TimeUs time) {
    while (step(time)) {
    }
    now_ = std::max(now_, time);
  }
  void run_for(TimeUs duration) { run_until(now_ + duration); }
  bool run_until(const std::function<bool()>& done, TimeUs deadline) {
    while (!done()) {
      if (!step(deadline)) return done();
    }
    return true;
  }
  // Runs until every host is operational in one regular view of all hosts.
  bool form(TimeUs within = 2 * kSecond) {
    return run_until([&] { return formed(hosts_range(1, static_cast<NodeId>(hosts()))); },
                     now_ + within);
  }
  bool formed(const std::vector<NodeId>& members) {
    const RingId id = ring(members.front()).view() ? ring(members.front()).view()->ring : RingId{};
    return std::all_of(members.begin(), members.end(), [&](NodeId h) {
      const auto& view = ring(h).view();
      return ring(h).state() == State::operational && view && view->ring == id &&
             view->members == members;
    });
  }

  // ---- input ----
  Result<Ok> submit(NodeId id, Bytes payload, DeliveryKind kind) {
    const std::size_t begin = sends_.size();
    Result<Ok> result = ring(id).submit(std::move(payload), kind, now_);
    collect(id, Call{id, now_, Call::Cause::submit, std::nullopt, false, begin, 0});
    return result;
  }
  // A simulator payload (id + filler) the checker can verify; nothing when refused.
  std::optional<sim::MessageId> submit_checked(NodeId id, std::size_t filler, DeliveryKind kind) {
    const sim::MessageId message{id, 1, ++hosts_[id].next_counter};
    if (!submit(id, sim::make_payload(message, filler), kind).ok()) return std::nullopt;
    if (checker_) checker_->message_submitted(message, filler, kind, now_);
    return message;
  }
  // Puts a copy of `bytes` from `from` on the wire to `to` now (a replay, a forgery).
  void inject(NodeId from, NodeId to, Bytes bytes) {
    Packet packet{now_, from, to, std::move(bytes), {}, calls_.size()};
    in_flight_.push_back(std::move(packet));
  }
  // Held packets go back on the wire, in the order they were sent, arriving one latency from now.
  void release_held() {
    for (Packet& packet : held_) {
      packet.sent_at = now_;
      in_flight_.push_back(std::move(packet));
    }
    held_.clear();
  }
  std::size_t held_count() const { return held_.size(); }

  // ---- records ----
  const std::vector<Packet>& sends() const { return sends_; }
  const std::vector<Call>& calls() const { return calls_; }
  const std::vector<View>& views(NodeId id) const { return hosts_.at(id).views; }
  const std::vector<Delivery>& delivered(NodeId id) const { return hosts_.at(id).delivered; }
  std::uint64_t deadlines_in_past() const { return deadlines_in_past_; }
  std::uint64_t marks(Mark mark) const {
    std::uint64_t sum = 0;
    for (NodeId id = 1; id <= hosts(); ++id) sum += hosts_[id].ring->coverage()[mark_index(mark)];
    return sum;
  }
  // Reports a checker violation or a deadline in the past, once; the destructor calls it too,
  // so a test that stopped at a failed ASSERT still shows why.
  ~Bench() { expect_clean(); }
  void expect_clean() {
    if (reported_) return;
    if (checker_ && checker_->failed()) {
      ADD_FAILURE() << checker_->violation()->text;
      reported_ = true;
    }
    if (deadlines_in_past_ != 0) {
      ADD_FAILURE() << deadlines_in_past_ << " calls left next_deadline() in the past";
      reported_ = true;
    }
  }

 private:
  struct Host {
    std::unique_ptr<Ring> ring;
    std::vector<View> views;
    std::vector<Delivery> delivered;
    std::uint64_t next_counter = 0;
  };

  void tick(NodeId id) {
    const std::size_t begin = sends_.size();
    ring(id).on_tick(now_);
    collect(id, Call{id, now_, Call::Cause::tick, std::nullopt, false, begin, 0});
  }

  void deliver(const Packet& packet) {
    const std::size_t begin = sends_.size();
    const std::uint64_t tokens = ring(packet.to).stats().tokens_received;
    ring(packet.to).on_packet(packet.from, packet.bytes, now_);
    const bool accepted = ring(packet.to).stats().tokens_received > tokens;
    collect(packet.to, Call{packet.to, now_, Call::Cause::packet, packet.decoded.body.index(),
                            accepted, begin, 0});
  }

  // Takes the ring's actions after a call: records them, puts Sends on the wire.
  void collect(NodeId id, Call call) {
    const std::size_t call_index = calls_.size();
    Host& host = hosts_[id];
    for (Action& action : host.ring->take_actions()) {
      if (auto* send = std::get_if<Send>(&action)) {
        transmit(id, std::move(*send), call_index);
        continue;
      }
      if (checker_) checker_->on_action(id, action, now_);
      if (auto* view = std::get_if<View>(&action)) host.views.push_back(*view);
      if (auto* message = std::get_if<DeliveredMessage>(&action)) {
        host.delivered.push_back(Delivery{now_, host.views.size(), std::move(*message)});
      }
    }
    if (host.ring->next_deadline() < now_) ++deadlines_in_past_;
    call.sends_end = sends_.size();
    calls_.push_back(call);
  }

  void transmit(NodeId from, Send send, std::size_t call_index) {
    auto decoded = wire::decode(send.bytes);
    if (!decoded.ok()) {
      ADD_FAILURE() << "host " << from << " sent an undecodable packet";
      return;
    }
    for (NodeId to = 1; to <= hosts(); ++to) {
      if (to == from || (send.to != kAllNodes && send.to != to)) continue;
      Packet packet{now_, from, to, send.bytes, decoded.value(), call_index};
      sends_.push_back(packet);
      const Fate fate = filter_ ? filter_(packet) : Fate::deliver;
      if (fate == Fate::deliver) in_flight_.push_back(std::move(packet));
      if (fate == Fate::hold) held_.push_back(std::move(packet));
    }
  }

  RingTunables tunables_;
  TimeUs latency_us_;
  bool checked_;
  std::vector<Host> hosts_;  // by node id; index 0 unused
  std::unique_ptr<sim::Checker> checker_;
  Filter filter_;
  std::deque<Packet> in_flight_;  // in sending order, which is arrival order
  std::vector<Packet> held_;
  std::vector<Packet> sends_;
  std::vector<Call> calls_;
  std::uint64_t deadlines_in_past_ = 0;
  bool reported_ = false;
  TimeUs now_ = 0;
};

}  // namespace keel::ring::test_support
