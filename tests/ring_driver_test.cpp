// RingDriver on one io_context: two drivers joined by an in-memory network that hands what each
// flush sent to the other side in a later handler, as a socket would.
#include "agent/ring_driver.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "agent_test_support.hpp"

namespace keel::agent {
namespace {

struct Packet {
  NodeId to = kNoNode;
  Bytes bytes;
};

// One node: its driver, its outbox, and what it did, in order, in a log shared by both nodes.
class Node : public RingEvents {
 public:
  Node(asio::io_context& io, NodeId self, std::vector<std::string>& log)
      : self_(self), log_(log), io_(io) {}

  void start(Node& peer) {
    peer_ = &peer;
    driver_ = std::make_unique<RingDriver>(
        io_, RingDriverOptions{self_, {1, 2}, ring::RingTunables{}, 0},
        [this](NodeId to, std::span<const std::uint8_t> bytes) {
          outbox_.push_back(Packet{to, Bytes(bytes.begin(), bytes.end())});
        },
        [this] { flush(); }, *this);
    driver_->start();
  }

  RingDriver& driver() { return *driver_; }
  bool in_group = false;
  int delivered = 0;

  void on_view(const ring::View&) override {}
  void on_group_view(const ring::GroupView& view) override { in_group = view.members.size() == 2; }
  void on_group_message(const ring::GroupMessage& message, const ring::DeliveredMessage&) override {
    ++delivered;
    log_.push_back(name() + " delivers " +
                   std::string(message.payload.begin(), message.payload.end()));
  }

 private:
  std::string name() const { return "n" + std::to_string(self_); }

  void flush() {
    if (outbox_.empty()) return;
    log_.push_back(name() + " sends " + std::to_string(outbox_.size()));
    asio::post(io_, [peer = peer_, from = self_, batch = std::move(outbox_)] {
      for (const Packet& packet : batch) peer->driver_->on_packet(from, packet.bytes);
    });
    outbox_.clear();
  }

  NodeId self_;
  std::vector<std::string>& log_;
  asio::io_context& io_;
  Node* peer_ = nullptr;
  std::unique_ptr<RingDriver> driver_;
  std::vector<Packet> outbox_;
};

// The visit that broadcasts a message delivers it to this host's own application too: the
// packets (the message, the token) are flushed first, so the other host does not wait for that.
TEST(RingDriver, AVisitSendsItsPacketsBeforeItsOwnDeliveries) {
  asio::io_context io;
  std::vector<std::string> log;
  Node one(io, 1, log), two(io, 2, log);
  one.start(two);
  two.start(one);
  ASSERT_TRUE(one.driver().join("g").ok());
  ASSERT_TRUE(two.driver().join("g").ok());
  ASSERT_TRUE(testing::run_io_until(io, [&] { return one.in_group && two.in_group; }));

  log.clear();
  ASSERT_TRUE(one.driver().send("g", Bytes{'m'}, false).ok());
  ASSERT_TRUE(testing::run_io_until(io, [&] { return one.delivered == 1 && two.delivered == 1; }));

  std::vector<std::string> one_side;
  std::copy_if(log.begin(), log.end(), std::back_inserter(one_side),
               [](const std::string& line) { return line.rfind("n1 ", 0) == 0; });
  const auto delivered = std::find(one_side.begin(), one_side.end(), "n1 delivers m");
  ASSERT_NE(delivered, one_side.end());
  ASSERT_NE(delivered, one_side.begin()) << ::testing::PrintToString(one_side);
  // The flush just before it carried the message and the token: two packets.
  EXPECT_EQ(*(delivered - 1), "n1 sends 2") << ::testing::PrintToString(one_side);
}

// A join that cannot be queued is undone, but only if it was new: the agent's own membership of
// keel.vip must survive a listener's `keel ring listen keel.vip` arriving while the queue is full.
TEST(RingDriver, AFailedJoinUndoesOnlyAMembershipItAdded) {
  asio::io_context io;
  ring::RingTunables tunables;
  tunables.max_send_queue_messages = 2;
  struct Ignore : RingEvents {
    void on_view(const ring::View&) override {}
    void on_group_view(const ring::GroupView&) override {}
    void on_group_message(const ring::GroupMessage&, const ring::DeliveredMessage&) override {}
  } events;
  // The other node never answers: the ring stays out of operation and its queue never drains.
  RingDriver driver(
      io, RingDriverOptions{1, {1, 2}, tunables, 0}, [](NodeId, std::span<const std::uint8_t>) {},
      [] {}, events);
  driver.start();
  ASSERT_TRUE(driver.join("keel.vip").ok());
  ASSERT_TRUE(driver.send("keel.vip", Bytes{'m'}, false).ok());  // the queue is now full

  EXPECT_FALSE(driver.join("keel.vip").ok());
  EXPECT_TRUE(driver.member_of("keel.vip"));
  EXPECT_EQ(driver.joined_groups().count("keel.vip"), 1u);

  EXPECT_FALSE(driver.join("other").ok());
  EXPECT_FALSE(driver.member_of("other"));
  EXPECT_EQ(driver.joined_groups().count("other"), 0u);
}

}  // namespace
}  // namespace keel::agent
