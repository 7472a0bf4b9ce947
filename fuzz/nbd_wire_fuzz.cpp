// Fuzzes the NBD server's pure protocol code: the negotiation state machine and the request
// reader. The first input byte picks the export's state (writable, structured, available) and
// how the rest is cut into fragments; the rest is the client's byte stream. Checks: nothing
// crashes; the handshake never consumes past a GO, never wants bytes once done, and never sends
// an option reply longer than its bounds; the request reader consumes every byte until it stops,
// and every request it executes lies within the export.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "core/nbd/nbd_handshake.hpp"
#include "core/nbd/nbd_wire.hpp"

namespace {

using namespace keel::nbd;

constexpr std::uint64_t kExportBytes = 1ull << 30;

void check(bool condition) {
  if (!condition) std::abort();
}

// Feeds `stream` to a handshake in fragments of `piece` bytes; returns the bytes after it ends.
std::span<const std::uint8_t> negotiate(Handshake& handshake, std::span<const std::uint8_t> stream,
                                        std::size_t piece) {
  std::size_t at = 0;
  while (at < stream.size() && handshake.negotiating()) {
    const std::size_t n = std::min(piece, stream.size() - at);
    const auto step = handshake.feed(stream.subspan(at, n));
    check(step.consumed <= n);
    check(step.consumed == n || !handshake.negotiating());
    // A reply is bounded: option replies carry at most a name, a description or a message.
    check(step.to_send.size() <= 8 * (kOptionReplyHeaderBytes + kMaxStringBytes) +
                                     kExportNameTrailerBytes + kExportNameZeroBytes);
    at += step.consumed;
    if (step.consumed < n) break;
  }
  check(handshake.options_seen() <= kMaxOptionsPerHandshake + 1);
  return stream.subspan(at);
}

void read_requests(const Session& session, std::span<const std::uint8_t> stream,
                   std::size_t piece) {
  RequestReader reader(session);
  std::vector<ReadRequest> requests;
  for (std::size_t at = 0; at < stream.size() && !reader.stopped(); at += piece) {
    const std::size_t n = std::min(piece, stream.size() - at);
    const std::size_t consumed = reader.feed(stream.subspan(at, n), requests);
    check(consumed == n || reader.stopped());
  }
  for (const ReadRequest& request : requests) {
    if (request.verdict.action != Action::execute) continue;
    const Request& r = request.request;
    if (r.is(Command::flush)) continue;
    check(r.length > 0 && r.offset <= session.size_bytes &&
          r.length <= session.size_bytes - r.offset);
    check(!r.is(Command::read) || r.length <= kMaximumPayloadBytes);
    check(session.writable || r.is(Command::read));
    if (r.is(Command::write)) check(request.payload.size() == r.length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::span<const std::uint8_t> stream(data + 1, size - 1);
  const std::size_t piece = 1 + (control >> 4);  // 1 to 16 bytes per fragment

  ExportInfo info{"vol",
                  "fuzzed volume",
                  kExportBytes,
                  (control & 1) != 0,
                  (control & 2) != 0,
                  (control & 4) != 0 ? "this node is secondary" : ""};
  Handshake handshake(info);
  const auto rest = negotiate(handshake, stream, piece);
  if (handshake.state() == HandshakeState::transmission) {
    check(handshake.bytes_wanted() == 0);
    check(info.unavailable_reason.empty());
    read_requests(handshake.session(), rest, piece);
  }
  // The request reader on its own, so that it is fuzzed without a negotiation in front.
  if ((control & 8) != 0) {
    read_requests(Session{kExportBytes, (control & 1) != 0, (control & 2) != 0, 0}, stream, piece);
  }
  return 0;
}
