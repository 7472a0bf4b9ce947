// OutdateRecords (src/core/volume/outdate_records.hpp): when a primary's record of its peer's copy
// being outdated counts, as the ring delivers the messages of the keel.volume group and the agents
// say they have written it down.
#include "core/volume/outdate_records.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace keel::volume {
namespace {

constexpr NodeId kPrimary = 1;
constexpr NodeId kSecondary = 2;
constexpr NodeId kWitness = 3;
constexpr Generation kGeneration = 0x1234;
constexpr RingId kView{5, kPrimary};

// The primary's agent, in a cluster of the two copies and a witness.
OutdateRecords primary_in_view(const std::vector<NodeId>& members) {
  OutdateRecords records(kPrimary, 3);
  records.on_regular_view(kView, members);
  return records;
}

OutdateRecords::Delivered deliver(OutdateRecords& records, NodeId origin, const keel::Bytes& m) {
  return records.on_message(origin, {m.data(), m.size()});
}

// The Records message of a repeat after a view (these agents hold fewer records than one message
// carries), without the end marker that follows it.
keel::Bytes records_of(const std::vector<keel::Bytes>& repeat) {
  EXPECT_EQ(repeat.size(), 2u) << "one Records message, then the end marker";
  return repeat.empty() ? keel::Bytes{} : repeat.front();
}

// Delivers a whole repeat (its Records messages and end marker); what the Records messages gave.
OutdateRecords::Delivered deliver_repeat(OutdateRecords& records, NodeId origin,
                                         const std::vector<keel::Bytes>& repeat) {
  OutdateRecords::Delivered all;
  for (const keel::Bytes& message : repeat) {
    auto delivered = deliver(records, origin, message);
    all.about_me.insert(all.about_me.end(), delivered.about_me.begin(), delivered.about_me.end());
    all.to_store.insert(all.to_store.end(), delivered.to_store.begin(), delivered.to_store.end());
  }
  return all;
}

const keel::Bytes kRecord =
    OutdateRecords::record_message({"data", kSecondary, kGeneration, kPrimary});

// What an agent sends once `record` is on its disk.
keel::Bytes stored(NodeId by, const keel::Bytes& record_message, OutdateRecords& agent) {
  const auto delivered = deliver(agent, kPrimary, record_message);
  EXPECT_EQ(delivered.to_store.size(), 1u) << "node " << by << " is not asked to store it";
  return delivered.to_store.empty() ? keel::Bytes{}
                                    : OutdateRecords::stored_message(delivered.to_store[0]);
}

TEST(OutdateRecordsTest, ARecordCountsOnceAMajorityWithoutTheOutdatedNodeHasItOnDisk) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  const auto delivered = deliver(records, kPrimary, kRecord);
  EXPECT_TRUE(delivered.recorded_mine.empty()) << "counted before anyone wrote it down";
  ASSERT_EQ(delivered.to_store.size(), 1u);
  const keel::Bytes mine = OutdateRecords::stored_message(delivered.to_store[0]);

  OutdateRecords witness(kWitness, 3);
  witness.on_regular_view(kView, {kPrimary, kWitness});
  const keel::Bytes witness_stored = stored(kWitness, kRecord, witness);

  EXPECT_TRUE(deliver(records, kPrimary, mine).recorded_mine.empty()) << "one of three";
  // The outdated node's word that it holds the record counts for nothing.
  EXPECT_TRUE(deliver(records, kSecondary, witness_stored).recorded_mine.empty());
  const auto counted = deliver(records, kWitness, witness_stored);
  ASSERT_EQ(counted.recorded_mine.size(), 1u);
  EXPECT_EQ(counted.recorded_mine[0].generation, kGeneration);
  EXPECT_TRUE(deliver(records, kWitness, witness_stored).recorded_mine.empty()) << "twice";

  // A repeat after a view change counts again at once.
  const keel::Bytes repeated =
      records_of(records.on_regular_view(kView, {kPrimary, kSecondary, kWitness}));
  EXPECT_EQ(deliver(records, kPrimary, repeated).recorded_mine.size(), 1u);
}

