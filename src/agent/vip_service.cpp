#include "agent/vip_service.hpp"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <set>

#include "agent/vip_leftovers.hpp"
#include "io/child_spawn.hpp"
#include "io/clock.hpp"

extern char** environ;

namespace keel::agent {
namespace {

using nlohmann::json;
constexpr auto kBroadcastRetry = std::chrono::milliseconds(5);
constexpr auto kHookReapPeriod = std::chrono::milliseconds(200);

std::vector<std::uint8_t> address_bytes(const asio::ip::address& address) {
  if (address.is_v4()) {
    auto bytes = address.to_v4().to_bytes();
    return {bytes.begin(), bytes.end()};
  }
  auto bytes = address.to_v6().to_bytes();
  return {bytes.begin(), bytes.end()};
}

// Whether `address` lies in the subnet of `network` (its address and prefix length).
bool in_subnet(const asio::ip::address& address, const io::IpPrefix& network) {
  if (address.is_v4() != network.address.is_v4()) return false;
  const auto a = address_bytes(address);
  const auto b = address_bytes(network.address);
  const std::size_t bits = network.prefix_length;
  for (std::size_t bit = 0; bit < bits; ++bit) {
    const std::uint8_t mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
    if ((a[bit / 8] & mask) != (b[bit / 8] & mask)) return false;
  }
  return true;
}

std::string describe_prefixes(const std::vector<io::InterfaceAddress>& addresses) {
  std::string text;
  for (const auto& address : addresses) {
    if (address.keel_owned()) continue;
    if (!text.empty()) text += ", ";
    text += io::to_string(address.prefix);
  }
  return text.empty() ? "no address" : text;
}

}  // namespace

VipService::VipService(asio::io_context& io, const config::ClusterConfig& config, NodeId self,
                       Broadcaster broadcast)
    : io_(io),
      config_(config.vip),
      nodes_(config.nodes),
      self_(self),
      broadcast_(std::move(broadcast)),
      timer_(io),
      retry_timer_(io),
      held_check_timer_(io) {}

VipService::~VipService() { stop(); }

Result<std::unique_ptr<VipService>> VipService::open(asio::io_context& io,
                                                     const config::ClusterConfig& config,
                                                     NodeId self, Broadcaster broadcast) {
  std::unique_ptr<VipService> service(new VipService(io, config, self, std::move(broadcast)));
  auto netlink = io::NetlinkAddresses::open();
  if (!netlink) return Error{"floating IPs: " + netlink.error().message};
  service->netlink_ = std::move(netlink).value();
  for (const auto& pool : service->config_.pools) {
    Pool state;
    state.config = &pool;
    state.served = std::binary_search(pool.nodes.begin(), pool.nodes.end(), self);
    service->pools_.push_back(std::move(state));
    for (const auto& address : pool.addresses) {
      auto prefix = io::parse_prefix(address.text);
      if (!prefix) return Error{"floating IPs: " + prefix.error().message};
      Address entry;
      entry.pool = static_cast<std::uint32_t>(service->pools_.size() - 1);
      entry.prefix = prefix.value();
      entry.text = address.text;
      entry.interface = pool.interface_for(self);
      service->addresses_.push_back(std::move(entry));
    }
  }
  service->check_kernel();
  auto adopted = service->reconcile_interfaces();
  if (!adopted) return adopted.error();
  service->make_node(std::move(adopted).value());
  service->open_handover();
  service->silence_adopted();
  return service;
}

// keel recognises its own addresses by IFA_PROTO, which Linux keeps only from 6.1 on. Before, a
// crashed or killed agent's addresses are unmarked when it restarts: neither adopted nor deleted
// as stale, and kept when placement moves them elsewhere until an operator deletes them.
void VipService::check_kernel() {
  utsname name{};
  const std::string release = ::uname(&name) == 0 ? name.release : "";
  mark_kept_ = io::kernel_release_at_least(release, io::kMarkKernelMajor, io::kMarkKernelMinor);
  if (mark_kept_) return;
  spdlog::warn(
      "vip: Linux {} does not keep keel's mark on addresses (needs {}.{} or later): after a crash "
      "or kill the agent cannot recognise the floating addresses it left behind, so it neither "
      "adopts nor deletes them at restart; check for leftovers with `ip addr` after a crash",
      release.empty() ? "(unknown)" : release, io::kMarkKernelMajor, io::kMarkKernelMinor);
}

void VipService::open_handover() {
  // Opened even with the handover off: an earlier run's tables must go all the same, and adopted
  // addresses are kept from answering ARP with the same rules.
  auto opened = io::HandoverRules::open();
  std::unique_ptr<io::HandoverRules> rules;
  if (opened) {
    // An adopted address's ARP silence (the killed agent's drain left it) stays in place:
    // silence_adopted() replaces it in one nftables transaction, with no moment without it.
    std::set<std::string> keep;
    for (const Address& address : addresses_) {
      if (address.quiet && address.prefix.address.is_v4()) {
        keep.insert(io::HandoverRules::quiet_table(address.prefix.address.to_v4()));
      }
    }
    remove_handover_tables(*opened.value(), config_.handover_ms > 0, keep);
    rules = std::move(opened).value();
  } else if (config_.handover_ms > 0) {
    spdlog::warn("vip: no connection handover on drains: {}", opened.error().message);
  } else {
    spdlog::debug("vip: no nftables: {}", opened.error().message);
  }
  handover_ = std::make_unique<VipHandover>(io_, std::chrono::milliseconds(config_.handover_ms),
                                            std::move(rules));
}

// Adopted IPv4 addresses stay off ARP until placement confirms them here (announce_confirmed()):
// another host may hold them by now. IPv6 has no ARP; its neighbour discovery is not silenced.
void VipService::silence_adopted() {
  for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
    const Address& address = addresses_[number];
    if (!address.quiet || !address.prefix.address.is_v4()) continue;
    if (auto done = handover_->silence_adopted(number, address.prefix.address.to_v4()); !done) {
      spdlog::warn("vip {}: answers ARP until placement confirms it here: {}", address.text,
                   done.error().message);
    }
  }
}

