// plan_runs (src/io/datagram_runs.hpp): how a batch of datagrams is ordered and cut into runs the
// kernel segments.
#include "io/datagram_runs.hpp"

#include <gtest/gtest.h>

#include <string>

namespace keel::io {
namespace {

const int kB = 0, kC = 0, kD = 0;  // destinations are compared by address only

// The plan as text: one run per group, "destination:bytes" per datagram, e.g. "[B1400 B1400]".
std::string describe(const std::vector<QueuedDatagram>& batch, const DatagramPlan& plan) {
  std::string text;
  for (const DatagramRun& run : plan.runs) {
    text += "[";
    for (std::size_t i = run.first; i < run.first + run.count; ++i) {
      const QueuedDatagram& datagram = batch[plan.order[i]];
      const char name = datagram.destination == &kB ? 'B' : datagram.destination == &kC ? 'C' : 'D';
      text += (i == run.first ? "" : " ") + std::string(1, name) + std::to_string(datagram.bytes);
    }
    text += "]";
  }
  return text;
}

// Checks what every plan must be: a permutation of the batch, runs covering it in order, each
// run to one destination with its segment length that of its first datagram and no longer one.
void expect_well_formed(const std::vector<QueuedDatagram>& batch, const DatagramPlan& plan) {
  ASSERT_EQ(plan.order.size(), batch.size());
  std::vector<bool> seen(batch.size(), false);
  for (std::size_t index : plan.order) {
    ASSERT_LT(index, batch.size());
    EXPECT_FALSE(seen[index]);
    seen[index] = true;
  }
  std::size_t next = 0;
  for (const DatagramRun& run : plan.runs) {
    EXPECT_EQ(run.first, next);
    ASSERT_GE(run.count, 1u);
    EXPECT_LE(run.count, kMaxRunDatagrams);
    std::size_t bytes = 0;
    for (std::size_t i = run.first; i < run.first + run.count; ++i) {
      const QueuedDatagram& datagram = batch[plan.order[i]];
      EXPECT_EQ(datagram.destination, batch[plan.order[run.first]].destination);
      if (i + 1 < run.first + run.count) {
        EXPECT_EQ(datagram.bytes, run.segment_bytes);
      } else {
        EXPECT_LE(datagram.bytes, run.segment_bytes);
      }
      bytes += datagram.bytes;
    }
    EXPECT_LE(bytes, kMaxRunBytes);
    next += run.count;
  }
  EXPECT_EQ(next, batch.size());
}

TEST(DatagramRuns, WithoutSegmentationEveryDatagramGoesAloneInTheQueuedOrder) {
  const std::vector<QueuedDatagram> batch{{&kB, 1400}, {&kC, 1400}, {&kB, 1400}, {&kB, 60}};
  const DatagramPlan plan = plan_runs(batch, false);
  expect_well_formed(batch, plan);
  EXPECT_EQ(describe(batch, plan), "[B1400][C1400][B1400][B60]");
}

TEST(DatagramRuns, AMessageToEveryNodeThenTheTokenMakesOneRunPerDestination) {
  // A token visit in unicast mode: an 8 KiB message's six chunks to C and B in turn, then the
  // token to B (the successor). C, whose last datagram comes first, goes first.
  std::vector<QueuedDatagram> batch;
  for (int chunk = 0; chunk < 6; ++chunk) {
    const std::size_t bytes = chunk < 5 ? 1400 : 1000;
    batch.push_back({&kC, bytes});
    batch.push_back({&kB, bytes});
  }
  batch.push_back({&kB, 90});
  const DatagramPlan plan = plan_runs(batch, true);
  expect_well_formed(batch, plan);
  EXPECT_EQ(describe(batch, plan),
            "[C1400 C1400 C1400 C1400 C1400 C1000]"
            "[B1400 B1400 B1400 B1400 B1400 B1000][B90]");
}

TEST(DatagramRuns, AShorterDatagramEndsItsRunAndALongerOneStartsANewOne) {
  const std::vector<QueuedDatagram> batch{{&kB, 1000}, {&kB, 1400}, {&kB, 1400},
                                          {&kB, 1400}, {&kB, 700},  {&kB, 700}};
  const DatagramPlan plan = plan_runs(batch, true);
  expect_well_formed(batch, plan);
  EXPECT_EQ(describe(batch, plan), "[B1000][B1400 B1400 B1400 B700][B700]");
}

TEST(DatagramRuns, RunsStopAtTheKernelsLimits) {
  std::vector<QueuedDatagram> many(kMaxRunDatagrams + 3, QueuedDatagram{&kD, 100});
  DatagramPlan plan = plan_runs(many, true);
  expect_well_formed(many, plan);
  ASSERT_EQ(plan.runs.size(), 2u);
  EXPECT_EQ(plan.runs[0].count, kMaxRunDatagrams);
  EXPECT_EQ(plan.runs[1].count, 3u);

  std::vector<QueuedDatagram> large(60, QueuedDatagram{&kD, 9000});  // jumbo frames
  plan_runs(large, true, plan);  // into the plan of the batch before, as a sender does
  expect_well_formed(large, plan);
  EXPECT_EQ(plan.runs[0].count, kMaxRunBytes / 9000);
  EXPECT_EQ(plan.runs.size(), (60 + kMaxRunBytes / 9000 - 1) / (kMaxRunBytes / 9000));
}

TEST(DatagramRuns, EachDestinationKeepsItsOwnOrder) {
  const std::vector<QueuedDatagram> batch{{&kB, 10}, {&kC, 20}, {&kD, 30}, {&kB, 11},
                                          {&kC, 21}, {&kB, 12}, {&kD, 31}};
  const DatagramPlan plan = plan_runs(batch, true);
  expect_well_formed(batch, plan);
  // Last datagrams: C's at 4, B's at 5, D's at 6.
  EXPECT_EQ(describe(batch, plan), "[C20][C21][B10][B11][B12][D30][D31]");
}

}  // namespace
}  // namespace keel::io
