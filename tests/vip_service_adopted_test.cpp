// VipService (src/agent/vip_service.hpp) against a real kernel (vip_service_fixture.hpp): a
// drained host's handover, and addresses a restarted agent finds on its interfaces (adopted).
#include <fstream>

#include "vip_service_fixture.hpp"

// In the fixture's namespace: its helpers (kFloating, set_net_admin(), ...) by their names.
namespace keel::agent::vip_service_testing {
namespace {

// A drained host hands its address over and keeps it, silent, for the handover period; then the
// delete fails (its interface is renamed for a while). The address stays here, and silent, while
// the new holder has it: never answering ARP on two hosts. Once a retry deletes it, the silence
// goes too.
TEST_F(VipServiceTest, AHandedOverAddressWhoseDeleteFailsStaysSilent) {
  handover_ms_ = 1500;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  join_node_2(/*holds_floating=*/false);
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  ASSERT_TRUE(held_here()) << "placement gave the address to fe2; the test needs it here";
  ASSERT_TRUE(answers_arp()) << "the kernel does not answer ARP on this veth pair";
  ASSERT_TRUE(call([this] { return service_->drain().ok(); }));
  send_node_2_state(/*holds_floating=*/true);  // fe2 took it over
  ASSERT_TRUE(testing::wait_until([this] { return !held_here(); }));
  EXPECT_FALSE(answers_arp()) << "kept for the handover, but announced";
  const auto rename = [this](const std::string& from, const std::string& to) {
    return netns_->ip({"link", "set", from, "down"}) &&
           netns_->ip({"link", "set", from, "name", to}) && netns_->ip({"link", "set", to, "up"});
  };
  ASSERT_TRUE(rename("v0", "v0x"));
  EXPECT_TRUE(
      testing::wait_until([this] { return why().find("delete failed") != std::string::npos; }, 5s))
      << why();
  EXPECT_NE(netns_->ip_output({"-o", "addr", "show", "dev", "v0x"}).find(kFloating),
            std::string::npos);
  EXPECT_FALSE(answers_arp()) << "still here after the failed delete, and answering ARP";
  ASSERT_TRUE(rename("v0x", "v0"));
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 15s));
  EXPECT_TRUE(testing::wait_until([this] { return nft_tables().empty(); }, 5s)) << nft_tables();
}

// A drained host keeps its address while nobody else has it; when its health check then fails,
// it releases the address at once, as any failing host does, not after the handover period (that
// is for an address handed over to a new holder).
TEST_F(VipServiceTest, ADrainedHostWhoseCheckFailsReleasesAtOnce) {
  handover_ms_ = 10'000;
  two_nodes_ = true;
  const std::string failing = scratch_ + "/unhealthy";
  ASSERT_NO_FATAL_FAILURE(open(health_unless(failing)));
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  join_node_2(/*holds_floating=*/false);
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  ASSERT_TRUE(held_here()) << "placement gave the address to fe2; the test needs it here";
  ASSERT_TRUE(call([this] { return service_->drain().ok(); }));
  // The drain is in the table once placement names fe2 the holder; fe2 never takes it.
  ASSERT_TRUE(testing::wait_until([this] {
    return call([this] {
      return service_->status()["pools"][0]["addresses"][0]["holder"] == nlohmann::json(2);
    });
  }));
  ASSERT_TRUE(held_here()) << "fe2 has not taken it: the drained host keeps it";
  std::ofstream(failing).put('\n');
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 3s))
      << "kept as if handed over: " << why();
}

// A restarted agent finds kFloating on v0 with keel's mark (the agent before it was killed) and
// keeps it, but says nothing while alone in its ring: another host may have taken it over while
// it was gone. It announces it once placement in a view with the others gives it here.
TEST_F(VipServiceTest, AnAdoptedAddressIsAnnouncedOnlyOncePlacementGivesItHere) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  // Settled alone: every held address would have been announced by now.
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_EQ(announcements_sent(), 0);
  EXPECT_TRUE(held_here());
  EXPECT_TRUE(floating_on_v0());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
  EXPECT_TRUE(floating_on_v0());
}

