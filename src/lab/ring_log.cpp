#include "lab/ring_log.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

namespace keel::lab {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxProblems = 20;

struct DeliveryKey {
  RingId ring;
  std::uint64_t seq = 0;
  std::uint32_t index = 0;
  auto operator<=>(const DeliveryKey&) const = default;
};

std::string key_text(const DeliveryKey& key) {
  return to_string(key.ring) + "/" + std::to_string(key.seq) + "/" + std::to_string(key.index);
}

// A view's identity as in the simulator's checker: regular views by ring, transitional views by
// (ring, previous ring).
using ViewKey = std::tuple<RingId, bool, RingId>;

ViewKey view_key(const ViewEvent& view) {
  return {view.ring, view.regular, view.regular ? RingId{} : view.previous_ring};
}

std::string view_key_text(const ViewKey& key) {
  const auto& [ring, regular, previous] = key;
  return regular ? "regular " + to_string(ring)
                 : "transitional " + to_string(ring) + " (from " + to_string(previous) + ")";
}

std::vector<int> member_list(const json& members) {
  std::vector<int> list;
  for (const auto& member : members) {
    list.push_back(member.is_object() ? member.at("id").get<int>() : member.get<int>());
  }
  std::sort(list.begin(), list.end());
  return list;
}

std::string members_text(const std::vector<int>& members) {
  std::string text = "[";
  for (std::size_t i = 0; i < members.size(); ++i) {
    text += (i ? " " : "") + std::to_string(members[i]);
  }
  return text + "]";
}

bool contains(const std::vector<int>& members, int host) {
  return std::find(members.begin(), members.end(), host) != members.end();
}

class Problems {
 public:
  explicit Problems(LogCheck& check) : check_(check) {}
  void add(const std::string& text) {
    if (check_.problems.size() < kMaxProblems) check_.problems.push_back(text);
    if (check_.problems.size() == kMaxProblems) check_.problems.back() = "... and more";
  }

 private:
  LogCheck& check_;
};

void check_views(const ListenLog& log, Problems& problems) {
  std::optional<RingId> last;
  for (const auto& event : log.events) {
    const auto* view = std::get_if<ViewEvent>(&event);
    if (!view) continue;
    if (!contains(view->members, log.host)) {
      problems.add("views: " + log.name() + " installed " + to_string(*view) + " without itself");
    }
    if (!view->regular) continue;
    if (last && !(*last < view->ring)) {
      problems.add("views: " + log.name() + " installed ring " + to_string(view->ring) +
                   " after ring " + to_string(*last));
    }
    last = view->ring;
  }
}

void check_agreement(const std::vector<ListenLog>& logs, Problems& problems) {
  std::map<ViewKey, std::pair<std::vector<int>, std::string>> first;
  for (const auto& log : logs) {
    for (const auto& event : log.events) {
      const auto* view = std::get_if<ViewEvent>(&event);
      if (!view) continue;
      auto [it, inserted] = first.try_emplace(view_key(*view), view->members, log.name());
      if (!inserted && it->second.first != view->members) {
        problems.add("agreement: " + view_key_text(it->first) + " has members " +
                     members_text(it->second.first) + " at " + it->second.second + " but " +
                     members_text(view->members) + " at " + log.name());
      }
    }
  }
}

void check_order(const std::vector<ListenLog>& logs, Problems& problems) {
  std::map<std::string, std::pair<DeliveryKey, std::string>> keys;
  for (const auto& log : logs) {
    std::optional<DeliveryKey> last;
    for (const auto& event : log.events) {
      const auto* message = std::get_if<MessageEvent>(&event);
      if (!message) continue;
      const DeliveryKey key{message->ring, message->seq, message->index};
      auto [it, inserted] = keys.try_emplace(message->message, key, log.name());
      if (!inserted && it->second.first != key) {
        problems.add("order: '" + message->message + "' is " + key_text(it->second.first) + " at " +
                     it->second.second + " but " + key_text(key) + " at " + log.name());
      }
      if (last && !(*last < key)) {
        problems.add("order: " + log.name() + " delivered " + key_text(key) + " ('" +
                     message->message + "') after " + key_text(*last));
      }
      last = key;
    }
  }
}

std::string set_difference_text(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> only;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
  std::string text;
  for (std::size_t i = 0; i < only.size() && i < 5; ++i) text += " '" + only[i] + "'";
  if (only.size() > 5) text += " and " + std::to_string(only.size() - 5) + " more";
  return text;
}

void check_synchrony(const std::vector<ListenLog>& logs, Problems& problems) {
  struct Segment {
    ViewKey view;
    std::set<std::string> messages;
    bool complete = false;  // the listener was in the group for the whole view
  };
  std::map<std::pair<ViewKey, ViewKey>, std::pair<std::set<std::string>, std::string>> moves;
  for (const auto& log : logs) {
    // The view in which the listener joined its group is incomplete, and so is every earlier
    // one. A log without its own join (other tools) loses only its first view.
    const bool has_join = std::any_of(log.events.begin(), log.events.end(), [&](const auto& e) {
      const auto* group = std::get_if<GroupViewEvent>(&e);
      return group && contains(group->members, log.host);
    });
    bool joined = false;
    std::vector<Segment> segments;
    for (const auto& event : log.events) {
      if (const auto* view = std::get_if<ViewEvent>(&event)) {
        segments.push_back(Segment{view_key(*view), {}, has_join ? joined : !segments.empty()});
      } else if (const auto* message = std::get_if<MessageEvent>(&event)) {
        if (!segments.empty()) segments.back().messages.insert(message->message);
      } else if (const auto* group = std::get_if<GroupViewEvent>(&event)) {
        joined = joined || contains(group->members, log.host);
      }
    }
    // The last view has no successor yet.
    for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
      if (!segments[i].complete) continue;
      const auto move = std::make_pair(segments[i].view, segments[i + 1].view);
      auto [it, inserted] = moves.try_emplace(move, segments[i].messages, log.name());
      if (inserted || it->second.first == segments[i].messages) continue;
      problems.add("synchrony: moving from " + view_key_text(move.first) + " to " +
                   view_key_text(move.second) + ", " + it->second.second + " delivered" +
                   set_difference_text(it->second.first, segments[i].messages) + " that " +
                   log.name() + " did not, and " + log.name() + " delivered" +
                   set_difference_text(segments[i].messages, it->second.first) + " that " +
                   it->second.second + " did not");
    }
  }
}

