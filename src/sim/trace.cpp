#include "sim/trace.hpp"

#include <cstdio>

#include "core/common/assert.hpp"

namespace keel::sim {

namespace {

const char* packet_type_name(std::uint64_t type) {
  switch (type) {
    case 1:
      return "mcast";
    case 2:
      return "token";
    case 3:
      return "join";
    case 4:
      return "commit-token";
    case 5:
      return "probe";
    case 6:
      return "wake";
    case 7:
      return "leave";
    default:
      return "unknown-packet";
  }
}

std::string describe(const TraceEntry& e) {
  const std::string peer = std::to_string(e.peer);
  const std::string size = std::to_string(e.a);
  switch (e.kind) {
    case TraceKind::packet:
      return std::string(packet_type_name(e.b)) + " from " + peer + " (" + size + " bytes)";
    case TraceKind::packet_dropped:
      return "crashed: dropped a packet from " + peer;
    case TraceKind::packet_queued:
      return "paused: queued a packet from " + peer;
    case TraceKind::timer:
      return "timer";
    case TraceKind::submit:
      return "submit " + e.text + " (" + size + " bytes, " + (e.b ? "safe" : "agreed") + ")";
    case TraceKind::submit_refused:
      return "submit refused: " + e.text;
    case TraceKind::view:
      return "view " + e.text;
    case TraceKind::deliver:
      return "deliver " + e.text + (e.a ? " (safe)" : "");
    case TraceKind::fault:
      return "fault: " + e.text;
    case TraceKind::note:
      return e.text;
  }
  return e.text;
}

}  // namespace

std::string members_text(const std::vector<NodeId>& members) {
  std::string out = "[";
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(members[i]);
  }
  return out + "]";
}

std::string format_time(TimeUs at) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%llu.%06llu", static_cast<unsigned long long>(at / 1000000),
                static_cast<unsigned long long>(at % 1000000));
  return buffer;
}

std::string format(const TraceEntry& entry) {
  std::string out = format_time(entry.at);
  out += entry.host == kNoNode ? " sim " : " h" + std::to_string(entry.host) + " ";
  out += describe(entry);
  return out;
}

Trace::Trace(std::size_t capacity) : entries_(capacity) { KEEL_ASSERT(capacity > 0); }

void Trace::record(TraceEntry entry) {
  if (out_ != nullptr) *out_ << format(entry) << '\n';
  entries_[next_] = std::move(entry);
  next_ = (next_ + 1) % entries_.size();
  ++recorded_;
}

std::vector<std::string> Trace::tail() const {
  std::vector<std::string> lines;
  const std::size_t kept = recorded_ < entries_.size() ? recorded_ : entries_.size();
  std::size_t index = (next_ + entries_.size() - kept) % entries_.size();
  for (std::size_t i = 0; i < kept; ++i) {
    lines.push_back(format(entries_[index]));
    index = (index + 1) % entries_.size();
  }
  return lines;
}

}  // namespace keel::sim