TEST(OutdateRecordsTest, AStoredMessageCountsOnlyForItsRecorderAndGeneration) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  deliver(records, kPrimary, kRecord);
  deliver(records, kPrimary,
          OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary}));
  const keel::Bytes other_recorder =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kWitness});
  EXPECT_TRUE(deliver(records, kWitness, other_recorder).recorded_mine.empty());
  const keel::Bytes older =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration - 1, kPrimary});
  EXPECT_TRUE(deliver(records, kWitness, older).recorded_mine.empty());
  const keel::Bytes right =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary});
  EXPECT_EQ(deliver(records, kWitness, right).recorded_mine.size(), 1u);
}

// One Stored message answers a whole delivery: every record in it that is this node's counts.
TEST(OutdateRecordsTest, OneStoredMessageCarriesEveryRecordOfADelivery) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  const OutdateRecord uploads{"uploads", kSecondary, kGeneration + 1, kPrimary};
  const OutdateRecord someone_elses{"logs", kSecondary, kGeneration, kWitness};
  deliver(records, kPrimary, kRecord);
  deliver(records, kPrimary, OutdateRecords::record_message(uploads));
  const std::vector<OutdateRecord> batch{
      {"data", kSecondary, kGeneration, kPrimary}, uploads, someone_elses};
  const keel::Bytes stored_all = OutdateRecords::stored_message(batch);
  EXPECT_TRUE(deliver(records, kPrimary, stored_all).recorded_mine.empty());
  const auto counted = deliver(records, kWitness, stored_all);
  ASSERT_EQ(counted.recorded_mine.size(), 2u);
  EXPECT_EQ(counted.recorded_mine[0].volume, "data");
  EXPECT_EQ(counted.recorded_mine[1].volume, "uploads");
}

TEST(OutdateRecordsTest, ARecordDeliveredWithoutAMajorityWaitsForTheRepeat) {
  OutdateRecords records(kPrimary, 3);
  records.on_regular_view(kView, {kPrimary});
  deliver(records, kPrimary, kRecord);
  const keel::Bytes witness_stored =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary});
  deliver(records, kPrimary, witness_stored);
  EXPECT_TRUE(deliver(records, kWitness, witness_stored).recorded_mine.empty());
}

TEST(OutdateRecordsTest, ARecordThatNeedsTheOutdatedNodeWaitsForItsDisk) {
  // The two copies alone: no majority without the node the record is about, whose agent could
  // lose it before marking its copy.
  OutdateRecords records = primary_in_view({kPrimary, kSecondary});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());
  const keel::Bytes mine =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary});
  EXPECT_TRUE(deliver(records, kPrimary, mine).recorded_mine.empty());
  EXPECT_TRUE(deliver(records, kSecondary, mine).recorded_mine.empty());

  // Only the outdated node's own word about its disk, for the same generation, counts.
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

TEST(OutdateRecordsTest, AWaitingRecordCountsWhenAWitnessStoresItLater) {
  OutdateRecords records = primary_in_view({kPrimary, kSecondary});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());
  const keel::Bytes mine =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary});
  deliver(records, kPrimary, mine);
  // The witness joins; after the view every member repeats what it knows, and stores it.
  const keel::Bytes repeated =
      records_of(records.on_regular_view(kView, {kPrimary, kSecondary, kWitness}));
  EXPECT_TRUE(deliver(records, kPrimary, repeated).recorded_mine.empty());
  EXPECT_EQ(deliver(records, kWitness, mine).recorded_mine.size(), 1u);
  // The wait is over: a late Durable message does not count the record again.
  const keel::Bytes durable = OutdateRecords::durable_message("data", kSecondary, kGeneration);
  EXPECT_TRUE(deliver(records, kSecondary, durable).recorded_mine.empty());
}