void check_integrity(const ListenLog& log, const SentMessages& sent, Problems& problems) {
  std::set<std::string> seen;
  std::optional<std::uint64_t> last_own;
  for (const auto& event : log.events) {
    const auto* message = std::get_if<MessageEvent>(&event);
    if (!message) continue;
    if (!seen.insert(message->message).second) {
      problems.add("integrity: " + log.name() + " delivered '" + message->message + "' twice");
    }
    const auto record = sent.find(message->message);
    if (record == sent.end()) {
      problems.add("integrity: " + log.name() + " delivered '" + message->message +
                   "', which nobody sent");
      continue;
    }
    if (record->second.origin != message->origin) {
      problems.add("integrity: '" + message->message + "' delivered with origin " +
                   std::to_string(message->origin) + " at " + log.name());
    }
    if (message->origin != log.host || record->second.outcome != SendOutcome::acknowledged) {
      continue;
    }
    if (last_own && *last_own >= record->second.number) {
      problems.add("own FIFO: " + log.name() + " delivered its message '" + message->message +
                   "' after its later message number " + std::to_string(*last_own));
    }
    last_own = record->second.number;
  }
}

}  // namespace

Result<RingId> parse_ring_id(const std::string& text) {
  const auto dot = text.find('.');
  try {
    if (dot == std::string::npos) throw std::invalid_argument("no dot");
    std::size_t used_seq = 0;
    std::size_t used_rep = 0;
    const std::uint64_t seq = std::stoull(text.substr(0, dot), &used_seq);
    const std::uint64_t rep = std::stoull(text.substr(dot + 1), &used_rep);
    if (used_seq != dot || used_rep != text.size() - dot - 1) throw std::invalid_argument("junk");
    return RingId{seq, static_cast<NodeId>(rep)};
  } catch (const std::exception&) {
    return Error{"'" + text + "' is not a ring id (seq.rep)"};
  }
}

