// UdpTransport: keel's packets on UDP, one socket bound to this node's address and port, every
// datagram sealed under the cluster key (sealed_packet.hpp).
//
// send() seals a ring packet once and sends it unicast to one node. A packet for every node
// (kAllNodes) goes, by the mode: unicast, once to each other configured node; multicast or
// broadcast, once to the group address at the cluster port, which every node receives on a second
// socket bound to that address (see bind() for why a second socket). queue() does the same but
// holds the datagrams until flush() (or until kMaxBatchDatagrams wait), which sends them all with
// one sendmmsg(), runs of equal datagrams to one destination as single sends the kernel cuts up
// (datagram_runs.hpp; each destination's datagrams in the order queued): the ring driver queues
// everything one event produces (a token visit: up to a window of messages to every node, then
// the token) and flushes once. A kernel or device that refuses such a send turns it off for good
// (logged once), and the datagrams go one by one. Receiving sockets ask for such runs whole
// (UDP_GRO) and cut them apart themselves. The receive
// loop waits for a socket to be readable, takes up to kMaxBatchDatagrams datagrams per recvmmsg()
// until it is drained, opens each and hands (sender, plaintext) to the receiver; anything that
// fails to open, or that authenticates as a node other than the one configured at its source
// address, is dropped, counted per reason and per source, and logged at debug level with a rate
// limit. Our own group datagrams coming back (a broadcast always loops back) are ignored before
// opening. A send that fails (full socket buffer, unreachable network) is counted and logged the
// same way: the ring retransmits, so a lost datagram is never fatal.
//
// Invariant: no datagram exceeds the MTU. open() refuses a configuration whose largest ring packet
// plus the sealing overhead and the IP and UDP headers would not fit, and send() asserts it.
//
// Thread-safety: none. All calls and the receive handler run on the io_context's one thread; the
// io_context must not run this transport's handlers after it is destroyed.
#pragma once

#include <sys/socket.h>

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/common/result.hpp"
#include "core/common/types.hpp"
#include "io/datagram_runs.hpp"
#include "io/datagram_sizes.hpp"  // max_sealed_bytes, max_ring_packet_bytes
#include "io/sealed_packet.hpp"

namespace keel::io {

// Datagrams per sendmmsg()/recvmmsg() call.
constexpr std::size_t kMaxBatchDatagrams = 64;
// Per recvmmsg() on a socket that takes whole runs (each slot as large as an IP packet).
constexpr std::size_t kMaxRunsPerReceive = 16;
static_assert(kMaxRunsPerReceive <= kMaxBatchDatagrams);

// A configured node as the transport sees it.
struct TransportNode {
  NodeId id = kNoNode;
  std::string address;  // IPv4 or IPv6 literal
  std::uint16_t port = 0;
};

// Datagrams from one source dropped before reaching the ring, by reason, as OpenStats counts
// them; wrong_address counts packets that authenticated as another node than the one configured
// at their source address (checked by the opener, before the sender's replay window).
struct DropCounts {
  std::uint64_t malformed = 0;
  std::uint64_t forged = 0;
  std::uint64_t replayed = 0;
  std::uint64_t unknown_sender = 0;
  std::uint64_t wrong_address = 0;
  std::uint64_t total() const;
};

struct PeerStats {
  NodeId id = kNoNode;
  asio::ip::udp::endpoint endpoint;
  std::uint64_t packets_opened = 0;
  std::optional<TimeUs> last_heard_us;  // monotonic time of the last packet that opened
  DropCounts dropped;
};

struct TransportStats {
  std::uint64_t datagrams_sent = 0;
  std::uint64_t group_datagrams_sent = 0;  // of those, sent once to the group for every node
  std::uint64_t segmented_sends = 0;       // sends the kernel cut into several datagrams
  // The kernel refused a segmented send: from then on every datagram goes on its own
  // (datagram_runs.hpp); until then runs of datagrams go as one send for the kernel to cut.
  bool segmentation_refused = false;
  std::uint64_t own_datagrams_ignored = 0;  // our own group datagrams, looped back to us
  std::uint64_t send_errors = 0;            // datagrams the kernel refused (counted, not retried)
  std::uint64_t receive_errors = 0;         // failed receive calls (the loop goes on)
  DropCounts dropped_from_unconfigured;     // datagrams from addresses outside the config
  int receive_buffer_bytes = 0;             // the socket's receive buffer, as granted
};

// How a packet for every node leaves: one datagram per node, or one to a group address.
enum class TransportMode { unicast, multicast, broadcast };

struct TransportOptions {
  NodeId self = kNoNode;
  std::vector<TransportNode> nodes;  // the whole cluster, including self
  std::uint32_t mtu = 1500;
  std::size_t max_plaintext_bytes = 0;  // the largest packet send() will be given
  ClusterKey key{};
  std::uint64_t epoch = 0;  // the sealer's epoch: realtime microseconds at start
  TransportMode mode = TransportMode::unicast;
  // Multicast: the group (IPv4 or IPv6). Broadcast: the subnet's IPv4 broadcast address. Every
  // node's port must then be the same (the config checks it): group datagrams go to group:port.
  std::string group{};
  int multicast_ttl = 1;  // multicast hops; 1 keeps the ring's packets on the local link
  // Replay floors: the highest epoch a previous run saw from each peer (io/boot_epoch.hpp).
  std::map<NodeId, std::uint64_t> peer_epoch_floors{};
  // Called when a peer's packets first carry a higher epoch than any seen (it restarted), so
  // that the caller can record it.
  std::function<void(NodeId peer, std::uint64_t epoch)> on_peer_epoch{};
};

// "address:port", for messages.
std::string endpoint_text(const asio::ip::udp::endpoint& endpoint);

// Asks for `bytes` of socket buffer on `fd` (receive or send), past net.core.rmem_max/wmem_max
// when this process may (CAP_NET_ADMIN, as root), else within them; returns the size granted.
int enlarge_socket_buffer(int fd, bool receive, int bytes);

class UdpTransport {
 public:
  using Receiver = std::function<void(NodeId from, std::span<const std::uint8_t> plaintext)>;