// Nor does it answer ARP for it until then: a neighbour asking would otherwise switch to this
// host from the one that took the address over. Once placement gives it here it answers again.
TEST_F(VipServiceTest, AnAdoptedAddressAnswersNoArpUntilPlacementGivesItHere) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_TRUE(answers_arp()) << "the kernel does not answer ARP on this veth pair";
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_TRUE(floating_on_v0());
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return answers_arp(); }));
  EXPECT_EQ(nft_tables(), "");
}

// An agent killed mid-drain left its address silenced. The restarted one adopts the address and
// keeps that silence throughout (the same table, never deleted and made again, which would let
// ARP through in between); it removes the silence of an address it does not adopt.
TEST_F(VipServiceTest, AKilledDrainsSilenceOfAnAdoptedAddressIsKeptWithoutAGap) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  const std::string adopted = "keel_quiet_198_18_78_10";
  const std::string stale = "keel_quiet_198_18_78_99";
  for (const auto& [table, address] :
       {std::pair{adopted, "198.18.78.10"}, std::pair{stale, "198.18.78.99"}}) {
    ASSERT_TRUE(
        testing::run_tool({"ip", "netns", "exec", netns_->name(), "nft",
                           "add table arp " + table + "\nadd chain arp " + table +
                               " output { type filter hook output priority 0; }\nadd rule arp " +
                               table + " output arp saddr ip " + address + " drop"}));
  }
  const auto handle = [this](const std::string& table) {
    const std::string listed = testing::tool_output(
        {"ip", "netns", "exec", netns_->name(), "nft", "-a", "list", "table", "arp", table});
    const auto at = listed.find("# handle ");
    return at == std::string::npos ? std::string() : listed.substr(at, listed.find('\n', at) - at);
  };
  const std::string before = handle(adopted);
  ASSERT_NE(before, "");
  EXPECT_FALSE(answers_arp());
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_EQ(handle(adopted), before) << "the silence was removed and made again";
  EXPECT_EQ(nft_tables(), "table arp " + adopted + "\n");
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/false);
  EXPECT_TRUE(testing::wait_until([this] { return answers_arp(); }));
  EXPECT_EQ(nft_tables(), "");
}

// ... and if placement in that view gives it elsewhere (fe2 took it over and is preferred), it is
// deleted without ever having been announced.
TEST_F(VipServiceTest, AnAdoptedAddressPlacedElsewhereIsDeletedUnannounced) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(
      open("[vip.pool.prefer]\n\"" + std::string(kFloating) + "\" = \"fe2\"\n"));
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return quiescent(); }));
  EXPECT_FALSE(answers_arp());
  join_node_2(/*holds_floating=*/true);
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }));
  EXPECT_FALSE(held_here());
  EXPECT_EQ(announcements_sent(), 0);
  EXPECT_EQ(nft_tables(), "") << "the silence outlived the address";
}

// Alone for good. Only this host may hold the address: nobody can have taken it, so it is
// announced at once. Other hosts may: it cannot tell them dead from not found yet, and announces
// it after the startup time, when it would take an address that has no holder as well.
TEST_F(VipServiceTest, AnAdoptedAddressAloneIsAnnouncedAtOnceOnlyInAPoolOfOne) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 600'000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open("nodes = [\"fe1\"]\n"));
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  run_alone();
  EXPECT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
}

TEST_F(VipServiceTest, AnAdoptedAddressOfTheOnlySurvivorIsAnnouncedAfterTheStartupTime) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing is adopted";
  }
  startup_ms_ = 1000;
  two_nodes_ = true;
  ASSERT_NO_FATAL_FAILURE(leave_marked_floating());
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_NO_FATAL_FAILURE(catch_sent());
  const auto started = std::chrono::steady_clock::now();
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return announcements_sent() > 0; }));
  // Seen no earlier than it was sent: a late look can only pass a wrong early announcement.
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1000ms);
}

}  // namespace
}  // namespace keel::agent::vip_service_testing
