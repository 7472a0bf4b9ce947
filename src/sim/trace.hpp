// Trace: what happened in a simulated run, event by event, for people reading a failure.
//
// Entries are stored as small structured records and formatted only when printed, so tracing
// every event costs little. The tail (the last `capacity` entries) is kept in a ring buffer and
// printed when a checker fails; with an output stream set, every entry is also printed as it is
// recorded (`keel sim --trace`).
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "core/common/types.hpp"

namespace keel::sim {

enum class TraceKind : std::uint8_t {
  packet,          // host received a packet from peer (a = size, b = packet type)
  packet_dropped,  // a packet reached a crashed host
  packet_queued,   // a packet reached a paused host and waits for it
  timer,           // host's timer fired
  submit,          // host submitted a message (text = id, a = bytes, b = 1 if safe)
  submit_refused,  // host's ring refused a message (text = reason)
  view,            // host installed a view (text)
  deliver,         // host delivered a message (text = id, a = 1 if safe)
  fault,           // a fault or scheduled action (text)
  note,            // anything else (text)
};

struct TraceEntry {
  TimeUs at = 0;
  NodeId host = kNoNode;
  TraceKind kind = TraceKind::note;
  NodeId peer = kNoNode;
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::string text;
};

std::string format_time(TimeUs at);                            // "12.345678"
std::string members_text(const std::vector<NodeId>& members);  // "[1,2,3]"
std::string format(const TraceEntry& entry);

class Trace {
 public:
  explicit Trace(std::size_t capacity = 200);

  void record(TraceEntry entry);
  void set_output(std::ostream* out) { out_ = out; }
  bool printing() const { return out_ != nullptr; }
  // The kept entries, oldest first.
  std::vector<std::string> tail() const;
  std::uint64_t recorded() const { return recorded_; }

 private:
  std::vector<TraceEntry> entries_;
  std::size_t next_ = 0;
  std::uint64_t recorded_ = 0;
  std::ostream* out_ = nullptr;
};

}  // namespace keel::sim
