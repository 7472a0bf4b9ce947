// Checker: watches every view, delivery and receipt of a simulated cluster as it happens and
// stops at the first breach of one of the ring's guarantees (docs/design.md, "The ring"):
//   1 views: each host incarnation installs views with strictly increasing ids that contain it;
//   2 view agreement: one regular ring id (or one transitional (ring, previous ring)) has one
//     member list everywhere;
//   3 agreed order: a message has the same delivery key (ring, seq, index) at every host, and each
//     host incarnation delivers with strictly increasing keys;
//   4 virtual synchrony: host incarnations that move from view V to the same next view W
//     delivered the same set of messages while in V;
//   5 integrity: only submitted messages, byte for byte, at most once per host incarnation, and a
//     host's own messages in the order it submitted them;
//   6 safe delivery: a safe message is delivered only once every member of the delivering host's
//     view has reported receiving it (Received actions), and only messages submitted as safe are;
//   (7, liveness, is checked by the scenario runner at the end of a run.)
//
// A view is identified by (kind, ring, previous ring); ids are ordered by (ring.seq, ring.rep,
// kind) with transitional before regular. A crash ends an incarnation without a transition.
//
// Memory stays bounded on long runs: a message's record is retired once every live host has moved
// past it (its delivery key is below every live host's progress), receipts of a ring are compacted
// once every member holds them, and view tables keep only the newest kTableLimit rings.
//
// Thread-safety: none.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/ring/events.hpp"
#include "sim/message.hpp"

namespace keel::sim {

struct Violation {
  int guarantee = 0;  // 1..7
  std::string text;   // names the guarantee, the seed, hosts and message ids
};

std::string guarantee_name(int guarantee);

// Where a message sits in the agreed order: (ring.seq, ring.rep, seq, index).
struct DeliveryKey {
  std::uint64_t ring_seq = 0;
  NodeId ring_rep = kNoNode;
  std::uint64_t seq = 0;
  std::uint32_t index = 0;

  auto operator<=>(const DeliveryKey&) const = default;
  bool operator==(const DeliveryKey&) const = default;
};

std::string to_string(const DeliveryKey& key);

// A view's identity: regular views by ring, transitional views by (ring, previous ring).
struct ViewId {
  RingId ring;
  bool regular = true;
  RingId previous;  // transitional only

  auto operator<=>(const ViewId& other) const {
    if (auto c = ring <=> other.ring; c != 0) return c;
    if (auto c = regular <=> other.regular; c != 0) return c;  // transitional first
    return previous <=> other.previous;
  }
  bool operator==(const ViewId&) const = default;
};

ViewId view_id(const ring::View& view);
std::string to_string(const ViewId& id);

struct CheckerStats {
  std::uint64_t views_installed = 0;
  std::uint64_t messages_submitted = 0;
  std::uint64_t messages_delivered = 0;   // deliveries, summed over hosts
  std::uint64_t safe_checks_skipped = 0;  // receipts of a ring already forgotten
};

class Checker {
 public:
  static constexpr std::size_t kTableLimit = 4096;

  Checker(std::size_t hosts, std::uint64_t seed);

  // A host process starts (first boot or restart) or stops.
  void host_started(NodeId host, std::uint32_t incarnation, TimeUs now);
  void host_crashed(NodeId host, TimeUs now);
  // A message accepted by a host's ring (its payload is make_payload(id, filler_bytes)).
  void message_submitted(const MessageId& id, std::size_t filler_bytes, ring::DeliveryKind kind,
                         TimeUs now);

  // Views, deliveries and receipts of `host`, in the order its ring emitted them. Sends ignored.
  void on_action(NodeId host, const ring::Action& action, TimeUs now);
  void on_view(NodeId host, const ring::View& view, TimeUs now);
  void on_delivery(NodeId host, const ring::DeliveredMessage& message, TimeUs now);
  void on_receipt(NodeId host, const ring::Received& receipt, TimeUs now);

  // Liveness: a watched message keeps its record; true once every live host delivered it.
  void watch(const MessageId& id);
  bool delivered_everywhere(const MessageId& id) const;

  // Reports a breach found outside the checker (liveness, simulator-level checks).
  void fail(int guarantee, const std::string& text, TimeUs now);

  bool failed() const { return violation_.has_value(); }
  const std::optional<Violation>& violation() const { return violation_; }
  const CheckerStats& stats() const { return stats_; }
  std::size_t live_message_records() const { return messages_.size(); }

 private:
  struct Digest {
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    bool operator==(const Digest&) const = default;
  };
  struct HostTrack {
    std::uint32_t incarnation = 0;
    bool alive = false;
    std::optional<ViewId> view;  // current view
    std::vector<NodeId> members;
    Digest digest;  // messages delivered in the current view
    std::optional<DeliveryKey> last_delivery;
    std::optional<std::uint64_t> last_own_counter;
  };
  struct MessageRecord {
    std::size_t filler_bytes = 0;
    ring::DeliveryKind kind = ring::DeliveryKind::agreed;
    std::optional<DeliveryKey> key;
    std::vector<std::pair<NodeId, std::uint32_t>> delivered_by;  // (host, incarnation)
    bool watched = false;
  };
  struct Transition {
    Digest digest;
    NodeId host = kNoNode;
    std::uint32_t incarnation = 0;
  };
  struct FirstView {  // the first host to install a view, with the members it saw
    std::vector<NodeId> members;
    NodeId host = kNoNode;
    std::uint32_t incarnation = 0;
  };
  struct RingReceipts {
    std::uint64_t compacted_up_to = 0;  // every seq <= this was received by compacted_mask
    std::uint64_t compacted_mask = 0;
    std::map<std::uint64_t, std::uint64_t> received;  // seq -> mask of node ids
  };

  HostTrack& track(NodeId host);
  std::string who(NodeId host) const;  // "host 3 (incarnation 2)"
  void check_view_order(NodeId host, const ring::View& view);
  void check_view_agreement(NodeId host, const ring::View& view);
  void record_transition(NodeId host, const ViewId& next);
  MessageRecord* check_integrity(NodeId host, const ring::DeliveredMessage& message,
                                 const MessageId& id);
  void check_order(NodeId host, const MessageId& id, MessageRecord& record, const DeliveryKey& key);
  void check_safe(NodeId host, const ring::DeliveredMessage& message, const MessageId& id,
                  const MessageRecord& record);
  std::uint64_t receipt_mask(RingId ring, std::uint64_t seq, bool& known) const;
  void compact_receipts(RingId ring, RingReceipts& receipts);
  std::uint64_t members_mask(RingId ring) const;
  void retire_messages();
  void trim_tables();

  std::size_t hosts_;
  std::uint64_t seed_;
  std::uint64_t all_mask_ = 0;
  std::vector<HostTrack> hosts_track_;  // by node id; index 0 unused
  std::map<RingId, FirstView> regular_members_;
  std::map<ViewId, FirstView> transitional_members_;
  std::map<std::pair<ViewId, ViewId>, Transition> transitions_;
  std::map<MessageId, MessageRecord> messages_;
  std::map<DeliveryKey, MessageId> by_key_;
  std::map<RingId, RingReceipts> receipts_;
  std::optional<RingId> receipts_trimmed_;  // receipts of rings up to this one were forgotten
  std::uint64_t deliveries_since_retire_ = 0;
  TimeUs now_ = 0;
  std::optional<Violation> violation_;
  CheckerStats stats_;
};

}  // namespace keel::sim