Result<ListenEvent> parse_listen_line(const std::string& line) {
  try {
    const json value = json::parse(line);
    const std::string kind = value.at("event").get<std::string>();
    const auto ring = [&](const char* key) -> RingId {
      if (!value.contains(key) || value.at(key).is_null()) return RingId{};
      auto id = parse_ring_id(value.at(key).get<std::string>());
      if (!id) throw std::invalid_argument(id.error().message);
      return id.value();
    };
    if (kind == "view") {
      return ListenEvent{ViewEvent{value.at("kind").get<std::string>() == "regular", ring("ring"),
                                   ring("previous_ring"), member_list(value.at("members"))}};
    }
    if (kind == "message") {
      return ListenEvent{MessageEvent{
          value.at("group").get<std::string>(), value.at("origin").get<int>(), ring("ring"),
          value.at("seq").get<std::uint64_t>(), value.at("index").get<std::uint32_t>(),
          value.value("safe", false), value.value("message", std::string("<binary>"))}};
    }
    if (kind == "group_view") {
      return ListenEvent{
          GroupViewEvent{value.at("group").get<std::string>(), member_list(value.at("members"))}};
    }
    return Error{"unknown event '" + kind + "'"};
  } catch (const std::exception& error) {
    return Error{std::string("bad listen line: ") + error.what()};
  }
}

std::string ListenLog::name() const {
  return "h" + std::to_string(host) + (incarnation ? "#" + std::to_string(incarnation) : "");
}

std::optional<ViewEvent> ListenLog::last_view() const {
  for (auto it = events.rbegin(); it != events.rend(); ++it) {
    if (const auto* view = std::get_if<ViewEvent>(&*it)) return *view;
  }
  return std::nullopt;
}

std::size_t ListenLog::count_messages() const {
  return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [](const auto& e) {
    return std::holds_alternative<MessageEvent>(e);
  }));
}

Result<ListenLog> parse_listen_log(const std::string& text, int host, int incarnation) {
  ListenLog log{host, incarnation, {}};
  std::size_t start = 0;
  int line_number = 0;
  for (auto end = text.find('\n'); end != std::string::npos; end = text.find('\n', start)) {
    ++line_number;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    auto event = parse_listen_line(line);
    if (!event) {
      return Error{log.name() + " line " + std::to_string(line_number) + ": " +
                   event.error().message};
    }
    log.events.push_back(std::move(event.value()));
  }
  return log;
}

LogCheck check_listen_logs(const std::vector<ListenLog>& logs, const SentMessages& sent) {
  LogCheck check;
  Problems problems(check);
  std::set<std::string> distinct;
  for (const auto& log : logs) {
    for (const auto& event : log.events) {
      if (std::holds_alternative<ViewEvent>(event)) ++check.views;
      if (const auto* message = std::get_if<MessageEvent>(&event)) {
        ++check.deliveries;
        distinct.insert(message->message);
      }
    }
    check_views(log, problems);
    check_integrity(log, sent, problems);
  }
  check.distinct_messages = distinct.size();
  check_agreement(logs, problems);
  check_order(logs, problems);
  check_synchrony(logs, problems);
  return check;
}

std::vector<std::string> check_own_delivery(const ListenLog& log, const SentMessages& sent) {
  std::set<std::string> delivered;
  for (const auto& event : log.events) {
    if (const auto* message = std::get_if<MessageEvent>(&event)) delivered.insert(message->message);
  }
  std::vector<std::string> problems;
  for (const auto& [text, record] : sent) {
    if (record.origin != log.host || record.outcome != SendOutcome::acknowledged) continue;
    if (delivered.count(text) == 0 && problems.size() < kMaxProblems) {
      problems.push_back("liveness: " + log.name() + " never delivered its own message '" + text +
                         "' (acknowledged by its agent)");
    }
  }
  return problems;
}

std::string last_view_fingerprint(const ListenLog& log, std::size_t& count) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a over the texts and their separators
  count = 0;
  for (const auto& event : log.events) {
    if (std::holds_alternative<ViewEvent>(event)) {
      hash = 0xcbf29ce484222325ULL;
      count = 0;
    } else if (const auto* message = std::get_if<MessageEvent>(&event)) {
      for (char c : message->message + '\n') {
        hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
      }
      ++count;
    }
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

std::string LogCheck::summary() const {
  std::ostringstream text;
  if (ok()) {
    text << "ok: " << views << " views, " << deliveries << " deliveries of " << distinct_messages
         << " messages";
  } else {
    text << problems.size() << " problem(s):";
    for (const auto& problem : problems) text << "\n  " << problem;
  }
  return text.str();
}

std::string to_string(const ViewEvent& view) {
  return (view.regular ? "regular " : "transitional ") + keel::to_string(view.ring) + " " +
         members_text(view.members);
}

}  // namespace keel::lab
