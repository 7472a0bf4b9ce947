// Coverage marks: counters on the protocol's rare paths.
//
// The simulator sums them over a sweep of seeds and reports how often each was reached; a mark
// that no seed reaches is a dead path or a fault the simulator does not inject.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace keel::ring {

enum class Mark : std::uint8_t {
  token_lost_operational,
  token_lost_recovery,
  commit_token_lost,
  commit_token_retransmitted,
  token_retransmitted,
  stale_token_dropped,
  retransmit_served,
  retransmit_list_full,
  window_full,
  outstanding_limit,
  token_held_idle,
  token_released_by_wake,
  merge_started_by_probe,
  merge_refused_one_way,
  join_in_commit,
  join_in_recovery,
  host_failed_in_gather,
  listed_as_failed_by_peer,
  representative_silent_after_consensus,
  commit_token_refused_old_ring_seq,
  old_message_recovered,
  safe_delivered_in_transitional,
  gap_skipped_in_transitional,
  foreign_sender_skipped_in_transitional,
  fragment_chain_dropped,
  partial_message_resent,
  clock_jump,
  member_left,
  count_  // not a mark
};

constexpr std::size_t kMarkCount = static_cast<std::size_t>(Mark::count_);

constexpr std::string_view mark_name(Mark mark) {
  constexpr std::array<std::string_view, kMarkCount> names = {
      "token_lost_operational",
      "token_lost_recovery",
      "commit_token_lost",
      "commit_token_retransmitted",
      "token_retransmitted",
      "stale_token_dropped",
      "retransmit_served",
      "retransmit_list_full",
      "window_full",
      "outstanding_limit",
      "token_held_idle",
      "token_released_by_wake",
      "merge_started_by_probe",
      "merge_refused_one_way",
      "join_in_commit",
      "join_in_recovery",
      "host_failed_in_gather",
      "listed_as_failed_by_peer",
      "representative_silent_after_consensus",
      "commit_token_refused_old_ring_seq",
      "old_message_recovered",
      "safe_delivered_in_transitional",
      "gap_skipped_in_transitional",
      "foreign_sender_skipped_in_transitional",
      "fragment_chain_dropped",
      "partial_message_resent",
      "clock_jump",
      "member_left",
  };
  return names[static_cast<std::size_t>(mark)];
}

using Coverage = std::array<std::uint64_t, kMarkCount>;

}  // namespace keel::ring
