#include "agent/ring_driver.hpp"

#include <spdlog/spdlog.h>

#include "core/common/assert.hpp"
#include "io/clock.hpp"

namespace keel::agent {

namespace {

// Group submissions come only from views and a submit only wakes the token, so actions settle
// within a few rounds; more means a loop between the ring and this driver.
constexpr int kMaxSettleRounds = 64;

}  // namespace

RingDriver::RingDriver(asio::io_context& io, const RingDriverOptions& options, Sender sender,
                       Flush flush, RingEvents& events)
    : io_(io),
      ring_(options.self, options.nodes, options.tunables, options.ring_seq_floor,
            io::monotonic_now_us()),
      groups_(options.self),
      sender_(std::move(sender)),
      flush_(std::move(flush)),
      events_(events),
      timer_(io),
      last_state_(ring_.state()) {}

void RingDriver::start() { settle(); }

void RingDriver::on_packet(NodeId from, std::span<const std::uint8_t> bytes) {
  if (ring_.has_left()) return;
  ring_.on_packet(from, bytes, io::monotonic_now_us());
  settle();
}

Result<Ok> RingDriver::send(const std::string& group, const Bytes& payload, bool safe) {
  if (payload.size() > kMaxGroupPayloadBytes) {
    return Error{"message of " + std::to_string(payload.size()) + " bytes exceeds the limit of " +
                 std::to_string(kMaxGroupPayloadBytes) + " bytes"};
  }
  auto message = groups_.message(group, payload);
  if (!message.ok()) return message.error();
  return submit(std::move(message).value(),
                safe ? ring::DeliveryKind::safe : ring::DeliveryKind::agreed);
}

Result<Ok> RingDriver::join(const std::string& group) {
  if (ring_.has_left()) return Error{"the agent is shutting down"};
  // A host already in the group (the agent's own groups, which a listener may join again) must
  // stay in it when the repeated join cannot be sent: its syncs go on naming the group.
  const bool was_member = groups_.joined(group);
  auto message = groups_.join(group);
  if (!message.ok()) return message.error();
  auto submitted = submit(std::move(message).value(), ring::DeliveryKind::agreed);
  if (!submitted.ok()) {
    if (!was_member) (void)groups_.leave(group);  // undo: the join never reached the ring
    return submitted;
  }
  joined_.insert(group);
  return Ok{};
}

void RingDriver::leave_group(const std::string& group) {
  if (joined_.erase(group) == 0 || ring_.has_left()) return;
  auto message = groups_.leave(group);
  KEEL_ASSERT(message.ok());  // the name was valid when it was joined
  auto submitted = submit(std::move(message).value(), ring::DeliveryKind::agreed);
  if (!submitted.ok()) {
    spdlog::warn("leaving group {}: {}; the others learn it at the next view", group,
                 submitted.error().message);
  }
}

Result<Ok> RingDriver::submit(Bytes bytes, ring::DeliveryKind kind) {
  if (ring_.has_left()) return Error{"the agent is shutting down"};
  auto submitted = ring_.submit(std::move(bytes), kind, io::monotonic_now_us());
  // The actions run from a posted handler, not inside the request: a request's effects (a
  // one-host ring delivers at once) then always come after its reply, and never in the middle
  // of whatever made the request.
  if (submitted.ok() && !settling_ && !settle_posted_) {
    settle_posted_ = true;
    asio::post(io_, [this] {
      settle_posted_ = false;
      settle();
    });
  }
  return submitted;
}

void RingDriver::leave_ring() {
  if (ring_.has_left()) return;
  ring_.leave(io::monotonic_now_us());
  settle();  // the leave packets go out now, synchronously
  KEEL_ASSERT(ring_.next_deadline() == kNever);
}

void RingDriver::settle() {
  KEEL_ASSERT(!settling_);
  settling_ = true;
  for (int round = 0;; ++round) {
    KEEL_ASSERT(round < kMaxSettleRounds);
    std::vector<ring::Action> actions = ring_.take_actions();
    if (actions.empty()) break;
    bool sent = false;
    for (ring::Action& action : actions) {
      if (const auto* send = std::get_if<ring::Send>(&action)) {
        sender_(send->to, send->bytes);
        sent = true;
      }
    }
    if (sent) flush_();  // out before the local deliveries below (see the header)
    for (ring::Action& action : actions) execute(action);
  }
  settling_ = false;
  if (ring_.state() != last_state_) {
    last_state_ = ring_.state();
    spdlog::debug("ring state: {}", ring::state_name(last_state_));
  }
  arm_timer();
}

// Everything but Send, which settle() has already handed to the sender.
void RingDriver::execute(ring::Action& action) {
  if (const auto* view = std::get_if<ring::View>(&action)) {
    events_.on_view(*view);
    groups_.on_ring_action(action);
    deliver_group_events(nullptr);
    submit_group_messages();
  } else if (const auto* message = std::get_if<ring::DeliveredMessage>(&action)) {
    groups_.on_ring_action(action);
    deliver_group_events(message);
    submit_group_messages();
  }
}

void RingDriver::deliver_group_events(const ring::DeliveredMessage* carrier) {
  for (const ring::GroupEvent& event : groups_.take_events()) {
    if (const auto* view = std::get_if<ring::GroupView>(&event)) {
      events_.on_group_view(*view);
    } else {
      // Only a delivered ring message carries group data.
      KEEL_ASSERT(carrier != nullptr);
      events_.on_group_message(std::get<ring::GroupMessage>(event), *carrier);
    }
  }
}

void RingDriver::submit_group_messages() {
  for (Bytes& bytes : groups_.take_submissions()) {
    auto submitted = submit(std::move(bytes), ring::DeliveryKind::agreed);
    if (!submitted.ok()) {
      spdlog::error("group sync not sent: {}; group membership waits for the next view",
                    submitted.error().message);
    }
  }
}

void RingDriver::arm_timer() {
  const TimeUs due = ring_.next_deadline();
  // A wait due no later than `due` stays: firing early costs one tick that finds nothing to do,
  // while moving it on every token (each one pushes the ring's deadlines later) cost a timer
  // update, and a cancelled wait to run, per packet.
  if (armed_for_ && *armed_for_ <= due) return;
  armed_for_ = due;
  const std::uint64_t generation = ++timer_generation_;
  if (due == kNever) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(io::monotonic_time_point(due));
  timer_.async_wait([this, generation](const asio::error_code& error) {
    if (error != asio::error::operation_aborted) on_timer(generation);
  });
}

void RingDriver::on_timer(std::uint64_t generation) {
  // A wait replaced by a later arm_timer() may still complete (even successfully, if it expired
  // just before): only the latest one counts.
  if (generation != timer_generation_ || ring_.has_left()) return;
  armed_for_.reset();
  ring_.on_tick(io::monotonic_now_us());
  settle();
}

}  // namespace keel::agent