// Checks each served pool's interface and subnets; returns the addresses to adopt and deletes
// keel's stale ones, on every interface of the namespace (agent/vip_leftovers.hpp).
Result<std::vector<std::uint32_t>> VipService::reconcile_interfaces() {
  std::map<std::string, int> indexes;  // of the served pools' interfaces
  for (const auto& address : addresses_) {
    const Pool& pool = pools_[address.pool];
    if (!pool.served || indexes.count(address.interface) != 0) continue;
    auto index = netlink_->interface_index(address.interface);
    if (!index) {
      return Error{"pool " + pool.config->name + ": interface " + address.interface + ": " +
                   index.error().message};
    }
    indexes[address.interface] = index.value();
  }
  auto listed = netlink_->list_all();
  if (!listed) return Error{"floating IPs: " + listed.error().message};
  const std::vector<io::InterfaceAddress>& present = listed.value();
  std::vector<std::uint32_t> adopted;
  for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
    Address& address = addresses_[number];
    const Pool& pool = pools_[address.pool];
    if (!pool.served) continue;
    std::vector<io::InterfaceAddress> on_interface;
    std::copy_if(present.begin(), present.end(), std::back_inserter(on_interface),
                 [&](const auto& a) { return a.interface_index == indexes.at(address.interface); });
    const bool fits = std::any_of(on_interface.begin(), on_interface.end(), [&](const auto& a) {
      return !a.keel_owned() && in_subnet(address.prefix.address, a.prefix);
    });
    if (!fits) {
      return Error{"pool " + pool.config->name + ": address " + address.text +
                   " is outside every subnet on " + address.interface + " (" +
                   describe_prefixes(on_interface) + ")"};
    }
    const bool held = std::any_of(on_interface.begin(), on_interface.end(), [&](const auto& a) {
      return a.keel_owned() && a.prefix == address.prefix;
    });
    if (held) {
      adopted.push_back(number);
      address.held = true;
      address.quiet = true;
      address.since_us = io::monotonic_now_us();
      address.why = "adopted at start (already on " + address.interface + ")";
      spdlog::info(
          "vip {}: adopted on {} (held before this start); not announced until placement "
          "confirms it here",
          address.text, address.interface);
    }
  }
  // keel's addresses that the config does not give this host on their interface are stale.
  delete_stale_addresses(*netlink_, present, [&](const io::InterfaceAddress& found) {
    return std::any_of(addresses_.begin(), addresses_.end(), [&](const Address& a) {
      return pools_[a.pool].served && indexes.at(a.interface) == found.interface_index &&
             a.prefix == found.prefix;
    });
  });
  return adopted;
}

