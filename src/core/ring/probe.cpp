// Reachability probes: every host periodically tells every other whom it hears. An operational
// ring merges with another ring only when every host of both hears every other one, so that a
// one-way link (A hears B, B does not hear A) leaves the rings apart and stable instead of
// forming a ring that breaks again at once.
#include <algorithm>

#include "core/ring/ring.hpp"

namespace keel::ring {

namespace {

TimeUs heard_window(const RingTunables& tunables) {
  return ms_to_us(3 * static_cast<std::uint64_t>(tunables.probe_interval_ms));
}

}  // namespace

bool Ring::is_member_of_current(NodeId node) const {
  return std::binary_search(current_.members.begin(), current_.members.end(), node);
}

std::vector<NodeId> Ring::heard_set(TimeUs now) const {
  std::vector<NodeId> heard;
  const TimeUs window = heard_window(tunables_);
  for (const auto& [node, at] : heard_at_) {
    if (at + window >= now) heard.push_back(node);
  }
  return heard;  // sorted: heard_at_ is an ordered map
}

void Ring::send_probe(TimeUs now) {
  wire::Probe probe;
  if (state_ == State::operational) {
    probe.ring = current_.id;
    probe.members = current_.members;
  } else {
    probe.members = {self_};
  }
  probe.heard = heard_set(now);
  send(kAllNodes, std::move(probe));
}

bool Ring::fully_connected(const std::vector<NodeId>& hosts, TimeUs now) const {
  const TimeUs window = heard_window(tunables_);
  for (NodeId host : hosts) {
    std::vector<NodeId> heard;
    if (host == self_) {
      heard = heard_set(now);
    } else {
      auto it = probes_.find(host);
      if (it == probes_.end() || it->second.at + window < now) return false;
      heard = it->second.probe.heard;
    }
    for (NodeId other : hosts) {
      if (other != host && !std::binary_search(heard.begin(), heard.end(), other)) return false;
    }
  }
  return true;
}

void Ring::on_probe(NodeId from, wire::Probe&& probe, TimeUs now) {
  const RingId ring = probe.ring;
  std::vector<NodeId> hosts = current_.members;
  hosts.insert(hosts.end(), probe.members.begin(), probe.members.end());
  hosts.push_back(from);
  probes_[from] = ProbeInfo{now, std::move(probe)};
  if (state_ != State::operational || ring == current_.id) return;
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  std::erase_if(hosts,
                [&](NodeId n) { return !std::binary_search(nodes_.begin(), nodes_.end(), n); });
  if (!fully_connected(hosts, now)) {
    mark(Mark::merge_refused_one_way);
    return;
  }
  mark(Mark::merge_started_by_probe);
  enter_gather(now);
  for (NodeId host : hosts) proc_.insert(host);
  send_join();
}

}  // namespace keel::ring
