// RingTunables: the ring's timeouts and flow-control knobs, with their defaults.
//
// The defaults detect a dead host and install the new view in well under half a second on a LAN:
// token_timeout_ms + consensus_timeout_ms + one formation (about 400 ms when idle), against 6-8 s
// for corosync's defaults. The consensus timeout only bounds how long the survivors wait for a
// dead host's join; the live ones answer within a join timeout, so it can be short, and it is
// what floating IPs wait for on top of the token timeout. docs/ring.md explains each knob.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/common/types.hpp"

namespace keel::ring {

struct RingTunables {
  // No token for this long: the ring is considered lost and membership starts (gather).
  std::uint32_t token_timeout_ms = 300;
  // How many times a host re-sends a token it passed on before the token timeout runs out.
  std::uint32_t token_retransmits = 10;
  // Gather: a join message is re-sent this often.
  std::uint32_t join_timeout_ms = 25;
  // Gather: hosts that have not agreed on the membership by then are declared failed.
  std::uint32_t consensus_timeout_ms = 80;
  // Operational: how often each host reports whom it hears (finds other rings to merge with).
  std::uint32_t probe_interval_ms = 200;
  // An idle ring's representative holds the token this long per rotation (saves CPU; a host with
  // something to send wakes it at once).
  std::uint32_t token_hold_ms = 20;
  // ... but only once the token has gone round idle this many times in a row: under light traffic
  // the token keeps moving, so a message waits for part of a rotation instead of a wake-up.
  std::uint32_t idle_rotations_before_hold = 30;
  // Flow control: messages broadcast per token rotation by all hosts together ...
  std::uint32_t window_size = 150;
  // ... and by one host per token visit (retransmissions included). A third of the window: one
  // sender alone still fills most of it, and three at once share it.
  std::uint32_t max_messages_per_visit = 50;
  // Memory bound: no new message is broadcast while this many are not yet held by every member.
  std::uint32_t max_outstanding_messages = 512;
  // Largest packet the ring emits (the transport adds its own overhead on top).
  std::uint32_t max_packet_bytes = 1400;
  // Submitted messages not yet broadcast; submit() refuses more.
  std::uint32_t max_send_queue_messages = 4096;
  // Simulation only: report every message receipt as an action, for the safe-delivery checker.
  bool report_receipts = false;

  std::uint32_t token_retransmit_ms() const {
    // Spread the retransmits over the timeout so the last one still has time to arrive.
    const std::uint32_t per = token_timeout_ms * 10 / (token_retransmits * 10 + 2);
    return per > 0 ? per : 1;
  }
};

// Returns a message naming the first tunable out of range, or nothing when all are valid.
std::optional<std::string> validate(const RingTunables& tunables);

}  // namespace keel::ring
