// The replication link's wire form for the simulated link: VolumeWorld sends every PeerMessage
// through the codec as io/replication_link.cpp does, so that the seeds exercise encode_header(),
// decode_frame_header(), decode() and decode_split() (core/volume/peer_messages.hpp) on every
// message the replicas exchange, not only the fuzz target's inputs.
//
// On the real link a frame is encode_header()'s bytes, followed for DataWrite and ResyncData by
// the payload, sent from the request's own buffer. The receiver reads the frame header, then the
// fixed fields (payload_offset() of them for the payload types, the whole body for the others),
// then the rest of the body as the payload, and decodes with decode_split() or decode() against
// its volume's size. to_wire() and from_wire() do the same without a socket; from_wire() also
// re-encodes what it decoded, which must give back the bytes sent (the codec's encodings are
// canonical, so a difference is a field one side drops or misplaces).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "core/common/result.hpp"
#include "core/volume/peer_messages.hpp"

namespace keel::sim {

struct WireFrame {
  volume::Bytes head;       // the frame header and the fixed fields
  volume::Payload payload;  // DataWrite and ResyncData: the body's tail (may be empty)
};

WireFrame to_wire(const volume::PeerMessage& message);

// The message the peer's link would deliver, or why the frame would not carry it: a header
// announcing other lengths than were sent (the stream would lose its framing), a frame that does
// not decode, or one whose decoded message encodes to other bytes.
Result<volume::PeerMessage> from_wire(const WireFrame& frame, std::uint64_t volume_bytes);

}  // namespace keel::sim
