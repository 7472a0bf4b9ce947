// Handshake: the server side of NBD's fixed newstyle negotiation for one connection, as a pure
// state machine. Bytes from the client go in through feed(), in fragments of any size; what to
// send back comes out, and the machine says when it is done (transmission starts) or when the
// connection must close.
//
// The server serves one export. Options: EXPORT_NAME, ABORT, LIST, INFO, GO (with
// NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE always sent, NBD_INFO_NAME and NBD_INFO_DESCRIPTION
// when asked), STRUCTURED_REPLY; anything else gets NBD_REP_ERR_UNSUP. The empty name means the
// export too (the protocol's "default export"). An export that exists but may not serve now (the
// device's unavailable_reason, e.g. on a secondary) is refused at INFO/GO with
// NBD_REP_ERR_UNKNOWN ("the requested export is not available") carrying the reason as text; at
// EXPORT_NAME, which has no way to answer an error, the connection closes.
//
// Invariants: bytes_wanted() > 0 exactly while negotiating, and feed() never consumes more than
// the option in progress needs, so bytes after the GO belong to the transmission phase. Every
// option's data is bounded by kMaxOptionDataBytes (larger ones are skipped without being kept,
// and refused) and a negotiation by kMaxOptionsPerHandshake.
//
// Thread-safety: a plain value; one connection's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/common/byte_io.hpp"
#include "core/nbd/nbd_protocol.hpp"

namespace keel::nbd {

// What the server says about its one export. The server refreshes it before every feed() so that
// a change (this node became primary) shows at the next option.
struct ExportInfo {
  std::string name;
  std::string description;
  std::uint64_t size_bytes = 0;
  bool writable = false;
  bool can_multi_conn = false;
  std::string unavailable_reason;  // empty when the device may serve
};

// The transmission flags for `info`.
std::uint16_t transmission_flags(const ExportInfo& info);

// What the transmission phase needs from the negotiation.
struct Session {
  std::uint64_t size_bytes = 0;
  bool writable = false;
  bool structured_replies = false;
  std::uint16_t transmission_flags = 0;
  bool operator==(const Session&) const = default;
};

enum class HandshakeState : std::uint8_t {
  client_flags,   // waiting for the client's 32-bit flags
  option_header,  // waiting for IHAVEOPT, option, length
  option_data,    // collecting an option's data
  option_skip,    // discarding an oversized option's data
  transmission,   // negotiated: requests follow
  closed,         // the connection must close once `to_send` is out
};

// Why a handshake ended without transmission.
enum class CloseReason : std::uint8_t {
  none,
  client_abort,    // NBD_OPT_ABORT (acknowledged)
  export_refused,  // NBD_OPT_EXPORT_NAME of an export that does not exist or is unavailable
  protocol_error,  // bad magic, unknown client flags, too many options...
};

struct HandshakeStep {
  std::size_t consumed = 0;  // bytes of the input used; the rest is not the handshake's
  Bytes to_send;
};

class Handshake {
 public:
  explicit Handshake(ExportInfo info);

  // The server's greeting: sent first, before any byte arrives.
  static Bytes greeting();

  void set_export(ExportInfo info) { info_ = std::move(info); }
  HandshakeStep feed(std::span<const std::uint8_t> bytes);

  HandshakeState state() const { return state_; }
  bool negotiating() const { return bytes_wanted() > 0; }
  // The bytes that complete the current unit (flags, option header, option data).
  std::size_t bytes_wanted() const;
  // Valid once state() == transmission.
  const Session& session() const;
  CloseReason close_reason() const { return close_reason_; }
  const std::string& close_message() const { return close_message_; }  // for the log
  std::size_t options_seen() const { return options_seen_; }

 private:
  void on_unit_complete(Bytes& out);
  void expect_option_header();
  void finish_option();
  void on_client_flags();
  void on_option_header(Bytes& out);
  void on_option(Bytes& out);
  void on_export_name(Bytes& out);
  void on_list(Bytes& out);
  void on_info(Bytes& out, bool go);
  void reply_info(Bytes& out, std::span<const std::uint16_t> requests);
  void enter_transmission();
  void close(CloseReason reason, std::string message);

  ExportInfo info_;
  HandshakeState state_ = HandshakeState::client_flags;
  Bytes unit_;                  // the bytes of the unit being collected
  std::size_t unit_bytes_ = 0;  // its full size
  std::uint32_t option_ = 0;    // the option being collected
  bool no_zeroes_ = false;
  bool structured_replies_ = false;
  std::size_t options_seen_ = 0;
  Session session_;
  CloseReason close_reason_ = CloseReason::none;
  std::string close_message_;
};

// Option replies, also used by tests: the header and `data`.
void append_option_reply(Bytes& out, std::uint32_t option, std::uint32_t type,
                         std::span<const std::uint8_t> data);
void append_option_error(Bytes& out, std::uint32_t option, std::uint32_t type,
                         std::string_view message);

}  // namespace keel::nbd
