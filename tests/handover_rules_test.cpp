// A drain's handover rules (src/io/handover_rules.hpp) in a private network namespace: installed
// as nft(8) lists them, removed without trace, removal idempotent, bad input a clear error.
#include "io/handover_rules.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "netns_test_support.hpp"

namespace keel::io {
namespace {

const auto kAddress = asio::ip::make_address_v4("198.18.77.100");
const auto kOldHolder = asio::ip::make_address_v4("198.18.77.1");

class HandoverRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = testing::netns_unavailable_reason()) GTEST_SKIP() << *reason;
    netns_ = std::make_unique<testing::TestNamespace>(testing::unique_prefix() + "-h");
    ASSERT_TRUE(netns_->created());
    ASSERT_TRUE(netns_->ip({"link", "add", "v0", "type", "veth", "peer", "name", "v1"}));
    ASSERT_TRUE(netns_->ip({"link", "set", "v0", "up"}));
  }
  void TearDown() override { netns_.reset(); }

  // Runs `work` with a HandoverRules opened inside the namespace.
  template <typename Work>
  Result<Ok> in_namespace(Work work) {
    auto done = netns_->run([&]() -> Result<Ok> {
      auto rules = HandoverRules::open();
      if (!rules) return rules.error();
      return work(*rules.value());
    });
    if (!done) return Error{"could not enter the namespace"};
    return *done;
  }

  std::string ruleset() {
    return testing::tool_output({"ip", "netns", "exec", netns_->name(), "nft", "list", "ruleset"});
  }

  std::unique_ptr<testing::TestNamespace> netns_;
};

TEST_F(HandoverRulesTest, ForwardsUnknownConnectionsToTheOldHolderUntilStopped) {
  auto installed = in_namespace(
      [](HandoverRules& rules) { return rules.forward_unknown(kAddress, kOldHolder, "v0"); });
  ASSERT_TRUE(installed.ok()) << installed.error().message;
  const std::string listed = ruleset();
  EXPECT_NE(listed.find("table ip keel_handover_198_18_77_100"), std::string::npos) << listed;
  EXPECT_NE(listed.find("ip daddr 198.18.77.100"), std::string::npos) << listed;
  EXPECT_NE(listed.find("socket wildcard 1"), std::string::npos) << listed;
  EXPECT_NE(listed.find("dup to 198.18.77.1 device \"v0\""), std::string::npos) << listed;

  // Installing again replaces the rule instead of adding a second one.
  ASSERT_TRUE(in_namespace([](HandoverRules& rules) {
                return rules.forward_unknown(kAddress, kOldHolder, "v0");
              }).ok());
  const std::string again = ruleset();
  EXPECT_EQ(again.find("dup to"), again.rfind("dup to")) << again;

  auto stopped = in_namespace([](HandoverRules& rules) { return rules.stop_forwarding(kAddress); });
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  EXPECT_EQ(ruleset().find("keel_handover"), std::string::npos);
  auto twice = in_namespace([](HandoverRules& rules) { return rules.stop_forwarding(kAddress); });
  EXPECT_TRUE(twice.ok()) << twice.error().message;
}

TEST_F(HandoverRulesTest, SilencesArpForTheAddressUntilUnsilenced) {
  auto silenced = in_namespace([](HandoverRules& rules) { return rules.silence(kAddress); });
  ASSERT_TRUE(silenced.ok()) << silenced.error().message;
  const std::string listed = ruleset();
  EXPECT_NE(listed.find("table arp keel_quiet_198_18_77_100"), std::string::npos) << listed;
  EXPECT_NE(listed.find("arp saddr ip 198.18.77.100 drop"), std::string::npos) << listed;

  auto unsilenced = in_namespace([](HandoverRules& rules) { return rules.unsilence(kAddress); });
  ASSERT_TRUE(unsilenced.ok()) << unsilenced.error().message;
  EXPECT_EQ(ruleset().find("keel_quiet"), std::string::npos);
  EXPECT_TRUE(in_namespace([](HandoverRules& rules) { return rules.unsilence(kAddress); }).ok());
}

