// EventQueue: the simulators' one queue of future events (packet arrivals, host timers, scheduled
// actions), ordered by (time, insertion counter) so that a run is a pure function of its seed:
// two events due at the same time come out in the order they went in.
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <variant>
#include <vector>

#include "core/common/byte_io.hpp"
#include "core/common/types.hpp"

namespace keel::sim {

struct PacketEvent {
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  std::shared_ptr<const Bytes> bytes;
};
struct TimerEvent {
  NodeId host = kNoNode;
  std::uint64_t generation = 0;  // a timer re-armed since is recognised as stale
};
struct ScheduledEvent {
  std::string label;  // for the trace
  std::function<void()> action;
};
using EventBody = std::variant<PacketEvent, TimerEvent, ScheduledEvent>;

struct Event {
  TimeUs at = 0;
  std::uint64_t order = 0;
  EventBody body;
};

class EventQueue {
 public:
  void push(TimeUs at, EventBody body) { queue_.push(Event{at, order_++, std::move(body)}); }
  bool empty() const { return queue_.empty(); }
  const Event& top() const { return queue_.top(); }
  // Removes the earliest event and returns it.
  Event take() {
    Event event = std::move(const_cast<Event&>(queue_.top()));  // popped at once: never reused
    queue_.pop();
    return event;
  }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.order > b.order;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::uint64_t order_ = 0;
};

}  // namespace keel::sim
