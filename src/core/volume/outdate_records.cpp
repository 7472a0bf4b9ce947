#include "core/volume/outdate_records.hpp"

#include <algorithm>
#include <limits>

#include "core/common/assert.hpp"

namespace keel::volume {

namespace {

constexpr std::uint8_t kRecordsType = 1;
constexpr std::uint8_t kClearType = 2;
constexpr std::uint8_t kDiscardType = 3;
constexpr std::uint8_t kDurableType = 4;
constexpr std::uint8_t kStoredType = 5;
constexpr std::uint8_t kFreshType = 6;
// After a node's repeat for a view: its records for that view are all out (added in a later
// release than the others; earlier agents ignore a type they do not know).
constexpr std::uint8_t kRepeatEndType = 7;
constexpr std::size_t kMaxVolumeNameBytes = 64;

void write_record(ByteWriter& out, const OutdateRecord& record) {
  KEEL_ASSERT(record.volume.size() <= kMaxVolumeNameBytes);
  out.u8(static_cast<std::uint8_t>(record.volume.size()));
  out.bytes({reinterpret_cast<const std::uint8_t*>(record.volume.data()), record.volume.size()});
  out.u32(record.node);
  out.u64(record.generation);
  out.u32(record.recorder);
}

std::optional<OutdateRecord> read_record(ByteReader& in) {
  OutdateRecord record;
  const std::size_t length = in.u8();
  if (length == 0 || length > kMaxVolumeNameBytes) return std::nullopt;
  const auto name = in.bytes(length);
  record.volume.assign(reinterpret_cast<const char*>(name.data()), name.size());
  record.node = in.u32();
  record.generation = in.u64();
  record.recorder = in.u32();
  if (!in.ok() || record.node == kNoNode || record.recorder == kNoNode) return std::nullopt;
  return record;
}

// A message of `type` carrying one record's fields.
keel::Bytes one_record_message(std::uint8_t type, const OutdateRecord& record) {
  keel::Bytes out;
  ByteWriter writer(out);
  writer.u8(type);
  write_record(writer, record);
  return out;
}

}  // namespace

OutdateRecords::OutdateRecords(NodeId self, std::size_t configured_nodes)
    : self_(self), configured_nodes_(configured_nodes) {
  KEEL_ASSERT(configured_nodes > 0);
}

std::vector<keel::Bytes> OutdateRecords::on_regular_view(RingId view,
                                                         const std::vector<NodeId>& members) {
  majority_ = members.size() * 2 > configured_nodes_;
  view_ = view;
  unheard_ = std::set<NodeId>(members.begin(), members.end());
  // Records messages in the format every release reads, as many as it takes (even none), then
  // the end marker naming the view.
  std::vector<keel::Bytes> out;
  auto next = records_.begin();
  do {
    keel::Bytes& message = out.emplace_back();
    ByteWriter writer(message);
    writer.u8(kRecordsType);
    const std::size_t count = std::min<std::size_t>(
        static_cast<std::size_t>(std::distance(next, records_.end())), kMaxRecordsPerMessage);
    writer.u16(static_cast<std::uint16_t>(count));
    for (std::size_t i = 0; i < count; ++i, ++next) write_record(writer, next->second);
  } while (next != records_.end());
  keel::Bytes& end = out.emplace_back();
  ByteWriter writer(end);
  writer.u8(kRepeatEndType);
  writer.u64(view.seq);
  writer.u32(view.rep);
  return out;
}

void OutdateRecords::on_transitional_view() {
  majority_ = false;
  view_ = RingId{};
  unheard_.clear();
}

void OutdateRecords::restore(const OutdateRecord& record) {
  records_.try_emplace({record.volume, record.node, record.generation}, record);
}

keel::Bytes OutdateRecords::record_message(const OutdateRecord& record) {
  return one_record_message(kFreshType, record);
}

keel::Bytes OutdateRecords::clear_message(const std::string& volume, NodeId node,
                                          Generation generation) {
  return one_record_message(kClearType, OutdateRecord{volume, node, generation, node});
}

keel::Bytes OutdateRecords::durable_message(const std::string& volume, NodeId node,
                                            Generation generation) {
  return one_record_message(kDurableType, OutdateRecord{volume, node, generation, node});
}

keel::Bytes OutdateRecords::stored_message(std::span<const OutdateRecord> records) {
  KEEL_ASSERT(records.size() <= kMaxRecordsPerMessage);
  keel::Bytes out;
  ByteWriter writer(out);
  writer.u8(kStoredType);
  writer.u16(static_cast<std::uint16_t>(records.size()));
  for (const OutdateRecord& record : records) write_record(writer, record);
  return out;
}

void OutdateRecords::count(Mine& mine, const OutdateRecord& record, Delivered& delivered) {
  if (mine.counted) return;
  mine.counted = true;
  delivered.recorded_mine.push_back(
      OutdateRecord{record.volume, record.node, record.generation, self_});
}

keel::Bytes OutdateRecords::discard_message(const std::string& volume, NodeId node, NodeId asker) {
  return one_record_message(kDiscardType, OutdateRecord{volume, node, 0, asker});
}

OutdateRecords::Delivered OutdateRecords::on_message(NodeId origin,
                                                     std::span<const std::uint8_t> payload) {
  Delivered delivered;
  ByteReader in(payload);
  const std::uint8_t type = in.u8();
  if (type == kDiscardType) {
    const auto request = read_record(in);
    if (request && in.at_end() && request->node == self_) {
      delivered.discard_mine.push_back(request->volume);
    }
    return delivered;
  }
  if (type == kDurableType) {
    // Only the node itself can say what its disk holds.
    const auto said = read_record(in);
    if (!said || !in.at_end() || said->node != origin) return delivered;
    const auto found = mine_.find({said->volume, said->node, said->generation});
    if (found != mine_.end()) count(found->second, *said, delivered);
    return delivered;
  }
  if (type == kStoredType) {
    const std::size_t stored_count = in.u16();
    if (stored_count > kMaxRecordsPerMessage) return delivered;
    for (std::size_t i = 0; i < stored_count; ++i) {
      const auto said = read_record(in);
      if (!said) return delivered;
      // The outdated node's own copy of the record is no help to a majority it forms later (its
      // copy is marked on its disk, or it is not).
      if (said->node == origin || said->recorder != self_) continue;
      const auto found = mine_.find({said->volume, said->node, said->generation});
      if (found == mine_.end()) continue;
      Mine& mine = found->second;
      mine.stored_by.insert(origin);
      if (mine.stored_by.size() * 2 > configured_nodes_) count(mine, *said, delivered);
    }
    return delivered;
  }
  if (type == kClearType) {
    const auto cleared = read_record(in);
    if (!cleared || !in.at_end()) return delivered;
    // The recorder's peer is up to date again: none of its records about that copy holds.
    forget_recorded(cleared->volume, cleared->node, origin, std::nullopt);
    return delivered;
  }
  if (type == kFreshType) {
    const auto record = read_record(in);
    if (!record || !in.at_end() || record->recorder != origin) return delivered;
    // A recorder's new record supersedes its older ones about that copy (a repeat does not:
    // another agent may repeat a generation the recorder has since left behind).
    forget_recorded(record->volume, record->node, origin, record->generation);
    take(origin, *record, delivered);
    return delivered;
  }
  if (type == kRepeatEndType) {
    // The sender's repeat for this view is all delivered (the ring keeps its order). One
    // composed for an earlier view and sent late may lack what its sender learned since.
    RingId repeated_for;
    repeated_for.seq = in.u64();
    repeated_for.rep = in.u32();
    if (in.at_end() && repeated_for.valid() && repeated_for == view_) unheard_.erase(origin);
    return delivered;
  }
  if (type != kRecordsType) return delivered;
  const std::size_t count_in_message = in.u16();
  if (count_in_message > kMaxRecordsPerMessage) return delivered;
  for (std::size_t i = 0; i < count_in_message; ++i) {
    const auto record = read_record(in);
    if (!record) return delivered;
    if (record->recorder == self_) {
      // Every agent repeats after a view: the others' repeats are told only when they bring
      // back what I had dropped, so that one view costs one answer.
      const bool dropped = !records_.contains({record->volume, record->node, record->generation});
      if (origin == self_ || dropped) delivered.repeated_mine.push_back(*record);
    }
    take(origin, *record, delivered);
  }
  return delivered;
}

void OutdateRecords::take(NodeId origin, const OutdateRecord& record, Delivered& delivered) {
  const Key key{record.volume, record.node, record.generation};
  records_.insert_or_assign(key, record);
  delivered.to_store.push_back(record);
  if (record.recorder == self_ && origin == self_ && majority_) {
    if (mine_[key].counted) delivered.recorded_mine.push_back(record);  // a repeat: still counts
  }
  if (record.node == self_) delivered.about_me.push_back(record);
}

void OutdateRecords::forget_recorded(const std::string& volume, NodeId node, NodeId recorder,
                                     std::optional<Generation> keep) {
  const auto [first, last] = copy_range(volume, node);
  for (auto at = first; at != last;) {
    const OutdateRecord& record = at->second;
    if (record.recorder != recorder || record.generation == keep) {
      ++at;
      continue;
    }
    mine_.erase(at->first);
    at = records_.erase(at);
  }
}

std::pair<OutdateRecords::Map::const_iterator, OutdateRecords::Map::const_iterator>
OutdateRecords::copy_range(const std::string& volume, NodeId node) const {
  return {records_.lower_bound({volume, node, 0}),
          records_.upper_bound({volume, node, std::numeric_limits<Generation>::max()})};
}

std::vector<OutdateRecord> OutdateRecords::about(const std::string& volume, NodeId node) const {
  std::vector<OutdateRecord> found;
  const auto [first, last] = copy_range(volume, node);
  for (auto at = first; at != last; ++at) found.push_back(at->second);
  return found;
}

}  // namespace keel::volume
