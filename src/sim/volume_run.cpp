// One run of the volume simulation (volume_scenario.hpp): the workload, failover, the faults of
// the plan, the checks after every event, the heal and the convergence check.
#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <set>

#include "core/common/assert.hpp"
#include "sim/volume_model.hpp"
#include "sim/volume_scenario.hpp"
#include "sim/volume_verify_watch.hpp"

namespace keel::sim {

namespace {

using volume::DiskState;
using volume::LinkState;
using volume::Role;

constexpr TimeUs kFailoverTickUs = 20'000;
constexpr TimeUs kWorkloadAfterHealUs = 300'000;
constexpr TimeUs kForceRetryUs = 10'000;
// An operator starting a verify retries while the link is not connected and in sync.
constexpr TimeUs kVerifyRetryUs = 20'000;
constexpr TimeUs kVerifyGiveUpUs = 500'000;
// Past the world's break notice time after the cut: a cut-off node knows by then.
constexpr TimeUs kForceGiveUpUs = kBreakNoticeMaxUs + 50'000;

bool replicating(LinkState link) {
  return link == LinkState::Connected || link == LinkState::SyncSource ||
         link == LinkState::SyncTarget;
}

std::string status_text(const VolumeWorld& world, int node) {
  if (!world.up(node)) return "node " + std::to_string(node + 1) + " down";
  const volume::ReplicaStatus s = world.replica(node).status();
  return "node " + std::to_string(node + 1) + " " + std::string(to_string(s.role)) + "/" +
         std::string(to_string(s.disk)) + "/" + std::string(to_string(s.link)) +
         (s.suspended ? " suspended" : "") + ", out of sync " +
         std::to_string(s.out_of_sync_bytes) + ", in flight " + std::to_string(s.writes_in_flight) +
         (s.refused_reason.empty() ? "" : ": ") + s.refused_reason;
}

class VolumeRun {
 public:
  VolumeRun(const VolumePlan& plan, std::ostream* trace_out)
      : plan_(plan), world_(plan.world), model_(world_.blocks()), rng_(Rng(plan.seed).fork(7)) {
    world_.trace().set_output(trace_out);
    world_.on_complete = [this](int node, const volume::Complete& completion) {
      on_complete(node, completion);
    };
    world_.after_event = [this] { check(); };
    world_.on_flush_failed = [this](int node) { flush_failed(node); };
  }

  VolumeRunResult run() {
    for (const VolumeFault& fault : plan_.faults) schedule(fault);
    world_.at(plan_.fault_phase_us, "heal", [this] { heal(); });
    world_.at(0, "", [this] { workload_tick(); });
    world_.at(0, "", [this] { failover_tick(); });
    const TimeUs deadline = plan_.fault_phase_us + kVolumeSettleBoundUs;
    while (!done_ && world_.step()) {
      if (world_.now() > deadline) {
        world_.fail("no convergence " + std::to_string(kVolumeSettleBoundUs / 1'000'000) +
                    " s after the heal: " + status_text(world_, 0) + "; " + status_text(world_, 1));
      }
    }
    if (!done_ && !world_.failed()) world_.fail("the simulation ran out of events");
    VolumeRunResult result;
    result.seed = plan_.seed;
    result.violation = world_.violation();
    result.steps = world_.steps();
    result.messages = world_.messages();
    result.acked_writes = model_.acked_writes();
    result.simulated_us = world_.now();
    result.coverage = world_.coverage();
    if (result.violation) result.trace_tail = world_.trace().tail();
    return result;
  }

 private:
  NodeId id(int node) const { return static_cast<NodeId>(node + 1); }
  bool primary(int node) const {
    return world_.up(node) && world_.replica(node).status().role == Role::Primary;
  }

  // ---- faults ----

  void schedule(const VolumeFault& fault) {
    world_.at(fault.at, describe(fault), [this, fault] { start_fault(fault); });
  }

