// NbdConnection: one client of the NBD server, from the greeting to the close.
//
// Negotiation runs the pure Handshake (core/nbd/nbd_handshake.hpp), reading exactly the bytes it
// asks for. Then requests are read ahead and served concurrently: up to kMaxRequestsInFlight wait
// on the device while the next headers are read; replies go out in completion order, one
// gathered write at a time. A WRITE's payload is read straight into the fresh buffer that
// becomes its Payload; a READ's reply is sent from the buffer the device filled, header and data
// in one write, or, for a large read from a device that offers its file, by sendfile from the
// file straight to the socket (the page cache's bytes copied once, and no buffer held). Malformed
// or hostile input (bad magic, an oversized write, a broken negotiation) closes this connection
// only, logged at warn with the peer.
//
// Lifetime: owned by shared_ptr. Every pending socket handler and device completion holds one,
// so a completion that arrives after close() finds the connection (and its buffers) alive, sees
// it closed and drops its reply. What it shares with the server (device, counters) is held by
// NbdShared, which connections keep alive in turn.
//
// Thread-safety: none; the io_context thread only.
#pragma once

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/nbd/nbd_handshake.hpp"
#include "core/nbd/nbd_wire.hpp"
#include "io/block_device.hpp"
#include "io/stream_buffer.hpp"

namespace keel::io {

// A connection stops reading requests while its requests at the device and replies not yet
// written reach kMaxRequestsInFlight, or while the data buffers they hold reach this many bytes
// (a client that does not read its replies must not make the server hold gigabytes).
// Requests are received this many bytes at a time at most (a larger payload goes straight to
// its own buffer).
constexpr std::size_t kNbdReceiveBufferBytes = 128 * 1024;
// A client that has not finished negotiating by then is disconnected: connection slots are few,
// and one that connects and says nothing must not hold one.
constexpr std::chrono::milliseconds kNbdNegotiationTimeout{10000};
// Reads this large or larger are sent from the device's file with sendfile when it offers one.
constexpr std::uint32_t kZeroCopyReadBytes = 64 * 1024;
constexpr std::size_t kMaxConnectionBufferBytes = 4 * std::size_t{nbd::kMaximumPayloadBytes};
static_assert(kMaxConnectionBufferBytes >= nbd::kMaximumPayloadBytes, "one request always fits");

struct NbdServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  // over the connection limit
  std::uint64_t connections_open = 0;
  std::uint64_t accept_failures = 0;       // accepts that failed (out of descriptors), each retried
  std::uint64_t handshakes_completed = 0;  // connections that reached transmission
  std::uint64_t handshakes_refused = 0;    // closed by EXPORT_NAME of a missing/unavailable export
  std::uint64_t protocol_errors = 0;       // connections closed for malformed or hostile input
  std::array<std::uint64_t, nbd::kCommandKinds> requests{};  // indexed by command number
  std::uint64_t unknown_requests = 0;
  std::uint64_t bytes_read = 0;       // sent to clients by successful reads
  std::uint64_t zero_copy_reads = 0;  // of those reads, sent from the file by sendfile
  std::uint64_t bytes_written = 0;    // taken from clients by successful writes
  std::uint64_t error_replies = 0;    // replies carrying an error, from checks or from the device
  std::uint64_t device_errors = 0;    // of those, errors the device returned

  std::uint64_t request_count(nbd::Command command) const {
    return requests[static_cast<std::size_t>(command)];
  }
};

// What the server and its connections share; outlives the server while a connection lives.
struct NbdShared {
  NbdShared(BlockDevice& device_in, std::string name, std::string description_in)
      : device(device_in), export_name(std::move(name)), description(std::move(description_in)) {}

  nbd::ExportInfo export_info() const;

  BlockDevice& device;  // the server's owner keeps it alive until every completion has run
  std::string export_name;
  std::string description;
  NbdServerStats stats;
  std::function<void(std::uint64_t id)> on_closed;  // the server's; cleared when it goes away
};

class NbdConnection : public std::enable_shared_from_this<NbdConnection> {
 public:
  using Socket = asio::generic::stream_protocol::socket;

