// `keel sim --demo`: a narrated, scripted run for people. Five hosts form a ring, messages flow, a
// host crashes, the network splits 2|3 and heals, and at the end the delivery check is shown.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "sim/cluster.hpp"
#include "sim/runner.hpp"

namespace keel::sim {

namespace {

constexpr std::uint64_t kDemoSeed = 2024;
constexpr TimeUs kPhaseBoundUs = 10'000'000;

std::string at(TimeUs us) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%7.3f s", static_cast<double>(us) / 1e6);
  return buffer;
}

std::string list(const std::vector<NodeId>& ids) {
  std::string out;
  for (NodeId id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

// Collects what the hosts install and deliver; prints views grouped by view.
class Narrator {
 public:
  Narrator(SimCluster& cluster, std::ostream& out) : cluster_(cluster), out_(out) {
    cluster_.set_observer([this](NodeId host, const ring::Action& action, TimeUs now) {
      if (const auto* view = std::get_if<ring::View>(&action)) on_view(host, *view, now);
      if (const auto* message = std::get_if<ring::DeliveredMessage>(&action)) {
        delivered_[host].push_back(parse_message_id(message->payload).value_or(MessageId{}));
      }
    });
  }

  void say(const std::string& text) { out_ << at(cluster_.now()) << "  " << text << "\n"; }

  // Prints the views installed since the last call, one line per view with its hosts.
  void print_views() {
    std::vector<std::pair<ViewId, Seen>> views(pending_.begin(), pending_.end());
    // Per ring: transitional views first (in the order they were installed), then the regular.
    std::stable_sort(views.begin(), views.end(), [](const auto& a, const auto& b) {
      return std::tuple(a.first.ring, a.first.regular, a.second.first_at) <
             std::tuple(b.first.ring, b.first.regular, b.second.first_at);
    });
    for (const auto& [id, seen] : views) {
      out_ << at(seen.first_at) << "    " << (id.regular ? "regular" : "transitional") << " view "
           << to_string(id.ring);
      if (!id.regular) out_ << " (from " << to_string(id.previous) << ")";
      out_ << " members {" << list(seen.members) << "} installed by hosts " << list(seen.hosts)
           << "\n";
    }
    pending_.clear();
  }

  bool regular_view_everywhere(const std::vector<NodeId>& hosts,
                               const std::vector<NodeId>& members) const {
    return std::all_of(hosts.begin(), hosts.end(), [&](NodeId h) {
      const auto view = cluster_.view(h);
      return cluster_.state(h) == HostState::up && view && view->members == members &&
             cluster_.ring(h)->state() == ring::State::operational;
    });
  }

  std::vector<MessageId>& delivered(NodeId host) { return delivered_[host]; }

 private:
  struct Seen {
    TimeUs first_at = 0;
    std::vector<NodeId> members;
    std::vector<NodeId> hosts;
  };

  void on_view(NodeId host, const ring::View& view, TimeUs now) {
    auto [it, inserted] = pending_.try_emplace(view_id(view));
    if (inserted) it->second = Seen{now, view.members, {}};
    it->second.hosts.push_back(host);
  }

  SimCluster& cluster_;
  std::ostream& out_;
  std::map<ViewId, Seen> pending_;
  std::map<NodeId, std::vector<MessageId>> delivered_;
};

void submit_round(SimCluster& cluster, const std::vector<NodeId>& hosts, int each) {
  for (int i = 0; i < each; ++i) {
    for (NodeId h : hosts) {
      const auto kind = i % 3 == 2 ? ring::DeliveryKind::safe : ring::DeliveryKind::agreed;
      cluster.submit(h, static_cast<std::size_t>(40 + 400 * (i % 4)), kind);
    }
  }
}

bool wait_for(SimCluster& cluster, const std::function<bool()>& done) {
  return cluster.run_until(done, cluster.now() + kPhaseBoundUs) && !cluster.checker().failed();
}

}  // namespace

int run_demo(std::ostream& out) {
  ClusterOptions options;
  options.hosts = 5;
  options.seed = kDemoSeed;
  options.network = NetworkOptions{0.0, 0.0, 100, 500};
  SimCluster cluster(options);
  Narrator narrator(cluster, out);
  const std::vector<NodeId> all = {1, 2, 3, 4, 5};
  const std::vector<NodeId> survivors = {1, 2, 3, 4};
  const auto& tunables = cluster.options().tunables;
  out << "keel sim --demo: five hosts on a simulated LAN (delay 100..500 us, no loss), token "
         "timeout "
      << tunables.token_timeout_ms << " ms, consensus " << tunables.consensus_timeout_ms
      << " ms\n\n";

  narrator.say("hosts 1..5 start; they find each other and form a ring");
  bool ok = wait_for(cluster, [&] { return cluster.converged(); });
  narrator.print_views();

  narrator.say("every host submits 6 messages (every third one safe)");
  submit_round(cluster, all, 6);
  cluster.run_for(500'000);
  narrator.say("each host has delivered " + std::to_string(narrator.delivered(1).size()) +
               " messages");

  narrator.say("host 5 crashes");
  const TimeUs crash_at = cluster.now();
  cluster.crash(5);
  ok = ok &&
       wait_for(cluster, [&] { return narrator.regular_view_everywhere(survivors, survivors); });
  narrator.print_views();
  narrator.say("the survivors installed their new view " +
               std::to_string((cluster.now() - crash_at) / 1000) + " ms after the crash");

  narrator.say("host 5 restarts and joins again");
  cluster.restart(5);
  ok = ok && wait_for(cluster, [&] { return cluster.converged(); });
  narrator.print_views();

  narrator.say("the network splits into {1,2} and {3,4,5}");
  cluster.partition({{1, 2}, {3, 4, 5}});
  ok = ok && wait_for(cluster, [&] {
         return narrator.regular_view_everywhere({1, 2}, {1, 2}) &&
                narrator.regular_view_everywhere({3, 4, 5}, {3, 4, 5});
       });
  narrator.print_views();
  narrator.say("both sides go on: each host submits 4 messages");
  const std::size_t before_left = narrator.delivered(1).size();
  const std::size_t before_right = narrator.delivered(3).size();
  submit_round(cluster, all, 4);
  cluster.run_for(500'000);
  narrator.say("side {1,2} delivered " +
               std::to_string(narrator.delivered(1).size() - before_left) +
               " messages, side {3,4,5} delivered " +
               std::to_string(narrator.delivered(3).size() - before_right));

  narrator.say("the network heals; the two rings merge");
  cluster.heal_network();
  const TimeUs heal_at = cluster.now();
  ok = ok && wait_for(cluster, [&] { return cluster.converged(); });
  narrator.print_views();
  narrator.say("merged " + std::to_string((cluster.now() - heal_at) / 1000) + " ms after the heal");

  std::map<NodeId, std::size_t> mark;
  for (NodeId h : all) mark[h] = narrator.delivered(h).size();
  narrator.say("every host submits 4 more messages");
  submit_round(cluster, all, 4);
  cluster.run_for(500'000);

  std::vector<MessageId> reference(narrator.delivered(1).begin() + mark[1],
                                   narrator.delivered(1).end());
  for (NodeId h : all) {
    const auto& got = narrator.delivered(h);
    ok = ok && std::vector<MessageId>(got.begin() + mark[h], got.end()) == reference;
  }
  out << "\n";
  if (ok && !cluster.checker().failed() && reference.size() == 20) {
    out << "delivery check: all 5 hosts delivered the same " << reference.size()
        << " messages in the same order after the merge\n";
  } else {
    out << "delivery check FAILED\n";
  }
  const auto& stats = cluster.checker().stats();
  out << "checkers: " << (cluster.checker().failed() ? 1 : 0) << " violations over "
      << cluster.stats().steps << " steps (" << stats.views_installed << " views, "
      << stats.messages_delivered << " deliveries)\n";
  if (cluster.checker().failed()) out << cluster.checker().violation()->text << "\n";
  return ok && !cluster.checker().failed() ? 0 : 1;
}

}  // namespace keel::sim