  void start_fault(const VolumeFault& fault) {
    const int node = fault.node;
    const std::vector<NodeId> others = {id(1 - node), kWitness};
    switch (fault.kind) {
      case VolumeFaultKind::link_break:
        world_.break_link("fault: link break");
        return;
      case VolumeFaultKind::witness_partition:
        world_.set_groups({{1, 2}, {kWitness}});
        break;
      case VolumeFaultKind::isolate:
        world_.set_groups({{id(node)}, others});
        break;
      case VolumeFaultKind::process_crash:
      case VolumeFaultKind::power_loss:
        crash(node, fault.kind == VolumeFaultKind::power_loss);
        world_.at(world_.now() + fault.duration, "restart node " + std::to_string(id(node)),
                  [this, node] {
                    if (!healed_) world_.restart(node);
                  });
        return;
      case VolumeFaultKind::forced_split:
        if (forced_ >= 0 || primary(node) || !primary(1 - node) || !world_.up(node)) return;
        world_.set_groups({{id(node)}, others});
        world_.at(world_.now() + 50'000, "",
                  [this, node, until = world_.now() + kForceGiveUpUs] { force(node, until); });
        break;
      case VolumeFaultKind::disk_errors:
        world_.fail_disk(node, fault.share, world_.now() + fault.duration);
        return;
      case VolumeFaultKind::verify:
        start_verify(world_.now() + kVerifyGiveUpUs);
        return;
      case VolumeFaultKind::witness_crash:
        world_.crash_witness();
        world_.at(world_.now() + fault.duration, "restart the witness", [this] {
          if (!healed_) world_.restart_witness();
        });
        return;
      case VolumeFaultKind::switchover:
        // failover_tick() promotes the other node once this one is secondary.
        if (forced_ >= 0 || healed_ || !world_.up(target_) || !primary(target_)) return;
        if (world_.demote(target_).ok()) hit(world_.coverage(), VolumeMark::switchover);
        return;
    }
    world_.at(world_.now() + fault.duration, "", [this] {
      if (!healed_) world_.set_groups({{1, 2, kWitness}});
    });
  }

  void start_verify(TimeUs until) {
    const int node = target_;
    const bool ready = primary(node) && world_.up(1 - node) &&
                       world_.replica(node).status().link == LinkState::Connected;
    if (!ready || !world_.start_verify(node).ok()) {
      if (world_.now() + kVerifyRetryUs <= until) {
        world_.at(world_.now() + kVerifyRetryUs, "", [this, until] { start_verify(until); });
      }
      return;
    }
    verify_.started(world_, model_, node);
  }

  // A primary without an UpToDate peer is the volume's only full copy (docs/volume.md, "Failure
  // cases"): like a local disk, a power loss there loses what was not flushed, even the writes
  // the peer holds, since an Inconsistent peer is resynced from it (seed 846713: the peer's
  // disk failed a write, then the primary lost power). So is a secondary that recorded its peer
  // outdated, unless that peer is up as primary or UpToDate (the record may be one whose
  // withdrawal a crash kept from its metadata): the outdated copy does not count until a resync
  // (seed 1115871: the primary crashed alone, restarted as secondary and lost power; the outdated
  // peer still held an unflushed write acknowledged before the split, and the resync from the
  // survivor, the only full copy, overwrote it).
  bool alone(int node) const {
    if (!primary(node)) {
      if (!world_.replica(node).status().peer_outdated) return false;
      const int peer = 1 - node;
      return !world_.up(peer) ||
             (!primary(peer) && world_.replica(peer).status().disk != DiskState::UpToDate);
    }
    const int peer = 1 - node;
    if (!replicating(world_.replica(node).status().link)) return true;
    // A peer that is down counts as in sync (it survived the primary, within its boot) if its
    // copy was UpToDate: one that went down Inconsistent, in the middle of a resync, comes back
    // as the resync's target (seed 11374 with --witness-crashes).
    if (!world_.up(peer)) return world_.saved_disk(peer) != DiskState::UpToDate;
    return world_.replica(peer).status().disk != DiskState::UpToDate;
  }

  void crash(int node, bool power) {
    if (!world_.up(node)) return;
    const bool alone = this->alone(node);
    world_.crash(node, power);
    model_.abandon(node);
    outstanding_[node] = 0;
    if (power) model_.power_loss(node, world_.now(), alone);
  }