TEST(OutdateRecordsTest, AClearEndsTheWait) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  EXPECT_TRUE(deliver(records, kPrimary, kRecord).recorded_mine.empty());
  deliver(records, kPrimary, OutdateRecords::clear_message("data", kSecondary, kGeneration));
  const keel::Bytes durable = OutdateRecords::durable_message("data", kSecondary, kGeneration);
  EXPECT_TRUE(deliver(records, kSecondary, durable).recorded_mine.empty());
  const keel::Bytes stored_by =
      OutdateRecords::stored_message({"data", kSecondary, kGeneration, kPrimary});
  deliver(records, kPrimary, stored_by);
  EXPECT_TRUE(deliver(records, kWitness, stored_by).recorded_mine.empty());
}

TEST(OutdateRecordsTest, TheOutdatedNodeHearsOfItWhateverTheView) {
  OutdateRecords secondary(kSecondary, 3);
  secondary.on_regular_view(kView, {kPrimary, kSecondary});
  const auto delivered = deliver(secondary, kPrimary, kRecord);
  ASSERT_EQ(delivered.about_me.size(), 1u);
  EXPECT_EQ(delivered.about_me[0].generation, kGeneration);
  EXPECT_TRUE(delivered.recorded_mine.empty());
}

// Records read back from the witness's state file: repeated after the next regular view, so
// that the outdated node learns them; each generation is kept.
TEST(OutdateRecordsTest, ARestoredRecordIsRepeatedAfterTheNextView) {
  OutdateRecords witness(kWitness, 3);
  witness.restore({"data", kSecondary, kGeneration, kPrimary});
  witness.restore({"data", kSecondary, kGeneration + 1, kPrimary});
  ASSERT_EQ(witness.about("data", kSecondary).size(), 2u) << "one per generation";

  const keel::Bytes announced = records_of(witness.on_regular_view(kView, {kSecondary, kWitness}));
  ASSERT_FALSE(announced.empty());
  OutdateRecords secondary(kSecondary, 3);
  secondary.on_regular_view(kView, {kSecondary, kWitness});
  const auto delivered = deliver(secondary, kWitness, announced);
  ASSERT_EQ(delivered.about_me.size(), 2u);
  EXPECT_EQ(delivered.about_me[0].generation, kGeneration);
}

// What `node` repeats after a regular view when it holds `records`.
keel::Bytes repeat_by(NodeId node, const std::vector<OutdateRecord>& records) {
  OutdateRecords agent(node, 3);
  for (const OutdateRecord& record : records) agent.restore(record);
  return records_of(agent.on_regular_view(kView, {kPrimary, kSecondary, kWitness}));
}

constexpr Generation kNewer = 0x9999;
const OutdateRecord kOld{"data", kSecondary, kGeneration, kPrimary};
const OutdateRecord kNew{"data", kSecondary, kNewer, kPrimary};

// Generations are random: a record repeated by an agent that missed its withdrawal (an older
// generation) must not replace a newer one, nor reset the count of the newer one's
// acknowledgements.
TEST(OutdateRecordsTest, AnOlderGenerationRepeatedReplacesNothing) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  deliver(records, kPrimary, OutdateRecords::record_message(kNew));
  const keel::Bytes stored_newer = OutdateRecords::stored_message(kNew);
  deliver(records, kPrimary, stored_newer);
  // The witness, back from a power loss, repeats the old generation it had on disk, and the
  // primary's own repeat after the next view carries both.
  deliver(records, kWitness, repeat_by(kWitness, {kOld}));
  EXPECT_EQ(records.about("data", kSecondary).size(), 2u);
  EXPECT_TRUE(deliver(records, kPrimary, repeat_by(kPrimary, {kOld, kNew})).recorded_mine.empty());
  const auto counted = deliver(records, kWitness, stored_newer);
  ASSERT_EQ(counted.recorded_mine.size(), 1u);
  EXPECT_EQ(counted.recorded_mine[0].generation, kNewer);
}

