// UdpTransport's sending half: sealing into the batch, and flushing it in runs (see the header).
#include <netinet/udp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "core/common/assert.hpp"
#include "io/clock.hpp"
#include "io/udp_transport.hpp"

namespace keel::io {

void UdpTransport::send(NodeId to, std::span<const std::uint8_t> plaintext) {
  queue(to, plaintext);
  flush();
}

void UdpTransport::queue(NodeId to, std::span<const std::uint8_t> plaintext) {
  if (closed_) return;
  if (to == kAllNodes && peers_.empty()) return;  // a cluster of one: nobody to tell
  const PeerStats* only = nullptr;                // the one peer `to` names
  if (to != kAllNodes) {
    auto it = std::find_if(peers_.begin(), peers_.end(),
                           [to](const PeerStats& peer) { return peer.id == to; });
    KEEL_ASSERT(it != peers_.end());  // the ring only addresses configured nodes
    only = &*it;
  }
  const bool to_group = to == kAllNodes && group_;
  const std::size_t datagrams = only != nullptr || to_group ? 1 : peers_.size();
  KEEL_ASSERT(datagrams <= kMaxBatchDatagrams);
  if (outgoing_.size() + datagrams > kMaxBatchDatagrams) flush();
  if (sealed_used_ == sealed_.size()) sealed_.emplace_back();
  Bytes& sealed = sealed_[sealed_used_];
  sealer_.seal_into(plaintext, sealed);
  KEEL_ASSERT(sealed.size() == plaintext.size() + kSealOverheadBytes);
  KEEL_ASSERT(sealed.size() <= max_sealed_bytes_);
  if (only != nullptr) {
    outgoing_.push_back(Outgoing{sealed_used_, &only->endpoint});
  } else if (to_group) {
    outgoing_.push_back(Outgoing{sealed_used_, &*group_});
  } else {
    for (const PeerStats& peer : peers_)
      outgoing_.push_back(Outgoing{sealed_used_, &peer.endpoint});
  }
  ++sealed_used_;
}

void UdpTransport::flush() {
  KEEL_ASSERT(outgoing_.size() <= kMaxBatchDatagrams);
  std::array<QueuedDatagram, kMaxBatchDatagrams> batch{};
  for (std::size_t i = 0; i < outgoing_.size(); ++i) {
    batch[i] = QueuedDatagram{outgoing_[i].to, sealed_[outgoing_[i].packet].size()};
  }
  plan_runs({batch.data(), outgoing_.size()}, !stats_.segmentation_refused, plan_);
  const DatagramPlan& plan = plan_;
  // One message per run: its datagrams' iovecs side by side, and the segment length when the
  // kernel is to cut it.
  std::array<iovec, kMaxBatchDatagrams> vectors{};
  std::array<mmsghdr, kMaxBatchDatagrams> messages{};
  union SegmentControl {
    char bytes[CMSG_SPACE(sizeof(std::uint16_t))];
    cmsghdr align;
  };
  std::array<SegmentControl, kMaxBatchDatagrams> controls{};
  for (std::size_t i = 0; i < plan.order.size(); ++i) {
    Bytes& sealed = sealed_[outgoing_[plan.order[i]].packet];
    vectors[i] = iovec{sealed.data(), sealed.size()};
  }
  for (std::size_t r = 0; r < plan.runs.size(); ++r) {
    const DatagramRun& run = plan.runs[r];
    msghdr& header = messages[r].msg_hdr;
    header.msg_iov = &vectors[run.first];
    header.msg_iovlen = run.count;
    const asio::ip::udp::endpoint* to = outgoing_[plan.order[run.first]].to;
    // sendmmsg() does not write through msg_name; the cast only drops asio's const.
    header.msg_name = const_cast<sockaddr*>(to->data());
    header.msg_namelen = static_cast<socklen_t>(to->size());
    if (run.count > 1) {
      header.msg_control = controls[r].bytes;
      header.msg_controllen = sizeof controls[r].bytes;
      cmsghdr* control = CMSG_FIRSTHDR(&header);
      control->cmsg_level = SOL_UDP;
      control->cmsg_type = UDP_SEGMENT;
      control->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      const auto segment = static_cast<std::uint16_t>(run.segment_bytes);
      std::memcpy(CMSG_DATA(control), &segment, sizeof segment);
    }
  }
  const int fd = unicast_.socket.native_handle();
  std::size_t done = 0;
  while (!closed_ && done < plan.runs.size()) {
    const int sent = ::sendmmsg(fd, &messages[done], static_cast<unsigned>(plan.runs.size() - done),
                                MSG_DONTWAIT);
    if (sent > 0) {
      for (std::size_t r = done; r < done + static_cast<std::size_t>(sent); ++r) {
        count_sent(plan.runs[r], *outgoing_[plan.order[plan.runs[r].first]].to);
      }
      done += static_cast<std::size_t>(sent);
      continue;
    }
    const int error = errno;
    if (error == EINTR) continue;
    if (error == EAGAIN && block_on_full_) {
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, 100);
      continue;
    }
    const DatagramRun& run = plan.runs[done];
    if (run.count > 1 && segmentation_refused(error)) {
      // This path cannot segment (a device without checksum offload, a smaller device MTU):
      // from now on every datagram goes on its own, this run's included. Logged once: the later
      // runs of this batch, planned before, are refused too.
      if (!stats_.segmentation_refused) {
        spdlog::info("UDP segmentation offload refused ({}); sending datagrams one by one",
                     std::strerror(error));
      }
      stats_.segmentation_refused = true;
      messages[done].msg_hdr.msg_control = nullptr;
      messages[done].msg_hdr.msg_controllen = 0;
      send_one_by_one(messages[done].msg_hdr, *outgoing_[plan.order[run.first]].to);
      ++done;
      continue;
    }
    // This run is lost (the ring retransmits); the rest go on.
    count_send_error(*outgoing_[plan.order[run.first]].to, error);
    ++done;
  }
  outgoing_.clear();
  sealed_used_ = 0;
}