  // A failed flush may drop the cached writes it covered (SimDisk::fail_flush()). A primary
  // whose peer stands in gives way to it, so the volume keeps them (unless the peer lost them
  // to a power loss too); a primary without one is the volume's only full copy, and like a local
  // disk it loses them, as in a power loss alone.
  // On any other copy the failure is that copy's own (the primary holds the writes).
  // A primary that gives way may find its peer's disk failed too before it is done (the core's
  // abandon_step_down()): it then keeps the volume, UpToDate, and the loss is the volume's after
  // all, from the time of the failure. Resolved by watch_step_downs().
  void flush_failed(int node) {
    if (!primary(node)) return;
    const volume::ReplicaStatus s = world_.replica(node).status();
    const bool peer_stands_in =
        s.link == LinkState::Connected && s.peer_disk == DiskState::UpToDate;
    if (world_.options().mode != volume::Mode::Sync || !peer_stands_in) {
      model_.power_loss(node, world_.now(), /*alone=*/true);
      return;
    }
    // The peer holds the writes, unless it lost power since (seed 1185408: before this node
    // heard that its link was gone).
    model_.cache_dropped(node, world_.now());
    if (!giving_way_since_[node]) giving_way_since_[node] = world_.now();
  }

  // A primary that did not step down at once keeps no excuse: its next flush reported done is
  // checked against every write acknowledged before it.
  void watch_step_downs() {
    for (int node = 0; node < 2; ++node) {
      if (!giving_way_since_[node]) continue;
      if (!world_.up(node)) {
        giving_way_since_[node].reset();  // its restart resyncs its hot extents from the peer
        seen_giving_way_[node] = false;
        continue;
      }
      const volume::ReplicaStatus s = world_.replica(node).status();
      if (s.stepping_down) {
        seen_giving_way_[node] = true;
        continue;
      }
      if (seen_giving_way_[node] && s.disk == DiskState::UpToDate) {
        model_.power_loss(node, *giving_way_since_[node], /*alone=*/true);  // abandoned
      }
      giving_way_since_[node].reset();
      seen_giving_way_[node] = false;
    }
  }

  // A forced promotion of a replica cut off from the primary: a split brain on purpose. Its own
  // writes are not the model's (the primary keeps the workload); the heal discards them, unless
  // the primary acknowledged nothing apart, when no split brain is seen and the forced side's
  // history legitimately continues (the model accepts its writes where nothing acknowledged
  // came after them).
  // The operator forces it once the node shows its link gone (a side hears of a broken
  // connection within the world's break notice time): a node that still believes itself
  // connected to a secondary would be promoted without --force, and two promotions racing on
  // one link are not what this fault is about.
  void force(int node, TimeUs until) {
    if (forced_ >= 0 || healed_ || !world_.up(node) || primary(node)) return;
    if (replicating(world_.replica(node).status().link)) {
      if (world_.now() + kForceRetryUs <= until) {
        world_.at(world_.now() + kForceRetryUs, "", [this, node, until] { force(node, until); });
      }
      return;
    }
    if (!world_.promote(node, true).ok()) return;
    hit(world_.coverage(), VolumeMark::forced_promotion);
    forced_ = node;
    forced_ever_ = true;
    const std::uint64_t writes = rng_.uniform(1, 3);
    for (std::uint64_t i = 0; i < writes; ++i) {
      const std::uint64_t first = rng_.uniform(0, world_.blocks() - 1);
      const volume::RequestId request = next_request_++;
      rogue_.insert(request);
      const std::vector<BlockTag> tags = model_.fresh_tags(first, 1);
      model_.issue_foreign_write(node, first, tags);
      world_.submit_write(node, request, first, tags, false);
    }
  }

  // ---- the workload ----

