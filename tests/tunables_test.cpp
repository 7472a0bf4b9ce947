// Tests for RingTunables validation: the defaults pass, every bound accepts its edge value and
// rejects one step past it with a message naming the field.
#include "core/ring/tunables.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>

#include "core/ring/limits.hpp"

namespace keel::ring {
namespace {

struct Bound {
  const char* field;
  std::function<void(RingTunables&)> set_edge;     // a valid value at the bound
  std::function<void(RingTunables&)> set_outside;  // one step past it
};

std::vector<Bound> bounds() {
  using T = RingTunables;
  return {
      {"token_timeout_ms",
       [](T& t) {
         t.token_timeout_ms = 10;
         t.token_hold_ms = 2;
       },
       [](T& t) {
         t.token_timeout_ms = 9;
         t.token_hold_ms = 2;
       }},
      {"token_timeout_ms", [](T& t) { t.token_timeout_ms = 60000; },
       [](T& t) { t.token_timeout_ms = 60001; }},
      {"token_retransmits", [](T& t) { t.token_retransmits = 1; },
       [](T& t) { t.token_retransmits = 0; }},
      {"token_retransmits", [](T& t) { t.token_retransmits = 20; },
       [](T& t) { t.token_retransmits = 21; }},
      {"join_timeout_ms", [](T& t) { t.join_timeout_ms = 1; }, [](T& t) { t.join_timeout_ms = 0; }},
      {"join_timeout_ms",
       [](T& t) {
         t.join_timeout_ms = 10000;
         t.consensus_timeout_ms = 20000;
       },
       [](T& t) {
         t.join_timeout_ms = 10001;
         t.consensus_timeout_ms = 20000;
       }},
      {"join_timeout_ms must be less than consensus_timeout_ms",
       [](T& t) { t.join_timeout_ms = 79; }, [](T& t) { t.join_timeout_ms = 80; }},
      {"consensus_timeout_ms",
       [](T& t) {
         t.consensus_timeout_ms = 2;
         t.join_timeout_ms = 1;
       },
       [](T& t) {
         t.consensus_timeout_ms = 1;
         t.join_timeout_ms = 1;
       }},
      {"consensus_timeout_ms", [](T& t) { t.consensus_timeout_ms = 120000; },
       [](T& t) { t.consensus_timeout_ms = 120001; }},
      {"probe_interval_ms", [](T& t) { t.probe_interval_ms = 10; },
       [](T& t) { t.probe_interval_ms = 9; }},
      {"probe_interval_ms", [](T& t) { t.probe_interval_ms = 60000; },
       [](T& t) { t.probe_interval_ms = 60001; }},
      {"token_hold_ms", [](T& t) { t.token_hold_ms = 75; }, [](T& t) { t.token_hold_ms = 76; }},
      {"token_hold_ms",
       [](T& t) {
         t.token_hold_ms = 0;
         t.token_timeout_ms = 10;
       },
       [](T& t) {
         t.token_hold_ms = 3;
         t.token_timeout_ms = 10;
       }},
      {"idle_rotations_before_hold", [](T& t) { t.idle_rotations_before_hold = 10000; },
       [](T& t) { t.idle_rotations_before_hold = 10001; }},
      {"window_size",
       [](T& t) {
         t.window_size = 1;
         t.max_messages_per_visit = 1;
       },
       [](T& t) {
         t.window_size = 0;
         t.max_messages_per_visit = 1;
       }},
      {"window_size",
       [](T& t) {
         t.window_size = 10000;
         t.max_outstanding_messages = 10000;
       },
       [](T& t) {
         t.window_size = 10001;
         t.max_outstanding_messages = 10001;
       }},
      {"max_messages_per_visit", [](T& t) { t.max_messages_per_visit = 1; },
       [](T& t) { t.max_messages_per_visit = 0; }},
      {"max_messages_per_visit", [](T& t) { t.max_messages_per_visit = 150; },
       [](T& t) { t.max_messages_per_visit = 151; }},
      {"max_outstanding_messages", [](T& t) { t.max_outstanding_messages = 150; },
       [](T& t) { t.max_outstanding_messages = 149; }},
      {"max_outstanding_messages", [](T& t) { t.max_outstanding_messages = 100000; },
       [](T& t) { t.max_outstanding_messages = 100001; }},
      {"max_packet_bytes", [](T& t) { t.max_packet_bytes = kMinPacketBytes; },
       [](T& t) { t.max_packet_bytes = kMinPacketBytes - 1; }},
      {"max_packet_bytes", [](T& t) { t.max_packet_bytes = kMaxPacketBytes; },
       [](T& t) { t.max_packet_bytes = kMaxPacketBytes + 1; }},
      {"max_send_queue_messages", [](T& t) { t.max_send_queue_messages = 1; },
       [](T& t) { t.max_send_queue_messages = 0; }},
      {"max_send_queue_messages", [](T& t) { t.max_send_queue_messages = 1000000; },
       [](T& t) { t.max_send_queue_messages = 1000001; }},
  };
}

TEST(Tunables, DefaultsAreValid) {
  const auto problem = validate(RingTunables{});
  EXPECT_FALSE(problem.has_value()) << *problem;
}

TEST(Tunables, EdgeValuesAreAccepted) {
  for (const Bound& bound : bounds()) {
    RingTunables tunables;
    bound.set_edge(tunables);
    const auto problem = validate(tunables);
    EXPECT_FALSE(problem.has_value()) << bound.field << ": " << *problem;
  }
}

TEST(Tunables, ValuesPastEachBoundAreRejectedByName) {
  for (const Bound& bound : bounds()) {
    RingTunables tunables;
    bound.set_outside(tunables);
    const auto problem = validate(tunables);
    ASSERT_TRUE(problem.has_value()) << bound.field;
    EXPECT_EQ(problem->rfind(bound.field, 0), 0u) << "got: " << *problem;
  }
}

TEST(Tunables, MessageGivesRangeAndValue) {
  RingTunables tunables;
  tunables.token_timeout_ms = 5;
  EXPECT_EQ(validate(tunables), "token_timeout_ms must be between 10 and 60000 (got 5)");
  tunables = RingTunables{};
  tunables.token_hold_ms = 100;
  EXPECT_EQ(validate(tunables),
            "token_hold_ms must be between 0 and token_timeout_ms/4 = 75 (got 100)");
  tunables = RingTunables{};
  tunables.max_outstanding_messages = 10;
  EXPECT_EQ(validate(tunables),
            "max_outstanding_messages must be between window_size = 150 and 100000 (got 10)");
}

// A dependent bound is reported against the field that is out of its own range.
TEST(Tunables, BaseFieldIsReportedBeforeDependentOne) {
  RingTunables tunables;
  tunables.window_size = 0;  // max_messages_per_visit (17) now exceeds it too
  EXPECT_EQ(validate(tunables)->rfind("window_size", 0), 0u);
  tunables = RingTunables{};
  tunables.consensus_timeout_ms = 0;  // join_timeout_ms (25) is no longer below it either
  EXPECT_EQ(validate(tunables)->rfind("consensus_timeout_ms", 0), 0u);
}

}  // namespace
}  // namespace keel::ring
