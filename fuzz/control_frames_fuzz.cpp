// Fuzzes the control socket's binary frames: the parser must never crash or read past its input,
// a complete frame must account for exactly the bytes it claims, and a message event the decoder
// accepts must encode back to the same frame.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/control_frames.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using keel::agent::FrameParse;
  std::span<const std::uint8_t> input(data, size);
  // Every frame in the input, as a session would take them; a small bound exercises refusals.
  for (std::size_t max_frame_bytes : {std::size_t{64}, std::size_t{1} << 20}) {
    for (std::span<const std::uint8_t> rest = input;;) {
      const FrameParse parse = keel::agent::parse_frame(rest, max_frame_bytes);
      if (parse.status != FrameParse::Status::complete) break;
      if (parse.consumed > rest.size() || parse.consumed != 5 + parse.frame.body.size() ||
          parse.frame.body.data() != rest.data() + 5) {
        std::abort();
      }
      if (parse.frame.type == static_cast<std::uint8_t>(keel::agent::FrameType::message_event)) {
        if (auto event = keel::agent::decode_message_event(parse.frame.body)) {
          keel::ring::GroupMessage message{
              "g", event->origin, event->safe, {event->payload.begin(), event->payload.end()}};
          keel::ring::DeliveredMessage carrier{event->origin, event->ring, event->seq,
                                               event->index,  event->safe, {}};
          const std::string again = keel::agent::message_event_frame(message, carrier);
          if (again.size() != parse.consumed ||
              again.compare(0, again.size(), reinterpret_cast<const char*>(rest.data()),
                            parse.consumed) != 0) {
            std::abort();
          }
        }
      }
      rest = rest.subspan(parse.consumed);
    }
  }
  return 0;
}