  void workload_tick() {
    if (workload_on_) {
      world_.at(world_.now() + rng_.uniform(plan_.issue_min_us, plan_.issue_max_us), "",
                [this] { workload_tick(); });
    }
    const int node = target_;
    if (!primary(node) || outstanding_[node] >= plan_.queue_depth) return;
    const volume::RequestId request = next_request_++;
    if (rng_.chance(plan_.flush_share)) {
      world_.note(node, "request " + std::to_string(request) + ": flush");
      model_.issue_flush(request, world_.now());
      ++outstanding_[node];
      world_.submit_flush(node, request);
      return;
    }
    const std::uint64_t count = rng_.uniform(1, std::min<std::uint64_t>(8, world_.blocks()));
    std::uint64_t first = rng_.uniform(0, world_.blocks() - count);
    for (int attempt = 0; attempt < 4 && model_.in_flight(first, count); ++attempt) {
      first = rng_.uniform(0, world_.blocks() - count);
    }
    if (model_.in_flight(first, count)) {
      if (!rng_.chance(plan_.overlap_share)) return;
      hit(world_.coverage(), VolumeMark::overlapping_writes);
    }
    const bool fua = rng_.chance(plan_.fua_share);
    ++outstanding_[node];
    const bool zero = rng_.chance(plan_.zero_share);
    std::vector<BlockTag> tags =
        zero ? std::vector<BlockTag>(count, 0) : model_.fresh_tags(first, count);
    world_.note(node, "request " + std::to_string(request) + ": " + (zero ? "zero" : "write #") +
                          (zero ? "" : std::to_string(tags[0] >> 16)) + " blocks " +
                          std::to_string(first) + "+" + std::to_string(count) +
                          (fua ? " fua" : ""));
    if (!zero) first_tag_[request] = tags.front();
    model_.issue_write(request, node, first, tags, fua, world_.now());
    submitted_on_[request] = replicated_link(node);
    if (zero) {
      world_.submit_zero(node, request, first, count, fua);
    } else {
      world_.submit_write(node, request, first, tags, fua);
    }
  }

  // The connection `node` replicates application writes on now, or 0.
  std::uint64_t replicated_link(int node) {
    return replicating(world_.replica(node).status().link) ? world_.connection_of(node) : 0;
  }

  void on_complete(int node, const volume::Complete& completion) {
    const volume::RequestId request = completion.request;
    const int error = completion.error;
    world_.note(node,
                "completes request " + std::to_string(request) + " error " + std::to_string(error));
    if (rogue_.erase(request) != 0) {
      if (error == 0) ++apart_acks_[node];
      return;
    }
    if (outstanding_[node] > 0) --outstanding_[node];
    const bool write_request = !model_.is_flush(request);
    const bool fua = model_.is_fua(request);
    const LinkState link = world_.replica(node).status().link;
    // The peer holds the write if it was replicated: the primary replicated from the write's
    // submission to its completion, on one connection, or the core says the peer answered it
    // on the current connection (held to it: the peer's copy must then have it).
    const auto submitted = submitted_on_.find(request);
    const bool replicated =
        completion.peer_acked || (submitted != submitted_on_.end() && submitted->second != 0 &&
                                  submitted->second == replicated_link(node));
    if (submitted != submitted_on_.end()) submitted_on_.erase(submitted);
    if (auto tag = first_tag_.extract(request);
        !tag.empty() && error == 0 && world_.write_failed(node, tag.mapped())) {
      return world_.fail("node " + std::to_string(id(node)) + " acknowledged request " +
                         std::to_string(request) + " although its local disk write failed");
    }
    // Or the peer is UpToDate and in sync again: a write it did not receive reached it through
    // the resync that made it so.
    const volume::ReplicaStatus status = world_.replica(node).status();
    const bool peer_stands_in =
        status.link == LinkState::Connected && status.peer_disk == DiskState::UpToDate;
    if (write_request && error == 0 && !replicated && !peer_stands_in && !status.peer_outdated) {
      return world_.fail("node " + std::to_string(id(node)) + " acknowledged request " +
                         std::to_string(request) +
                         ", a write its peer did not receive, with no record that the peer is "
                         "outdated");
    }
    if (!write_request && error == 0) {
      // A flush completes only once every write acknowledged before it is durable on this copy,
      // and on the peer's too when the peer stands in for this one.
      for (int copy : {node, 1 - node}) {
        if (copy != node && !peer_stands_in) continue;
        if (auto problem = model_.check_flushed(request, world_.disk(copy).durable(), copy)) {
          return world_.fail("node " + std::to_string(id(node)) + " completed flush " +
                             std::to_string(request) + " but node " + std::to_string(id(copy)) +
                             "'s " + *problem);
        }
      }
    }
    const unsigned holders = (1u << node) | (replicated || peer_stands_in ? 1u << (1 - node) : 0u);
    if (!model_.complete(request, error, world_.now(), holders)) {
      return world_.fail("node " + std::to_string(id(node)) + " completed request " +
                         std::to_string(request) + " that it was never given (or twice)");
    }
    if (error != 0) {
      // ESHUTDOWN: refused by a node that is no longer (or not yet) serving, as a demote does.
      if (error != ESHUTDOWN) hit(world_.coverage(), VolumeMark::write_failed);
      return;
    }
    if (!write_request) hit(world_.coverage(), VolumeMark::flush_acked);
    if (write_request && fua) hit(world_.coverage(), VolumeMark::fua_write);
    if (write_request && !replicating(link)) ++apart_acks_[node];
  }

