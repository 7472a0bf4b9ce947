// The events of `keel ring listen GROUP --json` (one JSON object per line) and the checks the
// simulator makes, here made on real logs from real hosts (docs/ring.md, "What it guarantees"):
//   views       a log's regular views have strictly increasing ring ids; every view holds its host;
//   agreement   one regular ring (or one transitional (ring, previous ring)) has one member list
//               in every log;
//   order       a message has the same (ring, seq, index) in every log that delivers it, and each
//               log delivers in strictly increasing (ring, seq, index);
//   synchrony   logs that move from view V to the same next view delivered the same messages in V
//               (views up to the one in which the listener joined its group are skipped: it was
//               not there for all of them);
//   integrity   no message twice in a log, none that was not sent, none with another origin;
//   own FIFO    a host delivers its own acknowledged messages in the order it sent them.
// Convergence (one view of exactly the live hosts) is checked by the caller, which knows which
// hosts should be live (ListenerSet::converged).
//
// One ListenLog is one listener process: a host whose agent restarts gets a new log (a new
// incarnation), as the simulator starts a new incarnation at a restart.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"

namespace keel::lab {

struct ViewEvent {
  bool regular = true;
  RingId ring;
  RingId previous_ring;  // transitional views
  std::vector<int> members;
};

struct MessageEvent {
  std::string group;
  int origin = 0;
  RingId ring;
  std::uint64_t seq = 0;
  std::uint32_t index = 0;
  bool safe = false;
  std::string message;
};

struct GroupViewEvent {
  std::string group;
  std::vector<int> members;
};

using ListenEvent = std::variant<ViewEvent, MessageEvent, GroupViewEvent>;

// One line of `ring listen --json`; an Error for a line that is not one of the three events.
Result<ListenEvent> parse_listen_line(const std::string& line);
// "12.3" -> {12, 3}.
Result<RingId> parse_ring_id(const std::string& text);

struct ListenLog {
  int host = 0;         // lab host index = node id
  int incarnation = 0;  // 0, then +1 for each listener started after an agent restart
  std::vector<ListenEvent> events;

  std::string name() const;                    // "h3" or "h3#1"
  std::optional<ViewEvent> last_view() const;  // regular or transitional
  std::size_t count_messages() const;
};

// Every complete line of `text` (a trailing line without newline is still being written and is
// ignored); an Error names the first bad line.
Result<ListenLog> parse_listen_log(const std::string& text, int host, int incarnation);

// What the sender recorded about each message it tried to send.
enum class SendOutcome { acknowledged, failed, unknown };
struct SentMessage {
  int origin = 0;
  std::uint64_t number = 0;  // per origin, rising in the order of sending
  SendOutcome outcome = SendOutcome::unknown;
};
using SentMessages = std::map<std::string, SentMessage>;  // by message text

struct LogCheck {
  std::vector<std::string> problems;  // empty: every guarantee held
  std::size_t views = 0;              // view events over all logs
  std::size_t deliveries = 0;         // message events over all logs
  std::size_t distinct_messages = 0;

  bool ok() const { return problems.empty(); }
  std::string summary() const;  // "ok: 12 views, 340 deliveries of 70 messages" or the problems
};

// The guarantees of the header. `sent` covers every message any host tried to send.
LogCheck check_listen_logs(const std::vector<ListenLog>& logs, const SentMessages& sent);

// Liveness of a host's own messages: every message `host` acknowledged is in `host`'s log. Only
// for a host whose agent never crashed (one log); returns problems.
std::vector<std::string> check_own_delivery(const ListenLog& log, const SentMessages& sent);

// A digest of the messages a log delivered in its last view, in order, to show that hosts agree.
std::string last_view_fingerprint(const ListenLog& log, std::size_t& count);

std::string to_string(const ViewEvent& view);  // "regular 12.1 [1 2 3]"

}  // namespace keel::lab
