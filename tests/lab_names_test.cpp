// The lab's names and addresses (src/lab/names.hpp): no root needed.
#include <gtest/gtest.h>

#include <set>

#include "lab/names.hpp"

namespace keel::lab {
namespace {

TEST(LabNames, GeneratedPrefixesAreShortValidAndVary) {
  std::set<std::string> seen;
  for (std::uint64_t pid = 100; pid < 164; ++pid) {
    const std::string prefix = generate_prefix(pid, 1'700'000'000'000'000'000ULL);
    EXPECT_EQ(prefix.size(), 6u);
    EXPECT_EQ(prefix.substr(0, 2), "kl");
    EXPECT_TRUE(validate_prefix(prefix).ok()) << prefix;
    seen.insert(prefix);
  }
  EXPECT_GT(seen.size(), 60u);  // neighbouring pids give different prefixes
  EXPECT_NE(generate_prefix(7, 1), generate_prefix(7, 2));
}

TEST(LabNames, PrefixRules) {
  EXPECT_TRUE(validate_prefix("a").ok());
  EXPECT_TRUE(validate_prefix("ab12cd34").ok());
  EXPECT_FALSE(validate_prefix("").ok());
  EXPECT_FALSE(validate_prefix("ab12cd345").ok());  // 9 characters
  EXPECT_FALSE(validate_prefix("1abc").ok());
  EXPECT_FALSE(validate_prefix("Abc").ok());
  EXPECT_FALSE(validate_prefix("a-b").ok());
  EXPECT_FALSE(validate_prefix("a_b").ok());
}

TEST(LabNames, NamesFitInterfaceNamesForEveryHost) {
  const LabNames names("abcdefgh");
  EXPECT_EQ(names.bridge(), "abcdefgh-br");
  EXPECT_EQ(names.netns(28), "abcdefgh-h28");
  EXPECT_EQ(names.veth(3), "abcdefgh-h3");
  EXPECT_EQ(names.table(), "abcdefgh");
  EXPECT_EQ(names.default_dir(), "/tmp/keel-lab-abcdefgh");
  for (int host = 1; host <= kMaxLabHosts; ++host) {
    EXPECT_LE(names.veth(host).size(), kMaxInterfaceName);
  }
  EXPECT_LE(names.bridge().size(), kMaxInterfaceName);
}

TEST(LabNames, AddressesAreInsideTheBenchmarkRange) {
  EXPECT_EQ(LabNames::address(1), "198.18.0.11");
  EXPECT_EQ(LabNames::address(kMaxLabHosts), "198.18.0.38");
  EXPECT_EQ(LabNames::host(4), "h4");
}

TEST(LabNames, OwnsOnlyItsOwnObjects) {
  const LabNames names("kl1");
  EXPECT_TRUE(names.owns("kl1-br"));
  EXPECT_TRUE(names.owns("kl1-h12"));
  EXPECT_FALSE(names.owns("kl12-h1"));  // another lab whose prefix starts the same
  EXPECT_FALSE(names.owns("kl1"));
  EXPECT_FALSE(names.owns("eth0"));
}

TEST(LabNames, ParsesHosts) {
  EXPECT_EQ(parse_host("h3", 5).value(), 3);
  EXPECT_EQ(parse_host("5", 5).value(), 5);
  EXPECT_FALSE(parse_host("h6", 5).ok());
  EXPECT_FALSE(parse_host("0", 5).ok());
  EXPECT_FALSE(parse_host("hx", 5).ok());
  EXPECT_FALSE(parse_host("", 5).ok());
  EXPECT_NE(parse_host("h9", 5).error().message.find("h1 .. h5"), std::string::npos);

  EXPECT_EQ(parse_host_list("1,h2,3", 5).value(), (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(parse_host_list("1,1", 5).ok());
  EXPECT_FALSE(parse_host_list("1,", 5).ok());
  EXPECT_FALSE(parse_host_list("1,7", 5).ok());
}

}  // namespace
}  // namespace keel::lab
