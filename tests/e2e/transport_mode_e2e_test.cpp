// Transport modes on real hosts: a lab whose agents send every packet meant for all nodes as one
// broadcast to the lab's subnet (198.18.0.255, the bridge's /24) forms its ring, delivers in one
// order (the ring-log checks of lab_fixture.hpp, finish()), loses a killed host and takes it back.
// The agents' counters show that those packets really went out once each. Multicast is not run
// here: the test machines may send only inside 198.18.0.0/15, and a multicast group is outside it
// (its config is checked by transport_mode_config_test.cpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lab/process.hpp"
#include "lab_fixture.hpp"

namespace keel::lab::testing {
namespace {

using nlohmann::json;

class TransportModeE2E : public LabFixture {
 protected:
  // `keel status --json` of a host's agent, or null.
  json status(int host) const {
    auto result =
        run_capture({lab_->keel_binary(), "status", "--json", "--socket", lab_->host(host).socket},
                    milliseconds{3000});
    if (!result || result.value().exit_code != 0) return nullptr;
    return json::parse(result.value().out, nullptr, /*allow_exceptions=*/false);
  }

  // Every packet the ring addressed to all nodes left as one datagram: in unicast mode each would
  // have been one per other host, so datagrams sent would exceed ring packets sent. Nothing was
  // refused on the way in, our own broadcasts (which always come back) included.
  void expect_single_broadcasts(int host) const {
    const json s = status(host);
    ASSERT_TRUE(s.is_object()) << "no status from h" << host;
    const json& transport = s["transport_stats"];
    EXPECT_GT(transport["group_datagrams_sent"].get<std::uint64_t>(), 0u) << "h" << host;
    EXPECT_EQ(transport["datagrams_sent"].get<std::uint64_t>() +
                  transport["send_errors"].get<std::uint64_t>(),
              s["ring_stats"]["packets_sent"].get<std::uint64_t>())
        << "h" << host << ": " << transport.dump();
    EXPECT_GT(transport["own_datagrams_ignored"].get<std::uint64_t>(), 0u) << "h" << host;
    for (const auto& [reason, count] : transport["dropped_from_unconfigured"].items()) {
      EXPECT_EQ(count, 0) << "h" << host << " dropped from unconfigured: " << reason;
    }
    for (const json& peer : s["peers"]) {
      EXPECT_GT(peer["packets_opened"].get<std::uint64_t>(), 0u) << "h" << host;
      for (const auto& [reason, count] : peer["rejected"].items()) {
        EXPECT_EQ(count, 0) << "h" << host << " from " << peer["name"] << ": " << reason;
      }
    }
  }
};

TEST_F(TransportModeE2E, BroadcastRingDeliversInOrderAndLosesAKilledHost) {
  host_config_.transport = {{"mode", "\"broadcast\""},
                            {"group", "\"" + std::string(kBroadcastAddress) + "\""}};
  ASSERT_NO_FATAL_FAILURE(start_ring(3));
  traffic_->start(all());
  ASSERT_NO_FATAL_FAILURE(wait_traffic(0, 15));
  for (int host : all()) ASSERT_NO_FATAL_FAILURE(expect_single_broadcasts(host));

  const int victim = 3;
  const auto survivors = host_range(1, 2);
  const auto killed_at = Clock::now();
  ASSERT_OK(lab_->kill_agent(victim));
  report_timing("broadcast: SIGKILL -> new view", wait_view(survivors, killed_at));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), 4));

  const auto restarted_at = Clock::now();
  ASSERT_OK(lab_->start_agent(victim));
  ASSERT_OK(listeners_->start(victim));
  report_timing("broadcast: restart -> rejoined view", wait_view(all(), restarted_at));
  finish(all(), {victim});
}

}  // namespace
}  // namespace keel::lab::testing
