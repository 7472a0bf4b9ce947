#include "core/vip/placement.hpp"

#include <algorithm>

#include "core/common/assert.hpp"

namespace keel::vip {

namespace {

constexpr std::size_t kNone = ~std::size_t{0};

struct Work {
  const PoolInput& input;
  std::vector<Quota> quotas;
  std::vector<std::vector<std::size_t>> kept;  // per candidate: addresses it keeps
  std::vector<std::size_t> count;              // per candidate
  std::size_t extras = 0;                      // how many candidates may reach `high`
  std::size_t extras_used = 0;
};

std::size_t candidate_of(const PoolInput& input, NodeId node) {
  if (node == kNoNode) return kNone;
  auto it = std::lower_bound(input.candidates.begin(), input.candidates.end(), node,
                             [](const Candidate& c, NodeId n) { return c.node < n; });
  if (it == input.candidates.end() || it->node != node) return kNone;
  return static_cast<std::size_t>(it - input.candidates.begin());
}

NodeId preferred_of(const PoolInput& input, std::size_t address) {
  return input.preferred.empty() ? kNoNode : input.preferred[address];
}

// 0: the address prefers this node; 1: no (eligible) preference; 2: prefers another candidate.
int keep_rank(const PoolInput& input, std::size_t address, NodeId node) {
  const NodeId preferred = preferred_of(input, address);
  if (preferred == node) return 0;
  if (candidate_of(input, preferred) == kNone) return 1;
  return 2;
}

bool above_floor(const Work& w, std::size_t i) {
  return w.quotas[i].high > w.quotas[i].low && w.count[i] == w.quotas[i].high;
}

// Each candidate keeps at most `high` of what it holds; then at most `extras` of them keep more
// than `low` (the highest node ids give up their extra one).
void keep_current(Work& w) {
  const PoolInput& in = w.input;
  for (std::size_t a = 0; a < in.current.size(); ++a) {
    const std::size_t i = candidate_of(in, in.current[a]);
    if (i != kNone) w.kept[i].push_back(a);
  }
  for (std::size_t i = 0; i < w.kept.size(); ++i) {
    auto& kept = w.kept[i];
    const NodeId node = in.candidates[i].node;
    std::stable_sort(kept.begin(), kept.end(), [&](std::size_t a, std::size_t b) {
      return keep_rank(in, a, node) < keep_rank(in, b, node);
    });
    if (kept.size() > w.quotas[i].high) kept.resize(w.quotas[i].high);
    w.count[i] = kept.size();
  }
  std::size_t at_high = 0;
  for (std::size_t i = 0; i < w.kept.size(); ++i) at_high += above_floor(w, i);
  for (std::size_t i = w.kept.size(); i-- > 0 && at_high > w.extras;) {
    if (!above_floor(w, i)) continue;
    w.kept[i].pop_back();
    --w.count[i];
    --at_high;
  }
  w.extras_used = at_high;
}

bool has_room(const Work& w, std::size_t i) {
  if (w.count[i] < w.quotas[i].low) return true;
  return w.count[i] == w.quotas[i].low && w.quotas[i].high > w.quotas[i].low &&
         w.extras_used < w.extras;
}

std::size_t least_loaded(const Work& w) {
  std::size_t best = kNone;
  for (std::size_t i = 0; i < w.count.size(); ++i) {
    if (!has_room(w, i)) continue;
    if (best == kNone) {
      best = i;
      continue;
    }
    // (count_i + 1) / weight_i < (count_best + 1) / weight_best, without division.
    const std::uint64_t lhs = (w.count[i] + 1) * std::uint64_t{w.input.candidates[best].weight};
    const std::uint64_t rhs = (w.count[best] + 1) * std::uint64_t{w.input.candidates[i].weight};
    if (lhs < rhs) best = i;
  }
  return best;
}

void give(Work& w, std::size_t i, std::vector<NodeId>& target, std::size_t address) {
  if (w.count[i] == w.quotas[i].low && w.quotas[i].high > w.quotas[i].low) ++w.extras_used;
  ++w.count[i];
  target[address] = w.input.candidates[i].node;
}

}  // namespace

std::vector<Quota> weighted_quotas(std::size_t addresses,
                                   const std::vector<Candidate>& candidates) {
  std::uint64_t total_weight = 0;
  for (const Candidate& c : candidates) {
    KEEL_ASSERT(c.weight >= 1);
    total_weight += c.weight;
  }
  std::vector<Quota> quotas;
  for (const Candidate& c : candidates) {
    const std::uint64_t share = addresses * std::uint64_t{c.weight};
    const auto low = static_cast<std::uint32_t>(share / total_weight);
    quotas.push_back({low, low + (share % total_weight != 0 ? 1u : 0u)});
  }
  return quotas;
}

std::vector<NodeId> place_pool(const PoolInput& input) {
  KEEL_ASSERT(input.preferred.empty() || input.preferred.size() == input.current.size());
  for (std::size_t i = 1; i < input.candidates.size(); ++i) {
    KEEL_ASSERT(input.candidates[i - 1].node < input.candidates[i].node);
  }
  std::vector<NodeId> target(input.current.size(), kNoNode);
  if (input.candidates.empty()) return target;

  Work w{input, weighted_quotas(input.current.size(), input.candidates),
         std::vector<std::vector<std::size_t>>(input.candidates.size()),
         std::vector<std::size_t>(input.candidates.size(), 0)};
  std::size_t lows = 0;
  for (const Quota& q : w.quotas) lows += q.low;
  KEEL_ASSERT(lows <= input.current.size());
  w.extras = input.current.size() - lows;

  keep_current(w);
  for (std::size_t i = 0; i < w.kept.size(); ++i) {
    for (std::size_t a : w.kept[i]) target[a] = input.candidates[i].node;
  }
  for (std::size_t a = 0; a < target.size(); ++a) {
    if (target[a] != kNoNode) continue;
    std::size_t i = candidate_of(input, preferred_of(input, a));
    if (i == kNone || !has_room(w, i)) i = least_loaded(w);
    KEEL_ASSERT(i != kNone);  // the free slots always equal the homeless addresses
    give(w, i, target, a);
  }
  for (std::size_t i = 0; i < w.count.size(); ++i) {
    KEEL_ASSERT(w.count[i] >= w.quotas[i].low && w.count[i] <= w.quotas[i].high);
  }
  return target;
}

}  // namespace keel::vip
