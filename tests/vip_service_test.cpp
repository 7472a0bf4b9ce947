// VipService (src/agent/vip_service.hpp) against a real kernel (vip_service_fixture.hpp): taking,
// retrying and deleting addresses, hooks, and addresses changed behind keel's back.
#include <fstream>
#include <thread>

#include "vip_service_fixture.hpp"

// In the fixture's namespace: its helpers (kFloating, set_net_admin(), ...) by their names.
namespace keel::agent::vip_service_testing {
namespace {

TEST_F(VipServiceTest, TakesItsAddressAloneAndDeletesItAtStop) {
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  EXPECT_TRUE(held_here());
  call([this] {
    service_->stop();
    return 0;
  });
  EXPECT_FALSE(floating_on_v0());
}

// The interface is gone when placement gives the address here, and back a moment later: the add
// is tried again until it works, and the address that was never added is never "released".
TEST_F(VipServiceTest, AFailedAddIsRetriedUntilItWorks) {
  const std::string released = scratch_ + "/released";
  ASSERT_NO_FATAL_FAILURE(open("on_release = \"sh -c 'echo released >> " + released + "'\"\n"));
  ASSERT_TRUE(netns_->ip({"link", "del", "v0"}));
  run_alone();
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(held_here());
  ASSERT_TRUE(netns_->add_veth_pair("198.18.78.1/24"));
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }, 10s));
  EXPECT_TRUE(testing::wait_until([this] { return held_here(); }));
  std::this_thread::sleep_for(300ms);  // a hook would have run by now
  EXPECT_EQ(read_file(released), "");
}

// The kernel refuses the delete when placement takes the address away (here: the service's thread
// lacks CAP_NET_ADMIN for a while). The address would stay on this host while another takes it;
// the delete is tried again until it works.
TEST_F(VipServiceTest, AFailedDeleteIsRetriedUntilItWorks) {
  const std::string failing = scratch_ + "/unhealthy";
  ASSERT_NO_FATAL_FAILURE(open(health_unless(failing)));
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  ASSERT_TRUE(call([] { return set_net_admin(false); }));
  std::ofstream(failing).put('\n');  // the health check fails: the address is released
  EXPECT_TRUE(testing::wait_until([this] { return !held_here(); }));
  EXPECT_TRUE(testing::wait_until([this] {
    return why().find("delete failed") != std::string::npos;
  })) << why();
  EXPECT_TRUE(floating_on_v0());
  ASSERT_TRUE(call([] { return set_net_admin(true); }));
  EXPECT_TRUE(testing::wait_until([this] { return !floating_on_v0(); }, 5s));
  EXPECT_FALSE(held_here());
}

// A hook gets the standard streams and no other descriptor of the agent's, not even a socket Asio
// opened without close-on-exec.
TEST_F(VipServiceTest, HooksInheritOnlyTheStandardStreams) {
  asio::ip::udp::socket leaky(io_, asio::ip::udp::v4());  // as the agent's ring socket is
  ASSERT_EQ(::fcntl(leaky.native_handle(), F_GETFD) & FD_CLOEXEC, 0);
  const std::string listing = scratch_ + "/fds";
  ASSERT_NO_FATAL_FAILURE(
      open("on_acquire = \"sh -c 'exec ls -l /proc/self/fd > " + listing + "'\"\n"));
  run_alone();
  ASSERT_TRUE(testing::wait_until([&] { return !read_file(listing).empty(); }));
  // "lrwx------ 1 root root 64 Jan 1 00:00 3 -> socket:[123]", one line per descriptor.
  std::istringstream lines(read_file(listing));
  std::vector<std::string> descriptors;
  for (std::string line; std::getline(lines, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    const std::string target = line.substr(arrow + 4);
    if (target.starts_with("/proc/")) continue;  // the directory ls itself is reading
    const auto space = line.rfind(' ', arrow - 1);
    descriptors.push_back(line.substr(space + 1, arrow - space - 1) + " -> " + target);
  }
  ASSERT_EQ(descriptors.size(), 3u) << ::testing::PrintToString(descriptors);
  EXPECT_TRUE(descriptors[0].starts_with("0 -> ")) << descriptors[0];
  EXPECT_TRUE(descriptors[1].starts_with("1 -> ")) << descriptors[1];
  EXPECT_TRUE(descriptors[2].starts_with("2 -> ")) << descriptors[2];
}

// An address deleted behind keel's back (`ip addr del`, a flush, an IPv6 link flap, the IPv4
// primary going) while keel holds it is found missing and added again.
TEST_F(VipServiceTest, AHeldAddressDeletedByHandComesBack) {
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return floating_on_v0(); }));
  ASSERT_TRUE(netns_->ip({"addr", "del", kFloating, "dev", "v0"}));
  ASSERT_FALSE(floating_on_v0());
  EXPECT_TRUE(testing::wait_until([this] { return floating_on_v0(); }, 5s));
  EXPECT_TRUE(held_here());
}

// An address someone else configured (without keel's mark) is used when placement gives it here,
// but never deleted: not when placement takes it away, not at shutdown.
TEST_F(VipServiceTest, AnAddressThatIsNotKeelsIsNeverDeleted) {
  if (!io::kernel_release_at_least(kernel_release(), 6, 1)) {
    GTEST_SKIP() << "this kernel does not keep keel's mark: nothing can be told apart";
  }
  ASSERT_TRUE(netns_->ip({"addr", "add", kFloating, "dev", "v0"}));
  ASSERT_NO_FATAL_FAILURE(open());
  run_alone();
  ASSERT_TRUE(testing::wait_until([this] { return held_here(); }));
  call([this] {
    service_->stop();
    return 0;
  });
  EXPECT_TRUE(floating_on_v0());
}

}  // namespace
}  // namespace keel::agent::vip_service_testing