void VipService::make_node(std::vector<std::uint32_t> adopted) {
  node_ =
      std::make_unique<vip::VipNode>(self_, config::core_vip_config(config_), std::move(adopted));
  for (std::uint32_t number = 0; number < pools_.size(); ++number) {
    pools_[number].healthy = node_->healthy(number);
    pools_[number].check_healthy = pools_[number].healthy;
  }
}

void VipService::start() {
  for (std::uint32_t number = 0; number < pools_.size(); ++number) {
    Pool& pool = pools_[number];
    if (!pool.served) continue;
    if (!pool.config->health) {
      set_health(number, true, "no health check");
      continue;
    }
    auto check = io::HealthCheck::create(
        io_, *pool.config->health, [this, number](const io::HealthStatus& status) {
          // last_error outlives the failure it names: a pool that turns healthy says nothing.
          const bool healthy = status.state == io::HealthState::kHealthy;
          set_health(number, healthy, healthy ? std::string() : status.last_error);
        });
    if (!check) {
      spdlog::error("vip pool {}: health check: {}", pool.config->name, check.error().message);
      continue;
    }
    pool.health = std::move(check).value();
    pool.health->start();
  }
  run_actions();
  arm_held_check();
}

void VipService::set_health(std::uint32_t pool, bool healthy, const std::string& why) {
  if (stopped_) return;
  pools_[pool].check_healthy = healthy;
  report_health(pool, why);
}

// What the core hears: the health check's verdict, unless an add has just failed in this pool.
void VipService::report_health(std::uint32_t pool, const std::string& why) {
  if (stopped_) return;
  Pool& state = pools_[pool];
  const bool healthy = state.check_healthy && !state.add_failing;
  if (state.healthy != healthy) {
    spdlog::info("vip pool {}: {} here{}", state.config->name, healthy ? "healthy" : "unhealthy",
                 why.empty() ? "" : " (" + why + ")");
  }
  state.healthy = healthy;
  node_->set_healthy(pool, healthy, io::monotonic_now_us());
  run_actions();
}

void VipService::on_view(const ring::View& view) {
  if (stopped_) return;
  node_->on_view(view, io::monotonic_now_us());
  // After a merge the neighbours may still send to the other side's holder of an address this
  // host kept (their caches followed the announcements made while the two sides were apart), so
  // once the view has settled this host announces everything it holds again.
  if (view.regular()) reannounce_ = true;
  run_actions();
}

void VipService::on_message(NodeId origin, std::span<const std::uint8_t> payload) {
  if (stopped_) return;
  node_->on_message(origin, payload, io::monotonic_now_us());
  run_actions();
}

Result<Ok> VipService::drain() {
  if (stopped_) return Error{"the agent is shutting down"};
  spdlog::info("vip: draining this host (its addresses move to others, added there first)");
  node_->drain(io::monotonic_now_us());
  run_actions();
  return Ok{};
}

Result<Ok> VipService::undrain() {
  if (stopped_) return Error{"the agent is shutting down"};
  spdlog::info("vip: undraining this host");
  node_->undrain(io::monotonic_now_us());
  run_actions();
  return Ok{};
}

void VipService::stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  retry_timer_.cancel();
  held_check_timer_.cancel();
  for (auto& pool : pools_) {
    if (pool.health) pool.health->stop();
    if (pool.add_retry) pool.add_retry->cancel();
  }
  if (handover_) handover_->finish_all();
  for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
    if (addresses_[number].held) release(number, "released at shutdown");
    // A delete still failing gets one last try; if that fails too, the log says it is left.
    if (addresses_[number].delete_pending) retry_delete(number);
  }
}

void VipService::run_actions() {
  if (stopped_) return;
  // A failed add is the core's to hear at once, before the State after it is encoded (so that no
  // State claims the address, which a drained holder would release on), and it may ask for more.
  for (auto actions = node_->take_actions(); !actions.empty(); actions = node_->take_actions()) {
    for (auto& action : actions) {
      if (std::holds_alternative<vip::Broadcast>(action)) {
        pending_broadcasts_.push_back(node_->state_message());
      } else if (const auto* add = std::get_if<vip::Acquire>(&action)) {
        if (!acquire(add->address)) not_added(add->address);
      } else if (const auto* remove = std::get_if<vip::Release>(&action)) {
        if (addresses_[remove->address].add_pending) {
          drop_pending(remove->address);
        } else if (handing_over(remove->address)) {
          release_after_handover(remove->address);
        } else {
          release(remove->address, "released: placement moved it");
        }
      } else if (const auto* notice = std::get_if<vip::Notice>(&action)) {
        spdlog::warn("{}", notice->text);  // it names the vip
      }
    }
  }
  flush_broadcasts();
  announce_confirmed();
  if (reannounce_ && node_->quiescent()) {
    reannounce_ = false;
    for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
      if (addresses_[number].held) announce(number, 0);
    }
  }
  arm_timer();
}

