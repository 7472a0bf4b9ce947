// The nftables text the lab loads for its faults (src/lab/network_faults.hpp): no root needed.
#include <gtest/gtest.h>

#include "lab/network_faults.hpp"

namespace keel::lab {
namespace {

const LabNames kNames("kl00ab");

TEST(LabNetworkFaults, NoFaultsIsAnEmptyChainInAFreshTable) {
  EXPECT_EQ(nft_ruleset(kNames, 3, NetworkFaults{}),
            "table bridge kl00ab\n"
            "delete table bridge kl00ab\n"
            "table bridge kl00ab {\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            "  }\n"
            "}\n");
}

TEST(LabNetworkFaults, PartitionDropsIpv4BetweenGroupsOnly) {
  NetworkFaults faults;
  faults.partition = {{1, 2}, {3}};
  const std::string text = nft_ruleset(kNames, 3, faults);
  EXPECT_NE(text.find("    ether type ip iifname { \"kl00ab-h1\", \"kl00ab-h2\" } oifname { "
                      "\"kl00ab-h3\" } drop\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    ether type ip iifname { \"kl00ab-h3\" } oifname { \"kl00ab-h1\", "
                      "\"kl00ab-h2\" } drop\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("!="), std::string::npos) << "the client must stay reachable: " << text;
}

TEST(LabNetworkFaults, CutsAreOneWayAndLossCoversEveryHostPort) {
  NetworkFaults faults;
  faults.cuts = {{1, 3}};
  faults.loss_percent = 10;
  const std::string text = nft_ruleset(kNames, 3, faults);
  EXPECT_NE(text.find("    ether type ip iifname \"kl00ab-h1\" oifname \"kl00ab-h3\" drop\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("iifname \"kl00ab-h3\" oifname \"kl00ab-h1\""), std::string::npos);
  EXPECT_NE(text.find("    ether type ip iifname { \"kl00ab-h1\", \"kl00ab-h2\", \"kl00ab-h3\" } "
                      "numgen random mod 100 < 10 drop\n"),
            std::string::npos)
      << text;
}

TEST(LabNetworkFaults, TotalLossIsAPlainDrop) {
  NetworkFaults faults;
  faults.loss_percent = 100;
  const std::string text = nft_ruleset(kNames, 2, faults);
  EXPECT_NE(text.find("iifname { \"kl00ab-h1\", \"kl00ab-h2\" } drop\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("numgen"), std::string::npos);
}

TEST(LabNetworkFaults, PartitionsMustNameEveryHostOnce) {
  EXPECT_TRUE(validate_partition({{1, 2}, {3, 4, 5}}, 5).ok());
  EXPECT_FALSE(validate_partition({{1, 2, 3}}, 3).ok());       // one group
  EXPECT_FALSE(validate_partition({{1, 2}, {2, 3}}, 3).ok());  // h2 twice
  EXPECT_FALSE(validate_partition({{1}, {2}}, 3).ok());        // h3 missing
  EXPECT_FALSE(validate_partition({{1}, {2, 4}}, 3).ok());     // no h4
  EXPECT_FALSE(validate_partition({{1, 2, 3}, {}}, 3).ok());   // empty group
  EXPECT_NE(validate_partition({{1}, {2}}, 3).error().message.find("h3"), std::string::npos);
}

TEST(LabNetworkFaults, Describes) {
  EXPECT_EQ(describe(NetworkFaults{}), "none");
  NetworkFaults faults;
  faults.partition = {{1, 2}, {3, 4, 5}};
  faults.cuts = {{1, 3}};
  faults.loss_percent = 10;
  EXPECT_EQ(describe(faults), "partition h1,h2 | h3,h4,h5; cut h1->h3; loss 10%");
}

}  // namespace
}  // namespace keel::lab
