#include "io/datagram_runs.hpp"

#include <algorithm>

#include "core/common/assert.hpp"

namespace keel::io {

DatagramPlan plan_runs(std::span<const QueuedDatagram> batch, bool segment) {
  DatagramPlan plan;
  plan_runs(batch, segment, plan);
  return plan;
}

void plan_runs(std::span<const QueuedDatagram> batch, bool segment, DatagramPlan& plan) {
  plan.order.clear();
  plan.runs.clear();
  if (!segment) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      plan.order.push_back(i);
      plan.runs.push_back(DatagramRun{i, 1, batch[i].bytes});
    }
    return;
  }
  // Destinations in the order of their last datagram; a batch names only a few.
  std::vector<const void*>& destinations = plan.destinations;
  destinations.clear();
  for (std::size_t i = batch.size(); i-- > 0;) {
    bool known = false;
    for (const void* destination : destinations) {
      known = known || destination == batch[i].destination;
    }
    if (!known) destinations.push_back(batch[i].destination);
  }
  std::reverse(destinations.begin(), destinations.end());
  constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  for (const void* destination : destinations) {
    std::size_t open = kNone;  // the run this destination's next datagram may join
    std::size_t open_bytes = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].destination != destination) continue;
      const std::size_t bytes = batch[i].bytes;
      KEEL_ASSERT(bytes > 0 && bytes <= kMaxRunBytes);
      plan.order.push_back(i);
      if (open != kNone && plan.runs[open].count < kMaxRunDatagrams &&
          bytes <= plan.runs[open].segment_bytes && open_bytes + bytes <= kMaxRunBytes) {
        ++plan.runs[open].count;
        open_bytes += bytes;
      } else {
        plan.runs.push_back(DatagramRun{plan.order.size() - 1, 1, bytes});
        open = plan.runs.size() - 1;
        open_bytes = bytes;
      }
      // Only a datagram of the full segment length leaves the run open for another.
      if (bytes < plan.runs[open].segment_bytes) open = kNone;
    }
  }
}

}  // namespace keel::io