  NbdConnection(Socket socket, std::string peer, std::uint64_t id,
                std::shared_ptr<NbdShared> shared);

  void start();
  // Closes the socket at once; pending completions are dropped. Idempotent.
  void close();
  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  bool closed() const { return closed_; }

 private:
  // Bytes of a file sent after a reply's header (a large read, by sendfile). With structured
  // replies the data chunk goes without NBD_REPLY_FLAG_DONE, since sending it may still fail: a
  // NONE chunk ends the reply, or padding and an error chunk do.
  struct FileRange {
    int fd = -1;
    std::uint64_t offset = 0;
    std::uint32_t length = 0;
    std::uint64_t cookie = 0;
    bool structured = false;
  };
  // A reply: its header bytes, and a read's data sent from the device's buffer or a file. The
  // fixed-size heads of the data path are held inline (no allocation per reply); the handshake's
  // and error messages' heads, of any size, in long_head.
  static constexpr std::size_t kInlineHeadBytes = 32;
  struct Outgoing {
    std::array<std::uint8_t, kInlineHeadBytes> short_head{};
    std::size_t short_head_bytes = 0;
    Bytes long_head;
    std::shared_ptr<volume::Bytes> data;
    FileRange file;

    static Outgoing with_head(Bytes head) {
      Outgoing out;
      out.long_head = std::move(head);
      return out;
    }
    template <std::size_t N>
    static Outgoing with_head(const std::array<std::uint8_t, N>& head) {
      static_assert(N > 0 && N <= kInlineHeadBytes);
      Outgoing out;
      std::copy(head.begin(), head.end(), out.short_head.begin());
      out.short_head_bytes = N;
      return out;
    }
    asio::const_buffer head() const {
      return short_head_bytes > 0 ? asio::buffer(short_head.data(), short_head_bytes)
                                  : asio::buffer(long_head);
    }
  };

  void read_negotiation();
  void on_negotiation_bytes(std::size_t count);
  void pump();
  void receive_more();
  bool on_header(const Result<nbd::Request>& decoded);
  bool read_payload(const nbd::Request& request, nbd::Verdict verdict);
  void dispatch(const nbd::Request& request, const nbd::Verdict& verdict, volume::Payload payload);
  void execute(const nbd::Request& request, volume::Payload payload);
  void execute_read(const nbd::Request& request);
  void on_done(const nbd::Request& request, int error, std::shared_ptr<volume::Bytes> data);
  void reply_error(const nbd::Request& request, std::uint32_t error, const std::string& message);
  Outgoing read_reply_head(const nbd::Request& request) const;
  void send(Outgoing reply);
  void write_next();
  void after_write();
  void send_file(FileRange range);
  void send_file_failed(const FileRange& range, int error);
  void close_when_idle();
  bool may_read_more() const;
  bool payload_fits(const nbd::Request& request) const;
  void on_read_error(const asio::error_code& error);
  void fail(const std::string& why);

  Socket socket_;
  std::string peer_;
  std::uint64_t id_;
  std::shared_ptr<NbdShared> shared_;
  nbd::Handshake handshake_;
  nbd::Session session_;
  std::array<std::uint8_t, 1024> negotiation_buffer_{};
  asio::steady_timer negotiation_timer_;
  std::array<std::uint8_t, nbd::kRequestBytes> header_{};
  StreamBuffer in_{kNbdReceiveBufferBytes};  // requests received, not yet parsed
  std::deque<Outgoing> replies_;             // waiting to be written
  std::vector<Outgoing> writing_;            // in the write under way
  std::size_t in_flight_ = 0;                // requests at the device
  std::size_t buffered_bytes_ = 0;  // data held for requests at the device and unsent replies
  bool reading_ = false;  // a receive is under way (into in_, or a payload straight to its buffer)
  bool finishing_ = false;  // DISC, or a negotiation that ended: close once all is written
  bool closed_ = false;
};

// The NBD error value for an errno value from a device (EIO for anything unexpected).
std::uint32_t to_nbd_error(int error);

}  // namespace keel::io