// A restarted agent removes only tables named exactly as it names them, in their own family.
TEST(HandoverRuleNames, OnlyKeelsOwnTablesAreKeels) {
  EXPECT_TRUE(HandoverRules::made_by_keel("arp", "keel_quiet_198_18_77_100"));
  EXPECT_TRUE(HandoverRules::made_by_keel("ip", "keel_handover_10_0_0_1"));
  EXPECT_FALSE(HandoverRules::made_by_keel("ip", "keel_quiet_198_18_77_100"));
  EXPECT_FALSE(HandoverRules::made_by_keel("inet", "keel_handover_10_0_0_1"));
  EXPECT_FALSE(HandoverRules::made_by_keel("arp", "keel_quiet_web"));
  EXPECT_FALSE(HandoverRules::made_by_keel("arp", "keel_quiet_198_18_77_100_x"));
  EXPECT_FALSE(HandoverRules::made_by_keel("arp", "keel_quiet_198_18_77_0100"));
  EXPECT_FALSE(HandoverRules::made_by_keel("arp", "keel_quiet_"));
  EXPECT_FALSE(HandoverRules::made_by_keel("arp", "my_keel_quiet_198_18_77_100"));
  EXPECT_FALSE(HandoverRules::made_by_keel("ip", "filter"));
}

TEST_F(HandoverRulesTest, RemovesTheTablesItMadeAndNoOther) {
  ASSERT_TRUE(in_namespace([](HandoverRules& rules) { return rules.silence(kAddress); }).ok());
  ASSERT_TRUE(in_namespace([](HandoverRules& rules) {
                return rules.forward_unknown(kAddress, kOldHolder, "v0");
              }).ok());
  for (const auto& [family, name] : {std::pair{"arp", "site"}, std::pair{"arp", "keel_quiet_web"},
                                     std::pair{"ip", "keel_quiet_198_18_77_100"}}) {
    ASSERT_TRUE(testing::run_tool(
        {"ip", "netns", "exec", netns_->name(), "nft", "add", "table", family, name}));
  }
  std::vector<std::string> removed;
  auto done = in_namespace([&removed](HandoverRules& rules) -> Result<Ok> {
    auto found = rules.remove_leftovers();
    if (!found) return found.error();
    removed = std::move(found).value();
    return Ok{};
  });
  ASSERT_TRUE(done.ok()) << done.error().message;
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{"arp keel_quiet_198_18_77_100",
                                               "ip keel_handover_198_18_77_100"}));
  std::istringstream listed(
      testing::tool_output({"ip", "netns", "exec", netns_->name(), "nft", "list", "tables"}));
  std::set<std::string> left;
  for (std::string line; std::getline(listed, line);) left.insert(line);
  EXPECT_EQ(left, (std::set<std::string>{"table arp site", "table arp keel_quiet_web",
                                         "table ip keel_quiet_198_18_77_100"}));
}

TEST_F(HandoverRulesTest, KeepsTheTablesItIsToldToKeep) {
  const asio::ip::address_v4 adopted = asio::ip::make_address_v4("198.18.77.101");
  for (const auto& address : {kAddress, adopted}) {
    ASSERT_TRUE(
        in_namespace([&address](HandoverRules& rules) { return rules.silence(address); }).ok());
  }
  std::vector<std::string> removed;
  auto done = in_namespace([&](HandoverRules& rules) -> Result<Ok> {
    auto found = rules.remove_leftovers({HandoverRules::quiet_table(adopted)});
    if (!found) return found.error();
    removed = std::move(found).value();
    return Ok{};
  });
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(removed, (std::vector<std::string>{"arp keel_quiet_198_18_77_100"}));
  const std::string listed =
      testing::tool_output({"ip", "netns", "exec", netns_->name(), "nft", "list", "tables"});
  EXPECT_NE(listed.find("table arp keel_quiet_198_18_77_101"), std::string::npos) << listed;
}

TEST_F(HandoverRulesTest, AnUnknownInterfaceIsAClearError) {
  auto installed = in_namespace(
      [](HandoverRules& rules) { return rules.forward_unknown(kAddress, kOldHolder, "nope0"); });
  ASSERT_FALSE(installed.ok());
  EXPECT_NE(installed.error().message.find("nftables"), std::string::npos)
      << installed.error().message;
  EXPECT_NE(installed.error().message.find("nope0"), std::string::npos)
      << installed.error().message;
}

}  // namespace
}  // namespace keel::io