  // ---- failover and the heal ----

  void failover_tick() {
    world_.at(world_.now() + kFailoverTickUs, "", [this] { failover_tick(); });
    if (healed_) settle();
    if (forced_ >= 0 || primary(0) || primary(1)) return;
    // Wait for the first handshake before the first promotion, as an operator would.
    if (!promoted_once_ && world_.now() < 1'000'000 && !both_connected()) return;
    // After a split brain the winner is promoted first; with --force if the loser's record
    // outdated it (the operator's part of resolving, docs/volume.md).
    if (winner_ >= 0) {
      if (!world_.up(winner_) || !world_.quorate(id(winner_))) return;
      const bool force = world_.replica(winner_).status().disk != DiskState::UpToDate;
      if (!world_.promote(winner_, force).ok()) return;
      forced_ever_ = forced_ever_ || force;
      promoted(winner_);
      return;
    }
    for (int node : {1 - target_, target_}) {
      if (!world_.up(node) || !world_.quorate(id(node))) continue;
      if (world_.replica(node).persistent_state().discard_local) continue;
      if (world_.replica(node).status().disk != DiskState::UpToDate ||
          !world_.promote(node, false).ok()) {
        hit(world_.coverage(), VolumeMark::failover_refused);
        continue;
      }
      if (promoted_once_) hit(world_.coverage(), VolumeMark::failover);
      promoted(node);
      return;
    }
  }

  bool both_connected() const {
    return world_.up(0) && world_.up(1) &&
           world_.replica(0).status().link == LinkState::Connected &&
           world_.replica(1).status().link == LinkState::Connected;
  }

  void promoted(int node) {
    promoted_once_ = true;
    target_ = node;
    winner_ = -1;
    if (auto problem = model_.check_copy(world_.disk(node).view(), node)) {
      return world_.fail("node " + std::to_string(id(node)) +
                         " was promoted without force but lacks acknowledged data: " + *problem);
    }
    model_.adopt(world_.disk(node).view(), node);
  }

  void heal() {
    healed_ = true;
    world_.set_groups({{1, 2, kWitness}});
    world_.restart_witness();
    for (int node = 0; node < 2; ++node) world_.restart(node);
    world_.at(world_.now() + kWorkloadAfterHealUs, "workload stops",
              [this] { workload_on_ = false; });
  }

  // After the heal: resolve a split brain by discarding the forced side, then wait until both
  // copies are connected, in sync and quiet, and compare them.
  void settle() {
    if (forced_ < 0 && split_seen_) {
      // Refused as split brain after a forced promotion earlier in the run was resolved (the
      // winner promoted with force): resolved alike, keeping the workload's side.
      forced_ = 1 - target_;
    }
    if (forced_ >= 0) {
      if (primary(forced_)) {
        (void)world_.demote(forced_);
        return;
      }
      if (!world_.discard_local(forced_).ok()) return;
      hit(world_.coverage(), VolumeMark::split_brain_resolved);
      apart_acks_[forced_] = 0;
      split_seen_ = false;
      winner_ = primary(1 - forced_) ? -1 : 1 - forced_;
      forced_ = -1;
    }
    if (workload_on_ || model_.pending() != 0) return;
    for (int node = 0; node < 2; ++node) {
      if (!world_.up(node) || world_.pending_ios(node) != 0) return;
      const volume::ReplicaStatus s = world_.replica(node).status();
      if (s.link != LinkState::Connected || s.disk != DiskState::UpToDate ||
          s.out_of_sync_bytes != 0 || s.writes_in_flight != 0) {
        return;
      }
    }
    done_ = true;
    const std::vector<BlockTag> first = world_.disk(0).view();
    const std::vector<BlockTag> second = world_.disk(1).view();
    if (first != second) {
      const auto at = std::mismatch(first.begin(), first.end(), second.begin()).first;
      const std::size_t block = static_cast<std::size_t>(at - first.begin());
      return world_.fail("connected and in sync, but the copies differ: first at block " +
                         std::to_string(block) + " (tags " + std::to_string(first[block]) +
                         " and " + std::to_string(second[block]) + ")");
    }
    const int node = primary(1) ? 1 : 0;
    if (auto problem = model_.check_copy(world_.disk(node).view(), node)) {
      world_.fail("the converged copies lack acknowledged data: " + *problem);
    }
  }