bool UdpTransport::segmentation_refused(int error) {
  // EMSGSIZE: a segment and its headers exceed the device's MTU, which one datagram alone may
  // cross by fragmenting; the rest: no segmentation on this socket, route or device.
  return error == EIO || error == EINVAL || error == EOPNOTSUPP || error == ENOPROTOOPT ||
         error == EMSGSIZE;
}

void UdpTransport::count_sent(const DatagramRun& run, const asio::ip::udp::endpoint& to) {
  stats_.datagrams_sent += run.count;
  if (run.count > 1) ++stats_.segmented_sends;
  if (group_ && &to == &*group_) stats_.group_datagrams_sent += run.count;
}

// Sends each datagram of `header` (one per iovec, all to `to`) in its own sendmsg(), waiting
// for room when the transport waits on a full buffer.
void UdpTransport::send_one_by_one(const msghdr& header, const asio::ip::udp::endpoint& to) {
  const int fd = unicast_.socket.native_handle();
  for (std::size_t i = 0; i < header.msg_iovlen && !closed_; ++i) {
    msghdr single = header;
    single.msg_iov = &header.msg_iov[i];
    single.msg_iovlen = 1;
    for (;;) {
      if (::sendmsg(fd, &single, MSG_DONTWAIT) >= 0) {
        count_sent(DatagramRun{i, 1, header.msg_iov[i].iov_len}, to);
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN && block_on_full_) {
        pollfd writable{fd, POLLOUT, 0};
        ::poll(&writable, 1, 100);
        continue;
      }
      count_send_error(to, errno);
      break;
    }
  }
}

void UdpTransport::count_send_error(const asio::ip::udp::endpoint& to, int error) {
  ++stats_.send_errors;
  std::uint64_t suppressed = 0;
  if (send_log_.allow(monotonic_now_us(), suppressed)) {
    spdlog::debug("send to {} failed: {}{}", endpoint_text(to), std::strerror(error),
                  suppressed ? " (" + std::to_string(suppressed) + " similar suppressed)" : "");
  }
}

}  // namespace keel::io
