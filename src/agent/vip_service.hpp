// VipService: this host's floating IPs. Wires the placement core (core/vip/vip_node.hpp) to the
// kernel and to the ring:
//   ring views and keel.vip group messages  -> VipNode
//   VipNode Broadcast                       -> a keel.vip group message (retried while the
//                                              ring's send queue is full)
//   VipNode Acquire                         -> netlink add (marked as keel's), then gratuitous
//                                              ARP / unsolicited NA rounds, then the on_acquire
//                                              hook
//   VipNode Release                         -> netlink delete, then the on_release hook
//                                              (after a drain's handover of an IPv4 address:
//                                              kept without ARP for [vip] handover_ms first,
//                                              while the new holder forwards the connections it
//                                              does not know here: agent/vip_handover.hpp)
//   health checks (io/health_check.hpp)     -> VipNode::set_healthy
//   `keel node drain|undrain`               -> VipNode::drain / undrain
// One steady_timer follows VipNode::next_deadline().
//
// At open(), before the ring runs: every pool this host may serve must have its interface, and
// each address must lie in a subnet already configured on it (else the kernel would have no
// route to announce it on; the error names both). Addresses carrying keel's mark are adopted if
// the config still has them on that interface and deleted otherwise (stale), on every interface
// of the namespace; an earlier run's handover tables are removed, the handover on or off
// (agent/vip_leftovers.hpp). An adopted address is not announced until placement says it is this
// host's (VipNode::unconfirmed() says when): the agent before this one may have been gone long
// enough for another host to take it over, and an announcement would steal its traffic; if
// placement gives it elsewhere it is deleted unannounced. For the same reason an adopted IPv4
// address answers no ARP until then (VipHandover::silence_adopted(); a warning if nftables
// cannot do it), and stays silent if its delete fails, until the delete works.
// An address found there without the mark when keel goes to add it is used but never deleted. The
// mark needs Linux 6.1 or later; on an older kernel open() logs a warning. A failed add makes
// the pool count as unhealthy here for a while (200 ms, doubling with each failure of the address
// in a row up to 10 s), so its addresses go elsewhere; then placement gives this host its share
// back and the add is tried again. An address never added is never deleted and runs no hook.
// A failed delete is tried again on the same schedule (200 ms doubling to 10 s) until it works,
// the address is gone, or placement gives it back here: placement already counts it as released
// and another host will add it, so left here it would be answered for twice.
//
// Every 1.5 s one netlink dump per interface checks that the held addresses are still there; one
// deleted outside keel (a flush, a link flap, its IPv4 primary deleted) is added and announced
// again.
//
// After every regular view, once placement has settled (VipNode::quiescent), every held address
// is announced again: after a merge, neighbours may have followed the other side's holder.
//
// At shutdown (SIGTERM) every held address is deleted before the ring is left, so the others
// take them over as soon as they see the leave. If the agent is killed instead, the addresses
// stay on this host's interface until it restarts and reconciles; meanwhile the new holders'
// announcements have moved the neighbours' caches (docs/vip.md discusses this).
//
// Thread-safety: none; everything on the agent's io_context thread.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "agent/vip_handover.hpp"
#include "config/config.hpp"
#include "core/common/result.hpp"
#include "core/ring/events.hpp"
#include "core/vip/vip_node.hpp"
#include "io/address_announcer.hpp"
#include "io/health_check.hpp"
#include "io/netlink_addresses.hpp"

namespace keel::agent {

class VipService {
 public:
  // Sends a payload to the keel.vip group (agreed order); an error when the ring refuses it.
  using Broadcaster = std::function<Result<Ok>(const Bytes& payload)>;

  static Result<std::unique_ptr<VipService>> open(asio::io_context& io,
                                                  const config::ClusterConfig& config, NodeId self,
                                                  Broadcaster broadcast);
  ~VipService();
  VipService(const VipService&) = delete;
  VipService& operator=(const VipService&) = delete;

  // Starts the health checks (pools without one are healthy at once).
  void start();
  void on_view(const ring::View& view);
  void on_message(NodeId origin, std::span<const std::uint8_t> payload);
  Result<Ok> drain();
  Result<Ok> undrain();
  // Drained, every address that another host may hold has moved there, and no address is still
  // kept for the connections open at the switch.
  bool handed_over() const {
    return node_->drained() && node_->quiescent() && (!handover_ || handover_->idle());
  }
  std::chrono::milliseconds handover_period() const {
    return std::chrono::milliseconds(config_.handover_ms);
  }
  // Deletes every held address and stops; nothing runs afterwards.
  void stop();

