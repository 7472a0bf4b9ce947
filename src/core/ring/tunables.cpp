// validate(): the allowed range of each ring tunable.
//
// Fields are checked in declaration order, and a bound that depends on another field (token_hold_ms
// on token_timeout_ms, join_timeout_ms on consensus_timeout_ms, the flow-control knobs on
// window_size) is checked only once that field is known to be in range, so the message names the
// field that is actually wrong.
#include "core/ring/tunables.hpp"

#include "core/ring/limits.hpp"

namespace keel::ring {
namespace {

using Problem = std::optional<std::string>;

Problem check_range(const char* name, std::uint64_t value, std::uint64_t low, std::uint64_t high) {
  if (value >= low && value <= high) return std::nullopt;
  return std::string(name) + " must be between " + std::to_string(low) + " and " +
         std::to_string(high) + " (got " + std::to_string(value) + ")";
}

// Like check_range, for an upper bound that is another field: the message names that field too.
Problem check_range_of(const char* name, std::uint64_t value, std::uint64_t low,
                       const char* high_name, std::uint64_t high) {
  if (value >= low && value <= high) return std::nullopt;
  return std::string(name) + " must be between " + std::to_string(low) + " and " + high_name +
         " = " + std::to_string(high) + " (got " + std::to_string(value) + ")";
}

Problem validate_timeouts(const RingTunables& t) {
  if (auto p = check_range("token_timeout_ms", t.token_timeout_ms, 10, 60000)) return p;
  if (auto p = check_range("token_retransmits", t.token_retransmits, 1, 20)) return p;
  if (auto p = check_range("join_timeout_ms", t.join_timeout_ms, 1, 10000)) return p;
  if (auto p = check_range("consensus_timeout_ms", t.consensus_timeout_ms, 2, 120000)) return p;
  if (t.join_timeout_ms >= t.consensus_timeout_ms) {
    return "join_timeout_ms must be less than consensus_timeout_ms (got " +
           std::to_string(t.join_timeout_ms) + " >= " + std::to_string(t.consensus_timeout_ms) +
           ")";
  }
  if (auto p = check_range("probe_interval_ms", t.probe_interval_ms, 10, 60000)) return p;
  if (auto p = check_range_of("token_hold_ms", t.token_hold_ms, 0, "token_timeout_ms/4",
                              t.token_timeout_ms / 4)) {
    return p;
  }
  return check_range("idle_rotations_before_hold", t.idle_rotations_before_hold, 0, 10000);
}

Problem validate_flow_control(const RingTunables& t) {
  if (auto p = check_range("window_size", t.window_size, 1, 10000)) return p;
  if (auto p = check_range_of("max_messages_per_visit", t.max_messages_per_visit, 1, "window_size",
                              t.window_size)) {
    return p;
  }
  if (t.max_outstanding_messages < t.window_size || t.max_outstanding_messages > 100000) {
    return "max_outstanding_messages must be between window_size = " +
           std::to_string(t.window_size) + " and 100000 (got " +
           std::to_string(t.max_outstanding_messages) + ")";
  }
  if (auto p =
          check_range("max_packet_bytes", t.max_packet_bytes, kMinPacketBytes, kMaxPacketBytes)) {
    return p;
  }
  return check_range("max_send_queue_messages", t.max_send_queue_messages, 1, 1000000);
}

}  // namespace

std::optional<std::string> validate(const RingTunables& tunables) {
  if (auto problem = validate_timeouts(tunables)) return problem;
  return validate_flow_control(tunables);
}

}  // namespace keel::ring