  // Resolves every node's endpoint and binds this node's one (and the group's, joining a multicast
  // group); fails with a readable message.
  static Result<std::unique_ptr<UdpTransport>> open(asio::io_context& io, TransportOptions options);

  // Starts the receive loop; `receiver` is called for every packet that opens.
  void start(Receiver receiver);
  // Seals `plaintext` and sends it to `to`, or to every other node for kAllNodes.
  void send(NodeId to, std::span<const std::uint8_t> plaintext);
  // As send(), but the datagrams wait for flush() (earlier ones go out if the batch fills).
  void queue(NodeId to, std::span<const std::uint8_t> plaintext);
  // Sends every queued datagram, in the order queued.
  void flush();
  // Normally a send that finds the socket buffer full is dropped (the ring retransmits); at
  // shutdown the last packets (the ring's leave) must go out, so sends then wait for room.
  void wait_on_full_buffer();
  // Stops receiving and closes the sockets. Idempotent.
  void close();

  asio::ip::udp::endpoint local_endpoint() const { return local_; }
  const OpenStats& open_stats() const { return opener_.stats(); }
  const TransportStats& stats() const { return stats_; }
  const std::vector<PeerStats>& peers() const { return peers_; }  // every other node, by id

 private:
  UdpTransport(asio::io_context& io, const TransportOptions& options,
               const std::vector<asio::ip::udp::endpoint>& endpoints, std::size_t self_index,
               std::optional<asio::ip::udp::endpoint> group);

  // A socket that receives, with room for one batch of datagrams (allocated at the first
  // receive). Each buffer is one byte larger than any datagram of this cluster, or, on a socket
  // that takes whole runs, than any IP packet: a longer datagram shows as truncated or too long.
  struct Inlet {
    explicit Inlet(asio::io_context& io) : socket(io) {}
    asio::ip::udp::socket socket;
    std::unique_ptr<std::uint8_t[]> buffers;
    std::size_t buffer_bytes = 0;
    bool takes_runs = false;  // UDP_GRO: runs arrive whole (see accept_runs())
  };
  // A datagram waiting for flush(): its sealed bytes in sealed_[packet], its destination.
  struct Outgoing {
    std::size_t packet = 0;
    const asio::ip::udp::endpoint* to = nullptr;
  };

  class LogLimiter {
   public:
    // True when a message may be logged now; every `period` the count of suppressed ones is
    // returned through `suppressed` (once) so the caller can report it.
    bool allow(TimeUs now, std::uint64_t& suppressed);

   private:
    TimeUs window_start_ = 0;
    std::uint32_t logged_ = 0;
    std::uint64_t suppressed_ = 0;
  };

  Result<Ok> bind();
  Result<Ok> set_group_send_options();
  Result<Ok> bind_group();
  void accept_runs(Inlet& inlet);
  void receive_next(Inlet& inlet);
  void drain(Inlet& inlet);
  static std::size_t run_segment_bytes(const msghdr& header);
  void on_received(const asio::ip::udp::endpoint& source, std::span<const std::uint8_t> bytes);
  void on_oversized(const asio::ip::udp::endpoint& source, std::size_t size);
  void on_datagram(const asio::ip::udp::endpoint& source, std::span<const std::uint8_t> bytes);
  void count_drop(PeerStats* peer, const OpenStats& before);
  void log_drop(const std::string& why);
  void count_send_error(const asio::ip::udp::endpoint& to, int error);
  static bool segmentation_refused(int error);
  void count_sent(const DatagramRun& run, const asio::ip::udp::endpoint& to);
  void send_one_by_one(const msghdr& header, const asio::ip::udp::endpoint& to);
  PeerStats* peer_at(const asio::ip::udp::endpoint& endpoint);

  NodeId self_;
  asio::ip::udp::endpoint local_;
  std::size_t max_sealed_bytes_;
  TransportMode mode_;
  int multicast_ttl_;
  Inlet unicast_;  // bound to this node's address: sends everything, receives unicast
  // Multicast and broadcast: the group's address at the cluster port, and a receive-only socket
  // bound to it.
  std::optional<asio::ip::udp::endpoint> group_;
  std::unique_ptr<Inlet> group_inlet_;
  PacketSealer sealer_;
  PacketOpener opener_;
  std::function<void(NodeId, std::uint64_t)> on_peer_epoch_;
  std::vector<PeerStats> peers_;
  Receiver receiver_;
  TransportStats stats_;
  LogLimiter receive_log_;
  LogLimiter send_log_;
  // Sealed packets of the batch (their capacity is kept from batch to batch) and the datagrams.
  std::vector<Bytes> sealed_;
  std::size_t sealed_used_ = 0;
  std::vector<Outgoing> outgoing_;
  bool block_on_full_ = false;
  DatagramPlan plan_;  // flush()'s, kept for its capacity
  bool closed_ = false;
};

}  // namespace keel::io
