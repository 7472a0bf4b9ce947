#include "sim/checkers.hpp"

#include <algorithm>

#include "core/common/assert.hpp"
#include "sim/trace.hpp"

namespace keel::sim {

namespace {

constexpr std::uint64_t kRetireEveryDeliveries = 1024;

std::uint64_t bit(NodeId node) { return std::uint64_t{1} << node; }

}  // namespace

std::string guarantee_name(int guarantee) {
  switch (guarantee) {
    case 1:
      return "1 (views increase and contain their host)";
    case 2:
      return "2 (hosts agree on each view's members)";
    case 3:
      return "3 (agreed order)";
    case 4:
      return "4 (virtual synchrony)";
    case 5:
      return "5 (integrity: sent, unchanged, at most once, own order)";
    case 6:
      return "6 (safe delivery)";
    case 7:
      return "7 (liveness)";
    default:
      return std::to_string(guarantee);
  }
}

std::string to_string(const DeliveryKey& key) {
  return std::to_string(key.ring_seq) + "." + std::to_string(key.ring_rep) + ":" +
         std::to_string(key.seq) + ":" + std::to_string(key.index);
}

ViewId view_id(const ring::View& view) {
  ViewId id;
  id.ring = view.ring;
  id.regular = view.regular();
  if (!id.regular) id.previous = view.previous_ring;
  return id;
}

std::string to_string(const ViewId& id) {
  if (id.regular) return "regular " + keel::to_string(id.ring);
  return "transitional " + keel::to_string(id.ring) + " from " + keel::to_string(id.previous);
}

Checker::Checker(std::size_t hosts, std::uint64_t seed)
    : hosts_(hosts), seed_(seed), hosts_track_(hosts + 1) {
  KEEL_ASSERT(hosts >= 1 && hosts < 64);
  for (NodeId node = 1; node <= hosts; ++node) all_mask_ |= bit(node);
}

Checker::HostTrack& Checker::track(NodeId host) {
  KEEL_ASSERT(host >= 1 && host <= hosts_);
  return hosts_track_[host];
}

std::string Checker::who(NodeId host) const {
  return "host " + std::to_string(host) + " (incarnation " +
         std::to_string(hosts_track_[host].incarnation) + ")";
}

void Checker::fail(int guarantee, const std::string& text, TimeUs now) {
  if (violation_) return;
  now_ = now;
  violation_ =
      Violation{guarantee, "violation of guarantee " + guarantee_name(guarantee) + ", seed " +
                               std::to_string(seed_) + ", at " + format_time(now_) + " s: " + text};
}

void Checker::host_started(NodeId host, std::uint32_t incarnation, TimeUs now) {
  now_ = now;
  HostTrack& t = track(host);
  KEEL_ASSERT(!t.alive);
  KEEL_ASSERT(incarnation > t.incarnation);
  t = HostTrack{};
  t.incarnation = incarnation;
  t.alive = true;
}

void Checker::host_crashed(NodeId host, TimeUs now) {
  now_ = now;
  HostTrack& t = track(host);
  KEEL_ASSERT(t.alive);
  const std::uint32_t incarnation = t.incarnation;
  t = HostTrack{};
  t.incarnation = incarnation;
}

void Checker::message_submitted(const MessageId& id, std::size_t filler_bytes,
                                ring::DeliveryKind kind, TimeUs now) {
  now_ = now;
  MessageRecord record;
  record.filler_bytes = filler_bytes;
  record.kind = kind;
  const bool inserted = messages_.emplace(id, std::move(record)).second;
  KEEL_ASSERT(inserted);
  ++stats_.messages_submitted;
}

void Checker::on_action(NodeId host, const ring::Action& action, TimeUs now) {
  if (const auto* view = std::get_if<ring::View>(&action)) {
    on_view(host, *view, now);
  } else if (const auto* message = std::get_if<ring::DeliveredMessage>(&action)) {
    on_delivery(host, *message, now);
  } else if (const auto* receipt = std::get_if<ring::Received>(&action)) {
    on_receipt(host, *receipt, now);
  }
}

// ---- views (1, 2, 4) ----

void Checker::on_view(NodeId host, const ring::View& view, TimeUs now) {
  now_ = now;
  if (failed()) return;
  KEEL_ASSERT(track(host).alive);
  ++stats_.views_installed;
  check_view_order(host, view);
  if (failed()) return;
  check_view_agreement(host, view);
  if (failed()) return;
  const ViewId id = view_id(view);
  record_transition(host, id);
  HostTrack& t = track(host);
  t.view = id;
  t.members = view.members;
  t.digest = Digest{};
  trim_tables();
}

void Checker::check_view_order(NodeId host, const ring::View& view) {
  const ViewId id = view_id(view);
  const auto& members = view.members;
  const bool sorted = std::adjacent_find(members.begin(), members.end(), [](NodeId a, NodeId b) {
                        return a >= b;
                      }) == members.end();
  if (!sorted) {
    return fail(1,
                who(host) + " installed " + to_string(id) + " with members " +
                    members_text(members) + " (not sorted and unique)",
                now_);
  }
  if (!std::binary_search(members.begin(), members.end(), host)) {
    return fail(1,
                who(host) + " installed " + to_string(id) + " with members " +
                    members_text(members) + ", which do not contain it",
                now_);
  }
  const auto& previous = track(host).view;
  if (previous && std::pair(id.ring, id.regular) <= std::pair(previous->ring, previous->regular)) {
    return fail(1, who(host) + " installed " + to_string(id) + " after " + to_string(*previous),
                now_);
  }
}

void Checker::check_view_agreement(NodeId host, const ring::View& view) {
  const ViewId id = view_id(view);
  auto& table = id.regular ? regular_members_[id.ring] : transitional_members_[id];
  if (table.members.empty()) {
    table = FirstView{view.members, host, track(host).incarnation};
    return;
  }
  if (table.members != view.members) {
    fail(2,
         who(host) + " installed " + to_string(id) + " with members " + members_text(view.members) +
             ", host " + std::to_string(table.host) + " (incarnation " +
             std::to_string(table.incarnation) + ") with " + members_text(table.members),
         now_);
  }
}

void Checker::record_transition(NodeId host, const ViewId& next) {
  HostTrack& t = track(host);
  if (!t.view) return;
  const auto key = std::pair(*t.view, next);
  const auto [it, inserted] = transitions_.emplace(key, Transition{t.digest, host, t.incarnation});
  if (inserted || it->second.digest == t.digest) return;
  const Transition& other = it->second;
  fail(4,
       who(host) + " and host " + std::to_string(other.host) + " (incarnation " +
           std::to_string(other.incarnation) + ") both moved from " + to_string(*t.view) + " to " +
           to_string(next) + " but delivered different messages in it (" +
           std::to_string(t.digest.count) + " against " + std::to_string(other.digest.count) +
           " messages, or the same number with different ids)",
       now_);
}

// ---- deliveries (3, 4, 5, 6) ----

void Checker::on_delivery(NodeId host, const ring::DeliveredMessage& message, TimeUs now) {
  now_ = now;
  if (failed()) return;
  HostTrack& t = track(host);
  KEEL_ASSERT(t.alive);
  const auto id = parse_message_id(message.payload);
  if (!id) {
    return fail(5,
                who(host) + " delivered a " + std::to_string(message.payload.size()) +
                    "-byte payload with no message header (never submitted)",
                now_);
  }
  if (!t.view) {
    return fail(4,
                who(host) + " delivered message " + to_string(*id) + " before installing any view",
                now_);
  }
  MessageRecord* record = check_integrity(host, message, *id);
  if (record == nullptr) return;
  const DeliveryKey key{message.ring.seq, message.ring.rep, message.seq, message.index};
  check_order(host, *id, *record, key);
  if (failed()) return;
  check_safe(host, message, *id, *record);
  if (failed()) return;
  record->delivered_by.emplace_back(host, t.incarnation);
  t.digest.sum += hash(*id);
  ++t.digest.count;
  ++stats_.messages_delivered;
  if (++deliveries_since_retire_ >= kRetireEveryDeliveries) retire_messages();
}

Checker::MessageRecord* Checker::check_integrity(NodeId host, const ring::DeliveredMessage& message,
                                                 const MessageId& id) {
  const std::string what = who(host) + " delivered message " + to_string(id);
  auto it = messages_.find(id);
  if (it == messages_.end()) {
    fail(5,
         what +
             ", which is not a live submitted message (never submitted, or delivered "
             "again after every host had moved past it)",
         now_);
    return nullptr;
  }
  MessageRecord& record = it->second;
  if (message.origin != id.origin) {
    fail(5, what + " with origin " + std::to_string(message.origin), now_);
    return nullptr;
  }
  if (auto error = verify_payload(message.payload, record.filler_bytes)) {
    fail(5, what + " with a changed payload: " + *error, now_);
    return nullptr;
  }
  const HostTrack& t = track(host);
  const auto self = std::pair(host, t.incarnation);
  if (std::find(record.delivered_by.begin(), record.delivered_by.end(), self) !=
      record.delivered_by.end()) {
    fail(5, what + " twice", now_);
    return nullptr;
  }
  if (id.origin == host && id.incarnation == t.incarnation) {
    if (t.last_own_counter && id.counter <= *t.last_own_counter) {
      fail(5,
           what + ", its own, after its own message " + std::to_string(*t.last_own_counter) +
               " (own messages out of submission order)",
           now_);
      return nullptr;
    }
  }
  return &record;
}

void Checker::check_order(NodeId host, const MessageId& id, MessageRecord& record,
                          const DeliveryKey& key) {
  HostTrack& t = track(host);
  if (record.key && *record.key != key) {
    const auto& [other, incarnation] = record.delivered_by.front();
    return fail(3,
                who(host) + " delivered message " + to_string(id) + " at position " +
                    to_string(key) + ", host " + std::to_string(other) + " (incarnation " +
                    std::to_string(incarnation) + ") at " + to_string(*record.key),
                now_);
  }
  if (t.last_delivery && key <= *t.last_delivery) {
    return fail(3,
                who(host) + " delivered message " + to_string(id) + " at position " +
                    to_string(key) + " after position " + to_string(*t.last_delivery),
                now_);
  }
  if (!record.key) {
    record.key = key;
    by_key_.emplace(key, id);
  }
  t.last_delivery = key;
  if (id.origin == host && id.incarnation == t.incarnation) t.last_own_counter = id.counter;
}

void Checker::check_safe(NodeId host, const ring::DeliveredMessage& message, const MessageId& id,
                         const MessageRecord& record) {
  const bool submitted_safe = record.kind == ring::DeliveryKind::safe;
  if (message.safe != submitted_safe) {
    return fail(6,
                who(host) + " delivered message " + to_string(id) + " as " +
                    (message.safe ? "safe" : "agreed") + ", submitted as " +
                    (submitted_safe ? "safe" : "agreed"),
                now_);
  }
  if (!message.safe) return;
  bool known = true;
  const std::uint64_t mask = receipt_mask(message.ring, message.seq, known);
  if (!known) {
    ++stats_.safe_checks_skipped;
    return;
  }
  const HostTrack& t = track(host);
  std::vector<NodeId> missing;
  for (NodeId member : t.members) {
    if ((mask & bit(member)) == 0) missing.push_back(member);
  }
  if (missing.empty()) return;
  fail(6,
       who(host) + " delivered safe message " + to_string(id) + " (ring message " +
           keel::to_string(message.ring) + ":" + std::to_string(message.seq) + ") in " +
           to_string(*t.view) + " with members " + members_text(t.members) + ", but " +
           members_text(missing) + " had not received it",
       now_);
}

// ---- receipts (6) ----

void Checker::on_receipt(NodeId host, const ring::Received& receipt, TimeUs now) {
  now_ = now;
  if (failed()) return;
  if (receipts_trimmed_ && receipt.ring <= *receipts_trimmed_) return;
  RingReceipts& receipts = receipts_[receipt.ring];
  if (receipt.seq > receipts.compacted_up_to) receipts.received[receipt.seq] |= bit(host);
  compact_receipts(receipt.ring, receipts);
  if (receipts_.size() > kTableLimit) {
    receipts_trimmed_ = receipts_.begin()->first;
    receipts_.erase(receipts_.begin());
  }
}

std::uint64_t Checker::members_mask(RingId ring) const {
  auto it = regular_members_.find(ring);
  if (it == regular_members_.end()) return all_mask_;
  std::uint64_t mask = 0;
  for (NodeId member : it->second.members) mask |= bit(member);
  return mask;
}

void Checker::compact_receipts(RingId ring, RingReceipts& receipts) {
  const std::uint64_t need = members_mask(ring);
  while (!receipts.received.empty()) {
    auto first = receipts.received.begin();
    if (first->first != receipts.compacted_up_to + 1 || (first->second & need) != need) return;
    receipts.compacted_mask =
        receipts.compacted_up_to == 0 ? first->second : receipts.compacted_mask & first->second;
    receipts.compacted_up_to = first->first;
    receipts.received.erase(first);
  }
}

std::uint64_t Checker::receipt_mask(RingId ring, std::uint64_t seq, bool& known) const {
  known = true;
  auto it = receipts_.find(ring);
  if (it == receipts_.end()) {
    if (receipts_trimmed_ && ring <= *receipts_trimmed_) known = false;
    return 0;
  }
  const RingReceipts& receipts = it->second;
  if (seq <= receipts.compacted_up_to) return receipts.compacted_mask;
  auto entry = receipts.received.find(seq);
  return entry == receipts.received.end() ? 0 : entry->second;
}

// ---- liveness support and memory bounds ----

void Checker::watch(const MessageId& id) {
  auto it = messages_.find(id);
  KEEL_ASSERT(it != messages_.end());
  it->second.watched = true;
}

bool Checker::delivered_everywhere(const MessageId& id) const {
  auto it = messages_.find(id);
  KEEL_ASSERT(it != messages_.end());
  const auto& delivered_by = it->second.delivered_by;
  for (NodeId host = 1; host <= hosts_; ++host) {
    const HostTrack& t = hosts_track_[host];
    if (!t.alive) continue;
    const auto self = std::pair(host, t.incarnation);
    if (std::find(delivered_by.begin(), delivered_by.end(), self) == delivered_by.end()) {
      return false;
    }
  }
  return true;
}

// A message can be forgotten once every live host's progress (its last delivery, or the start of
// its current regular ring) is at or past the message's key: no live host may deliver it again.
void Checker::retire_messages() {
  deliveries_since_retire_ = 0;
  std::optional<DeliveryKey> floor;
  for (NodeId host = 1; host <= hosts_; ++host) {
    const HostTrack& t = hosts_track_[host];
    if (!t.alive) continue;
    DeliveryKey progress = t.last_delivery.value_or(DeliveryKey{});
    if (t.view && t.view->regular) {
      progress = std::max(progress, DeliveryKey{t.view->ring.seq, t.view->ring.rep, 0, 0});
    }
    floor = floor ? std::min(*floor, progress) : progress;
  }
  if (!floor) return;
  for (auto it = by_key_.begin(); it != by_key_.end() && it->first <= *floor;) {
    auto record = messages_.find(it->second);
    KEEL_ASSERT(record != messages_.end());
    if (record->second.watched) {
      ++it;
      continue;
    }
    messages_.erase(record);
    it = by_key_.erase(it);
  }
}

void Checker::trim_tables() {
  while (regular_members_.size() > kTableLimit) regular_members_.erase(regular_members_.begin());
  while (transitional_members_.size() > kTableLimit) {
    transitional_members_.erase(transitional_members_.begin());
  }
  while (transitions_.size() > kTableLimit) transitions_.erase(transitions_.begin());
}

}  // namespace keel::sim
