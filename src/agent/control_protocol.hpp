// The control socket's protocol: newline-delimited JSON, one request per line, one reply line per
// request; a `listen` session then carries one event line per delivery (or binary frames,
// control_frames.hpp, and a `send_stream` session carries send frames). docs/control-protocol.md
// is the reference; this file holds its limits and the encoding of replies and events, shared by
// the agent (control_server) and the clients (control_client, the CLI).
//
// Thread-safety: pure functions and constants.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/common/byte_io.hpp"
#include "core/ring/events.hpp"
#include "core/ring/groups.hpp"

namespace keel::agent {

// A request line, newline excluded. Big enough for the largest message JSON-escaped.
constexpr std::size_t kMaxRequestLineBytes = 8u << 20;
// Arrays and objects nested in a request (requests nest one deep). A request is parsed on the
// thread that runs the ring: a line of 8 MiB of `[` would take seconds and hundreds of MiB to
// parse, long enough for the ring to lose its token.
constexpr std::size_t kMaxRequestDepth = 64;
// A request's bytes outside its strings: brackets, separators, numbers, literals and spaces. A
// request's bulk is its message, a string; 8 MiB of `1,` costs the parser as much as the nesting.
constexpr std::size_t kMaxRequestStructureBytes = 4096;
// Connections open at once; more are refused with an error line.
constexpr std::size_t kMaxControlSessions = 64;
// How long a connection may take to send its next complete request line, before it is sent an
// error line and closed: without it, kMaxControlSessions silent clients would lock the operators
// out. Listeners and send streams, once past their request, wait for nothing and never time out;
// neither does a connection while its reply is on the way.
constexpr int kRequestWaitMs = 30'000;
// Sessions in `listen` mode at once, over all groups.
constexpr std::size_t kMaxListeners = 32;
// Event bytes queued for one listener; a listener further behind is disconnected. Holds more
// than one event of the largest message.
constexpr std::size_t kMaxListenerBacklogBytes = 16u << 20;
// A reply or event line as a client reads it (the backlog bound covers any one line).
constexpr std::size_t kMaxReplyLineBytes = kMaxListenerBacklogBytes;
// A send frame's length (type byte and message): a message of 1 MiB. The message limit proper
// (1 MiB less the group header) is checked when it is sent.
constexpr std::size_t kMaxSendFrameBytes = 1 + (1u << 20);

// Serialises a reply or event without its newline; invalid UTF-8 (never produced here) would be
// replaced rather than thrown.
std::string to_line(const nlohmann::json& value);

// Why `line` is refused before it is parsed: nested deeper than kMaxRequestDepth, or more than
// kMaxRequestStructureBytes outside its strings; nothing if neither. One pass that follows JSON's
// strings and escapes, stopping at the first excess: on any line it lets through, the parser
// stays within both bounds, or fails on its own.
std::optional<std::string> request_structure_error(std::string_view line);

nlohmann::json ok_reply();
nlohmann::json error_reply(const std::string& message);

// Events of a listen stream.
nlohmann::json view_event(const ring::View& view);
nlohmann::json group_view_event(const ring::GroupView& view);
nlohmann::json message_event(const ring::GroupMessage& message,
                             const ring::DeliveredMessage& carrier);

// The payload of a `send` request, from "message" (a string) or "message_base64"; an error
// message when neither or both are given or the base64 is invalid.
std::optional<Bytes> request_payload(const nlohmann::json& request, std::string& error);

// Adds to `object` the payload as "message" when it is valid UTF-8, else as "message_base64".
void put_payload(nlohmann::json& object, std::span<const std::uint8_t> payload);
// The payload of an event: "message" or "message_base64".
std::optional<Bytes> event_payload(const nlohmann::json& event);

bool valid_utf8(std::span<const std::uint8_t> bytes);
std::string base64_encode(std::span<const std::uint8_t> bytes);
std::optional<Bytes> base64_decode(const std::string& text);

}  // namespace keel::agent