  // ---- checks after every event ----

  void check() {
    watch_step_downs();
    if (auto problem = verify_.check(world_, model_)) return world_.fail(*problem);
    if (!world_.up(0) || !world_.up(1)) return;
    const volume::ReplicaStatus a = world_.replica(0).status();
    const volume::ReplicaStatus b = world_.replica(1).status();
    if (a.role == Role::Primary && b.role == Role::Primary && replicating(a.link) &&
        replicating(b.link)) {
      return world_.fail("two primaries while connected");
    }
    if (a.link == LinkState::SplitBrain || b.link == LinkState::SplitBrain) {
      if (!split_marked_) hit(world_.coverage(), VolumeMark::split_brain_detected);
      split_marked_ = true;
      split_seen_ = true;
      if (!forced_ever_) {
        // Only a forced promotion lets both sides acknowledge writes apart (docs/volume.md).
        hit(world_.coverage(), VolumeMark::split_brain_unforced);
        return world_.fail("refused as split brain although no promotion was forced");
      }
    }
    if (replicating(a.link) && replicating(b.link)) {
      if (apart_acks_[0] > 0 && apart_acks_[1] > 0) {
        return world_.fail("both sides acknowledged writes apart (" +
                           std::to_string(apart_acks_[0]) + " and " +
                           std::to_string(apart_acks_[1]) + "), yet they connected as " +
                           std::string(to_string(a.link)) + "/" + std::string(to_string(b.link)) +
                           " instead of refusing a split brain");
      }
      apart_acks_ = {0, 0};
      split_seen_ = false;
    }
    for (int node = 0; node < 2; ++node) {
      const volume::ReplicaStatus& s = node == 0 ? a : b;
      if (last_disk_[node] != DiskState::UpToDate && s.disk == DiskState::UpToDate &&
          s.link == LinkState::Connected) {
        hit(world_.coverage(), VolumeMark::resync_completed);
      }
      last_disk_[node] = s.disk;
    }
  }

  const VolumePlan& plan_;
  VolumeWorld world_;
  VolumeModel model_;
  Rng rng_;
  volume::RequestId next_request_ = 1;
  int target_ = 0;   // the node the workload writes to: the history the model follows
  int forced_ = -1;  // a node promoted by force, whose writes the heal discards
  // A primary whose flush failed while its peer stood in, giving way to it: since when.
  std::optional<TimeUs> giving_way_since_[2];
  bool seen_giving_way_[2] = {false, false};
  int winner_ = -1;  // after a split brain: the side to promote
  bool promoted_once_ = false;
  bool healed_ = false;
  bool workload_on_ = true;
  bool done_ = false;
  bool split_seen_ = false;
  bool split_marked_ = false;  // the split brain marks count runs, not refusals
  bool forced_ever_ = false;   // a promotion with force happened in this run
  std::array<std::size_t, 2> outstanding_{};
  std::array<std::uint64_t, 2> apart_acks_{};
  std::array<DiskState, 2> last_disk_{DiskState::UpToDate, DiskState::UpToDate};
  std::set<volume::RequestId> rogue_;
  // Per write in flight: the connection its primary was replicating on at submission (0: none).
  std::map<volume::RequestId, std::uint64_t> submitted_on_;
  // Per write in flight (not zeroing): its first block's tag, which names its disk writes.
  std::map<volume::RequestId, BlockTag> first_tag_;
  VerifyWatch verify_;
};

}  // namespace

VolumeRunResult run_volume_scenario(const VolumePlan& plan, std::ostream* trace_out) {
  return VolumeRun(plan, trace_out).run();
}

}  // namespace keel::sim