// A drained host releasing an address to the new holder that has it: the connections opened here
// may finish (release_after_handover()). Any other release, a failed health check's above all,
// is at once, drained or not.
bool VipService::handing_over(std::uint32_t number) const {
  const NodeId self = node_->self();
  const NodeId owner = node_->owner(number);
  return node_->drained() && node_->handover_from(number) == self && owner != kNoNode &&
         owner != self && node_->healthy(addresses_[number].pool);
}

// Adopted addresses that placement has just confirmed here are announced now (announce() skips
// them until then); those it released instead only lose the flag.
void VipService::announce_confirmed() {
  for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
    Address& address = addresses_[number];
    if (!address.quiet || node_->unconfirmed(number)) continue;
    address.quiet = false;
    if (!address.held) continue;
    address.why = "adopted at start, then confirmed here by placement";
    spdlog::info("vip {}: placement confirms it here; announcing it", address.text);
    handover_->end_adopted_silence(number);
    if (!reannounce_ || !node_->quiescent()) announce(number, 0);  // else announced just below
  }
}

void VipService::flush_broadcasts() {
  while (!pending_broadcasts_.empty()) {
    if (auto sent = broadcast_(pending_broadcasts_.front()); !sent) {
      // The ring's send queue is full: the state must still go out, in order, so try again soon.
      retry_timer_.expires_after(kBroadcastRetry);
      retry_timer_.async_wait([this](const asio::error_code& error) {
        if (!error && !stopped_) flush_broadcasts();
      });
      return;
    }
    pending_broadcasts_.pop_front();
  }
}

void VipService::arm_timer() {
  const TimeUs deadline = node_->next_deadline();
  if (deadline == kNever) {
    timer_.cancel();
    return;
  }
  const TimeUs now = io::monotonic_now_us();
  timer_.expires_after(std::chrono::microseconds(deadline > now ? deadline - now : 0));
  timer_.async_wait([this](const asio::error_code& error) {
    if (error || stopped_) return;
    node_->on_tick(io::monotonic_now_us());
    run_actions();
  });
}

// The new holder of a drained host's IPv4 address sends that host the packets of connections
// it does not know, when the drained host is on the same link: its node address lies in a subnet
// of the interface's own addresses (the ones open() found the floating address in). The floating
// address's own prefix cannot tell: a /32 holds nothing but itself, and pools of host routes are
// common.
void VipService::start_forwarding(std::uint32_t number) {
  const Address& address = addresses_[number];
  const NodeId from = node_->handover_from(number);
  if (!handover_ || !handover_->enabled() || from == kNoNode || from == self_ ||
      !address.prefix.address.is_v4()) {
    return;
  }
  auto node =
      std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n.id == from; });
  if (node == nodes_.end()) return;
  asio::error_code error;
  const auto old_holder = asio::ip::make_address(node->address, error);
  if (error || !on_link(old_holder, address.interface)) {
    spdlog::info(
        "vip {}: no connection handover from node {}: its address {} is in no subnet of {}",
        address.text, node->name, node->address, address.interface);
    return;
  }
  handover_->forward(number, address.prefix.address.to_v4(), old_holder.to_v4(), address.interface);
}

bool VipService::on_link(const asio::ip::address& peer, const std::string& interface) {
  auto listed = netlink_->list(interface);
  if (!listed) return false;
  return std::any_of(listed.value().begin(), listed.value().end(), [&](const auto& own) {
    return !own.keel_owned() && in_subnet(peer, own.prefix);
  });
}

io::AddressAnnouncer* VipService::announcer(const std::string& interface) {
  auto& slot = announcers_[interface];
  if (!slot) {
    auto opened = io::AddressAnnouncer::open(interface);
    if (!opened) {
      spdlog::error("vip: cannot announce on {}: {}", interface, opened.error().message);
      return nullptr;
    }
    slot = std::move(opened).value();
  }
  return slot.get();
}