  // What `keel vip status` shows: every pool and address, its holder, since when and why.
  nlohmann::json status() const;

 private:
  struct Address {
    std::uint32_t pool = 0;
    io::IpPrefix prefix;
    std::string text;
    std::string interface;
    bool held = false;
    TimeUs since_us = 0;  // when `held` last changed here
    std::string why;      // what last happened to it here
    std::uint64_t acquisitions = 0;
    bool add_pending = false;        // placement gave it here, the add failed: not on the interface
    std::uint32_t add_failures = 0;  // failed adds in a row
    bool foreign = false;            // held, but it was there without keel's mark: never deleted
    bool quiet = false;           // adopted and VipNode::unconfirmed(): held, but not announced yet
    bool delete_pending = false;  // released, but the delete failed: still on the interface
    std::uint32_t delete_failures = 0;  // failed deletes in a row
    std::unique_ptr<asio::steady_timer> delete_retry;
    TimeUs delete_failure_logged_us = 0;
  };
  struct Pool {
    const config::VipPoolConfig* config = nullptr;
    bool served = false;  // this host is one of its nodes
    std::unique_ptr<io::HealthCheck> health;
    bool check_healthy = false;  // what the health check says (true without one)
    bool add_failing = false;    // an add failed: unhealthy here until add_retry fires
    std::unique_ptr<asio::steady_timer> add_retry;
    TimeUs add_failure_logged_us = 0;
    bool healthy = false;  // what the core was last told: check_healthy && !add_failing
  };

  VipService(asio::io_context& io, const config::ClusterConfig& config, NodeId self,
             Broadcaster broadcast);
  void check_kernel();
  Result<std::vector<std::uint32_t>> reconcile_interfaces();
  void make_node(std::vector<std::uint32_t> adopted);
  void run_actions();
  bool acquire(std::uint32_t address);  // false: the add failed (add_failed() ran)
  void not_added(std::uint32_t address);
  bool handing_over(std::uint32_t address) const;
  void add_failed(std::uint32_t address, const std::string& error);
  void drop_pending(std::uint32_t address);
  bool marked_as_keels(const Address& address);
  void arm_held_check();
  void check_held();
  void release(std::uint32_t address, const std::string& why);
  void delete_failed(std::uint32_t address, const std::string& error);
  void retry_delete(std::uint32_t address);
  void cancel_delete(std::uint32_t address);
  void release_after_handover(std::uint32_t address);
  void start_forwarding(std::uint32_t address);
  bool on_link(const asio::ip::address& peer, const std::string& interface);
  void open_handover();
  void silence_adopted();
  void announce(std::uint32_t address, std::uint32_t round);
  void announce_confirmed();
  void flush_broadcasts();
  void run_hook(const std::string& command, const Address& address);
  void reap_hooks();
  void arm_timer();
  void set_health(std::uint32_t pool, bool healthy, const std::string& why);
  void report_health(std::uint32_t pool, const std::string& why);
  io::AddressAnnouncer* announcer(const std::string& interface);

  asio::io_context& io_;
  config::VipConfig config_;
  std::vector<config::NodeConfig> nodes_;
  NodeId self_;
  Broadcaster broadcast_;
  std::unique_ptr<io::NetlinkAddresses> netlink_;
  std::map<std::string, std::unique_ptr<io::AddressAnnouncer>> announcers_;
  std::unique_ptr<vip::VipNode> node_;
  std::unique_ptr<VipHandover> handover_;
  std::vector<Pool> pools_;
  std::vector<Address> addresses_;  // by global address number
  std::deque<Bytes> pending_broadcasts_;
  std::vector<int> hook_children_;
  asio::steady_timer timer_;
  asio::steady_timer retry_timer_;
  asio::steady_timer held_check_timer_;  // the periodic look for held addresses gone missing
  bool reannounce_ = false;              // announce every held address once the view has settled
  bool stopped_ = false;
  bool mark_kept_ = true;  // the kernel keeps IFA_PROTO (Linux 6.1+): keel's mark can be read
};

}  // namespace keel::agent
