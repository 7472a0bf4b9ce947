// The ring on real hosts: real agents in a lab (network namespaces on a bridge), real UDP, real
// faults, 3 and 5 hosts. Every test keeps numbered messages flowing from every host through the
// fault, then checks every host's `keel ring listen` log as the simulator checks its hosts
// (lab_fixture.hpp, finish()). Failover times are printed as "[  timing  ]" lines.
#include <gtest/gtest.h>

#include "lab_fixture.hpp"

namespace keel::lab::testing {
namespace {

class RingE2E : public LabFixture, public ::testing::WithParamInterface<int> {
 protected:
  int hosts() const { return GetParam(); }
  std::string timing_name(const std::string& what) const {
    return what + " (" + std::to_string(hosts()) + " hosts)";
  }
  // Starts the ring and the traffic, and lets some messages through before the fault.
  void start_with_traffic() {
    ASSERT_NO_FATAL_FAILURE(start_ring(hosts()));
    traffic_->start(all());
    ASSERT_NO_FATAL_FAILURE(wait_traffic(0, static_cast<std::size_t>(2 * hosts())));
  }
};

TEST_P(RingE2E, FormsOneRingAndDeliversInOrder) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  ASSERT_NO_FATAL_FAILURE(wait_traffic(0, static_cast<std::size_t>(5 * hosts())));
  finish(all());
}

TEST_P(RingE2E, KilledHostLeavesTheViewAndRejoins) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  const int victim = hosts();
  const auto survivors = host_range(1, hosts() - 1);
  const auto killed_at = Clock::now();
  ASSERT_OK(lab_->kill_agent(victim));
  report_timing(timing_name("SIGKILL -> new view"), wait_view(survivors, killed_at));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), survivors.size() * 2));

  const auto restarted_at = Clock::now();
  ASSERT_OK(lab_->start_agent(victim));
  ASSERT_OK(listeners_->start(victim));
  report_timing(timing_name("restart -> rejoined view"), wait_view(all(), restarted_at));
  finish(all(), {victim});
}

TEST_P(RingE2E, StoppedHostLeavesAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  const int victim = hosts();
  const auto survivors = host_range(1, hosts() - 1);
  const auto stopped_at = Clock::now();
  ASSERT_OK(lab_->stop_agent(victim));
  report_timing(timing_name("SIGTERM -> new view"), wait_view(survivors, stopped_at));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), survivors.size() * 2));
  ASSERT_OK(lab_->start_agent(victim));
  ASSERT_OK(listeners_->start(victim));
  finish(all(), {victim});
}

TEST_P(RingE2E, HostWithLinkDownIsCutOffAndMergesBack) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  const int victim = hosts();
  const auto survivors = host_range(1, hosts() - 1);
  const auto down_at = Clock::now();
  ASSERT_OK(lab_->set_link(victim, false));
  report_timing(timing_name("link down -> new view"), wait_view(survivors, down_at));
  wait_view({victim}, down_at);  // alone, it forms a ring of its own
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), survivors.size() * 2));

  const auto up_at = Clock::now();
  ASSERT_OK(lab_->set_link(victim, true));
  report_timing(timing_name("link up -> merged view"), wait_view(all(), up_at));
  finish(all());
}

TEST_P(RingE2E, FrozenHostIsExcludedAndRejoinsWhenThawed) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  const int victim = 2;
  std::vector<int> others;
  for (int host : all()) {
    if (host != victim) others.push_back(host);
  }
  const auto frozen_at = Clock::now();
  ASSERT_OK(lab_->freeze(victim));
  // Frozen past the token timeout: the others have formed a ring without it.
  report_timing(timing_name("SIGSTOP -> new view"), wait_view(others, frozen_at));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), others.size() * 2));

  const auto thawed_at = Clock::now();
  ASSERT_OK(lab_->thaw(victim));
  report_timing(timing_name("SIGCONT -> merged view"), wait_view(all(), thawed_at));
  finish(all());
}

TEST_P(RingE2E, PartitionedSidesGoOnAndMergeWhenHealed) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  const auto left = host_range(1, hosts() / 2);
  const auto right = host_range(hosts() / 2 + 1, hosts());
  const auto split_at = Clock::now();
  ASSERT_OK(lab_->partition({left, right}));
  report_timing(timing_name("partition -> side views"),
                std::max(wait_view(left, split_at), wait_view(right, split_at)));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), all().size() * 2));

  const auto healed_at = Clock::now();
  ASSERT_OK(lab_->heal());
  report_timing(timing_name("heal -> merged view"), wait_view(all(), healed_at));
  finish(all());
}

TEST_P(RingE2E, TenPercentLossWithTraffic) {
  ASSERT_NO_FATAL_FAILURE(start_with_traffic());
  ASSERT_OK(lab_->loss(10));
  ASSERT_NO_FATAL_FAILURE(wait_traffic(traffic_->acknowledged(), all().size() * 30));
  ASSERT_OK(lab_->heal());
  finish(all());
}

INSTANTIATE_TEST_SUITE_P(Hosts, RingE2E, ::testing::Values(3, 5),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::to_string(param.param) + "hosts";
                         });

}  // namespace
}  // namespace keel::lab::testing