void VipService::announce(std::uint32_t number, std::uint32_t round) {
  const Address& address = addresses_[number];
  const auto& pool = *pools_[address.pool].config;
  if (!address.held || node_->unconfirmed(number) || round >= pool.announce_count) return;
  if (auto* sender = announcer(address.interface)) {
    if (auto sent = sender->announce(address.prefix.address); !sent) {
      spdlog::warn("vip {}: announcement failed: {}", address.text, sent.error().message);
    }
    for (const auto& target : pool.notify) {
      asio::error_code error;
      const auto peer = asio::ip::make_address(target, error);
      if (error || peer.is_v4() != address.prefix.address.is_v4()) continue;
      if (auto sent = sender->announce_to(address.prefix.address, peer); !sent) {
        spdlog::warn("vip {}: announcement to {} failed: {}", address.text, target,
                     sent.error().message);
      }
    }
  }
  auto timer = std::make_shared<asio::steady_timer>(io_);
  timer->expires_after(std::chrono::milliseconds(pool.announce_interval_ms));
  timer->async_wait([this, timer, number, round](const asio::error_code& error) {
    if (!error && !stopped_) announce(number, round + 1);
  });
}

// Hooks run as `COMMAND... ADDRESS POOL` with KEEL_VIP_ADDRESS, KEEL_VIP_POOL and
// KEEL_VIP_INTERFACE set; the agent does not wait for them, only reaps them.
void VipService::run_hook(const std::string& command, const Address& address) {
  reap_hooks();
  if (command.empty()) return;
  auto words = io::split_command(command);
  if (!words) return;  // validated with the config
  std::vector<std::string> argv = std::move(words).value();
  argv.push_back(address.text);
  argv.push_back(pools_[address.pool].config->name);
  std::vector<std::string> env_strings = {"KEEL_VIP_ADDRESS=" + address.text,
                                          "KEEL_VIP_POOL=" + pools_[address.pool].config->name,
                                          "KEEL_VIP_INTERFACE=" + address.interface};
  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) env.push_back(*entry);
  for (auto& entry : env_strings) env.push_back(entry.data());
  env.push_back(nullptr);
  // The hook keeps the agent's standard streams; ChildSpawn gives it nothing else of the
  // agent's, and not the ring thread's real-time priority.
  io::ChildSpawn spawner({});
  auto spawned = spawner.spawn(argv, env.data());
  if (!spawned) {
    spdlog::error("vip {}: {}", address.text, spawned.error().message);
    return;
  }
  const pid_t pid = spawned.value();
  hook_children_.push_back(pid);
  auto timer = std::make_shared<asio::steady_timer>(io_);
  timer->expires_after(kHookReapPeriod);
  timer->async_wait([this, timer](const asio::error_code& error) {
    if (!error) reap_hooks();
  });
}

void VipService::reap_hooks() {
  std::erase_if(hook_children_, [](int pid) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
      spdlog::warn("vip hook (pid {}) failed with status {}", pid, status);
    }
    return done != 0;
  });
}

json VipService::status() const {
  const TimeUs now = io::monotonic_now_us();
  json pools = json::array();
  for (std::uint32_t number = 0; number < pools_.size(); ++number) {
    const Pool& pool = pools_[number];
    json addresses = json::array();
    for (std::uint32_t a = 0; a < addresses_.size(); ++a) {
      const Address& address = addresses_[a];
      if (address.pool != number) continue;
      const NodeId owner = node_->owner(a);
      json entry{
          {"address", address.text},   {"interface", address.interface},
          {"held_here", address.held}, {"holder", owner == kNoNode ? json(nullptr) : json(owner)},
          {"why", address.why},        {"acquisitions", address.acquisitions}};
      if (address.since_us != 0) entry["since_ms_ago"] = (now - address.since_us) / 1000;
      addresses.push_back(std::move(entry));
    }
    json entry{{"name", pool.config->name},
               {"served_here", pool.served},
               {"healthy_here", pool.healthy},
               {"addresses", std::move(addresses)}};
    if (pool.health) {
      const auto& health = pool.health->status();
      entry["health"] = {{"kind", io::to_string(pool.config->health->kind)},
                         {"state", io::to_string(health.state)},
                         {"checks", health.checks},
                         {"last_error", health.last_error}};
    }
    pools.push_back(std::move(entry));
  }
  return json{{"drained", node_->drained()},
              {"synced", node_->synced()},
              {"waiting_for", node_->waiting_for()},
              {"quiescent", node_->quiescent()},
              {"pools", std::move(pools)}};
}

}  // namespace keel::agent
