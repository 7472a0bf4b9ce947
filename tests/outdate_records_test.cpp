// OutdateRecords (src/core/volume/outdate_records.hpp): when a primary's record of its peer's copy
// being outdated counts, as the ring delivers the messages of the keel.volume group.
#include "core/volume/outdate_records.hpp"

#include <gtest/gtest.h>

namespace keel::volume {
namespace {

constexpr NodeId kPrimary = 1;
constexpr NodeId kSecondary = 2;
constexpr NodeId kWitness = 3;
constexpr Generation kGeneration = 0x1234;

// The primary's agent, in a cluster of the two copies and a witness.
OutdateRecords primary_in_view(const std::vector<NodeId>& members) {
  OutdateRecords records(kPrimary, 3);
  records.on_regular_view(members);
  return records;
}

OutdateRecords::Delivered deliver(OutdateRecords& records, NodeId origin, const keel::Bytes& m) {
  return records.on_message(origin, {m.data(), m.size()});
}

const keel::Bytes kRecord =
    OutdateRecords::record_message({"data", kSecondary, kGeneration, kPrimary});

TEST(OutdateRecordsTest, ARecordCountsInAMajorityWithoutTheOutdatedNode) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  const auto delivered = deliver(records, kPrimary, kRecord);
  ASSERT_EQ(delivered.recorded_mine.size(), 1u);
  EXPECT_EQ(delivered.recorded_mine[0].generation, kGeneration);

  // With the outdated node in the view too, the others are still a majority.
  OutdateRecords all = primary_in_view({kPrimary, kSecondary, kWitness});
  EXPECT_EQ(deliver(all, kPrimary, kRecord).recorded_mine.size(), 1u);
}

TEST(OutdateRecordsTest, ARecordThatNeedsTheOutdatedNodeWaitsForItsDisk) {
  // The two copies alone: a majority only with the node the record is about, whose agent could
  // lose it before marking its copy.
  OutdateRecords records = primary_in_view({kPrimary, kSecondary});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());

  // Only the outdated node's own word about the same generation counts.
  const keel::Bytes durable = OutdateRecords::durable_message("data", kSecondary, kGeneration);
  EXPECT_TRUE(deliver(records, kWitness, durable).recorded_mine.empty()) << "not from the node";
  const keel::Bytes older = OutdateRecords::durable_message("data", kSecondary, kGeneration - 1);
  EXPECT_TRUE(deliver(records, kSecondary, older).recorded_mine.empty()) << "another generation";

  const auto delivered = deliver(records, kSecondary, durable);
  ASSERT_EQ(delivered.recorded_mine.size(), 1u);
  EXPECT_EQ(delivered.recorded_mine[0].node, kSecondary);
  EXPECT_EQ(delivered.recorded_mine[0].generation, kGeneration);
  EXPECT_TRUE(deliver(records, kSecondary, durable).recorded_mine.empty()) << "counted twice";
}

TEST(OutdateRecordsTest, AWaitingRecordCountsWhenRepeatedInALargerMajority) {
  OutdateRecords records = primary_in_view({kPrimary, kSecondary});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());
  // The witness joins; after the view every member repeats what it knows.
  const keel::Bytes repeated = records.on_regular_view({kPrimary, kSecondary, kWitness});
  EXPECT_EQ(deliver(records, kPrimary, repeated).recorded_mine.size(), 1u);
  // The wait is over: a late Durable message does not count the record again.
  const keel::Bytes durable = OutdateRecords::durable_message("data", kSecondary, kGeneration);
  EXPECT_TRUE(deliver(records, kSecondary, durable).recorded_mine.empty());
}

TEST(OutdateRecordsTest, AClearEndsTheWait) {
  OutdateRecords records = primary_in_view({kPrimary, kSecondary});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());
  deliver(records, kPrimary, OutdateRecords::clear_message("data", kSecondary, kGeneration));
  const keel::Bytes durable = OutdateRecords::durable_message("data", kSecondary, kGeneration);
  EXPECT_TRUE(deliver(records, kSecondary, durable).recorded_mine.empty());
}

TEST(OutdateRecordsTest, TheOutdatedNodeHearsOfItWhateverTheView) {
  OutdateRecords secondary(kSecondary, 3);
  secondary.on_regular_view({kPrimary, kSecondary});
  const auto delivered = deliver(secondary, kPrimary, kRecord);
  ASSERT_EQ(delivered.about_me.size(), 1u);
  EXPECT_EQ(delivered.about_me[0].generation, kGeneration);
  EXPECT_TRUE(delivered.recorded_mine.empty());
}

// A record read back from the witness's state file: repeated after the next regular view, so
// that the outdated node learns it; one known already is not replaced.
TEST(OutdateRecordsTest, ARestoredRecordIsRepeatedAfterTheNextView) {
  OutdateRecords witness(kWitness, 3);
  witness.restore({"data", kSecondary, kGeneration, kPrimary});
  witness.restore({"data", kSecondary, kGeneration + 1, kPrimary});
  ASSERT_TRUE(witness.find("data", kSecondary).has_value());
  EXPECT_EQ(witness.find("data", kSecondary)->generation, kGeneration);

  const keel::Bytes announced = witness.on_regular_view({kSecondary, kWitness});
  ASSERT_FALSE(announced.empty());
  OutdateRecords secondary(kSecondary, 3);
  secondary.on_regular_view({kSecondary, kWitness});
  const auto delivered = deliver(secondary, kWitness, announced);
  ASSERT_EQ(delivered.about_me.size(), 1u);
  EXPECT_EQ(delivered.about_me[0].generation, kGeneration);
}

}  // namespace
}  // namespace keel::volume
