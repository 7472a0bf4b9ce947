// Datagram runs: how a batch of datagrams leaves in as few sends as the kernel allows.
//
// Linux can cut one large send into datagrams itself (UDP generic segmentation offload: the
// UDP_SEGMENT control message gives the size of each piece). The piece is then made once per
// send, not once per datagram, along the whole path below the socket: IP output, the device, and
// on a bridge between namespaces also the receiving side's input up to its socket, which sees
// ordinary datagrams. That per-datagram path is most of what a ring host spends its CPU on when
// it moves large messages (a message of 8 KiB is six datagrams to every other node).
//
// plan_runs() orders a batch and cuts it into runs. A run is a few datagrams to one destination,
// each as long as the first except the last, which may be shorter (what UDP_SEGMENT allows), at
// most kMaxRunDatagrams of them and kMaxRunBytes in all. Datagrams to one destination keep the
// order they were queued in; destinations take turns in the order of their last datagram, so
// that the destination of the batch's last datagram (a token visit ends with the token) has it
// after every other destination has had its share: the next token holder's new messages do
// not overtake this visit's on their way to a third host. With segmentation off, every datagram
// is a run of its own and the order is the queued one.
//
// Pure: no sockets, no system calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace keel::io {

// Segments per UDP_SEGMENT send: the kernel's limit (UDP_MAX_SEGMENTS) is 64 on older kernels.
constexpr std::size_t kMaxRunDatagrams = 64;
// Bytes per run: one IP packet's payload, less the UDP header and the larger (IPv6) IP header.
constexpr std::size_t kMaxRunBytes = 65535 - 8 - 40;

struct QueuedDatagram {
  const void* destination = nullptr;  // compared by identity: one pointer per destination
  std::size_t bytes = 0;
};

struct DatagramRun {
  std::size_t first = 0;          // index into the plan's order
  std::size_t count = 0;          // datagrams in the run, at least one
  std::size_t segment_bytes = 0;  // every datagram's length but the last's
};

struct DatagramPlan {
  std::vector<std::size_t> order;         // indices into the batch, in sending order
  std::vector<DatagramRun> runs;          // consecutive stretches of `order`
  std::vector<const void*> destinations;  // working space, in the order they are served
};

DatagramPlan plan_runs(std::span<const QueuedDatagram> batch, bool segment);
// The same into `plan`, whose vectors keep their capacity: a sender plans every token visit.
void plan_runs(std::span<const QueuedDatagram> batch, bool segment, DatagramPlan& plan);

}  // namespace keel::io