// Only the recorder retires its records: its new record supersedes its older ones about that
// copy, and its withdrawal (the copy is up to date again) removes them all.
TEST(OutdateRecordsTest, TheRecorderRetiresItsOlderRecordsAndAWithdrawalRemovesAll) {
  OutdateRecords secondary(kSecondary, 3);
  secondary.on_regular_view(kView, {kSecondary, kWitness});
  const OutdateRecord others{"data", kSecondary, 0x5555, kWitness};
  deliver(secondary, kWitness, repeat_by(kWitness, {kOld, others}));
  ASSERT_EQ(secondary.about("data", kSecondary).size(), 2u);

  // Sent by anyone but its recorder, a new record is ignored.
  deliver(secondary, kWitness, OutdateRecords::record_message(kNew));
  EXPECT_EQ(secondary.about("data", kSecondary).size(), 2u);

  const auto fresh = deliver(secondary, kPrimary, OutdateRecords::record_message(kNew));
  ASSERT_EQ(fresh.about_me.size(), 1u);
  auto left = secondary.about("data", kSecondary);
  ASSERT_EQ(left.size(), 2u) << "the primary's older record superseded, the witness's kept";
  EXPECT_TRUE(std::any_of(left.begin(), left.end(),
                          [](const OutdateRecord& r) { return r.generation == kNewer; }));
  EXPECT_TRUE(std::none_of(left.begin(), left.end(),
                           [](const OutdateRecord& r) { return r.generation == kGeneration; }));

  deliver(secondary, kWitness, repeat_by(kWitness, {kOld}));  // a stale repeat comes back
  deliver(secondary, kPrimary, OutdateRecords::clear_message("data", kSecondary, kNewer));
  left = secondary.about("data", kSecondary);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].recorder, kWitness);
}

// A withdrawal reaches only its partition: the recorder hears of its records when they come back
// (and of all of them in its own repeat after a view) so that its replica can say again what holds.
TEST(OutdateRecordsTest, TheRecorderHearsOfItsRecordsRepeatedAfterItDroppedThem) {
  OutdateRecords records = primary_in_view({kPrimary, kWitness});
  deliver(records, kPrimary, OutdateRecords::record_message(kOld));
  deliver(records, kPrimary, OutdateRecords::clear_message("data", kSecondary, kGeneration));
  ASSERT_TRUE(records.about("data", kSecondary).empty());

  const auto back = deliver(records, kWitness, repeat_by(kWitness, {kOld}));
  ASSERT_EQ(back.repeated_mine.size(), 1u);
  EXPECT_EQ(back.repeated_mine[0].generation, kGeneration);
  // A second agent repeating it in the same view: already known again, one answer is enough.
  EXPECT_TRUE(deliver(records, kSecondary, repeat_by(kSecondary, {kOld})).repeated_mine.empty());
  // The recorder's own repeat names every record it holds; a witness's records are not its own.
  const OutdateRecord witness_record{"data", kSecondary, 0x5555, kWitness};
  deliver(records, kWitness, repeat_by(kWitness, {witness_record}));
  const auto own =
      deliver(records, kPrimary, records_of(records.on_regular_view(kView, {kPrimary, kWitness})));
  ASSERT_EQ(own.repeated_mine.size(), 1u);
  EXPECT_EQ(own.repeated_mine[0], kOld);
}

// A node that has just joined a majority knows nothing of the records the others hold; were it
// quorate at once, its copy could be promoted over a record that outdates it.
TEST(OutdateRecordsTest, AJoinedMajorityIsQuorateOnlyOnceEveryMembersRepeatHasArrived) {
  OutdateRecords witness(kWitness, 3);
  witness.on_regular_view(kView, {kPrimary, kWitness});
  deliver(witness, kPrimary, kRecord);

  constexpr RingId kJoined{6, kSecondary};
  OutdateRecords secondary(kSecondary, 3);
  const auto own = secondary.on_regular_view(kJoined, {kSecondary, kWitness});
  const auto from_witness = witness.on_regular_view(kJoined, {kSecondary, kWitness});
  ASSERT_EQ(own.size(), 2u) << "even knowing nothing: an empty Records message and the end";
  EXPECT_FALSE(secondary.quorate()) << "nothing heard in the new view";
  EXPECT_TRUE(deliver_repeat(secondary, kSecondary, own).about_me.empty());
  EXPECT_FALSE(secondary.quorate()) << "the witness's records have not arrived";
  ASSERT_EQ(from_witness.size(), 2u);
  const auto told = deliver(secondary, kWitness, from_witness[0]);
  EXPECT_FALSE(secondary.quorate()) << "before the witness's end marker";
  deliver(secondary, kWitness, from_witness[1]);
  EXPECT_TRUE(secondary.quorate());
  ASSERT_EQ(told.about_me.size(), 1u);
  EXPECT_EQ(told.about_me[0].generation, kGeneration);

  secondary.on_transitional_view();
  EXPECT_FALSE(secondary.quorate());
}

// A repeat composed for an earlier view and delivered late lacks what its sender learned since.
TEST(OutdateRecordsTest, ARepeatForAnEarlierViewDoesNotCount) {
  OutdateRecords witness(kWitness, 3);
  const auto stale = witness.on_regular_view(kView, {kPrimary, kWitness});
  deliver(witness, kPrimary, kRecord);  // learned after that repeat was composed

  constexpr RingId kJoined{6, kSecondary};
  OutdateRecords secondary(kSecondary, 3);
  deliver_repeat(secondary, kSecondary, secondary.on_regular_view(kJoined, {kSecondary, kWitness}));
  deliver_repeat(secondary, kWitness, stale);
  EXPECT_FALSE(secondary.quorate());
  EXPECT_TRUE(secondary.about("data", kSecondary).empty());

  deliver_repeat(secondary, kWitness, witness.on_regular_view(kJoined, {kSecondary, kWitness}));
  EXPECT_TRUE(secondary.quorate());
  EXPECT_EQ(secondary.about("data", kSecondary).size(), 1u);
}

TEST(OutdateRecordsTest, AViewWithoutAMajorityIsNeverQuorate) {
  constexpr RingId kAlone{6, kSecondary};
  OutdateRecords secondary(kSecondary, 3);
  deliver_repeat(secondary, kSecondary, secondary.on_regular_view(kAlone, {kSecondary}));
  EXPECT_FALSE(secondary.quorate());
}

// More records than one message carries: the repeat takes as many messages as it needs, so that
// every record reaches a node that counts as quorate once the repeat ends.
TEST(OutdateRecordsTest, ARepeatCarriesEveryRecordInAsManyMessagesAsItTakes) {
  OutdateRecords witness(kWitness, 3);
  witness.on_regular_view(kView, {kPrimary, kWitness});
  const std::size_t held = kMaxRecordsPerMessage + 3;
  for (std::size_t i = 0; i < held; ++i) {
    deliver(witness, kPrimary,
            OutdateRecords::record_message(
                {"v" + std::to_string(i), kSecondary, kGeneration, kPrimary}));
  }
  ASSERT_EQ(witness.all().size(), held);
  constexpr RingId kJoined{6, kSecondary};
  const auto repeat = witness.on_regular_view(kJoined, {kSecondary, kWitness});
  ASSERT_EQ(repeat.size(), 3u) << "two Records messages and the end marker";
  OutdateRecords secondary(kSecondary, 3);
  deliver_repeat(secondary, kSecondary, secondary.on_regular_view(kJoined, {kSecondary, kWitness}));
  const auto told = deliver_repeat(secondary, kWitness, repeat);
  EXPECT_EQ(told.about_me.size(), held);
  EXPECT_TRUE(secondary.quorate());
}

// An agent of an earlier release sends no end marker: a view that holds one is never quorate, so
// promotion waits until every node runs this release (docs/operations.md, "Upgrading").
TEST(OutdateRecordsTest, AMemberThatSendsNoEndMarkerKeepsTheViewFromQuorum) {
  constexpr RingId kJoined{6, kSecondary};
  OutdateRecords secondary(kSecondary, 3);
  deliver_repeat(secondary, kSecondary, secondary.on_regular_view(kJoined, {kSecondary, kWitness}));
  const auto from_witness =
      OutdateRecords(kWitness, 3).on_regular_view(kJoined, {kSecondary, kWitness});
  deliver(secondary, kWitness, from_witness.front());  // its Records message only
  EXPECT_FALSE(secondary.quorate());
}

}  // namespace
}  // namespace keel::volume
