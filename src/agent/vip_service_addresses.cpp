// VipService's changes to the kernel's addresses: adding an address placement gave this host,
// deleting one it took away, and trying either again when the kernel refuses it
// (agent/vip_service.hpp).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "agent/vip_service.hpp"
#include "core/common/assert.hpp"
#include "io/clock.hpp"

namespace keel::agent {
namespace {

constexpr auto kRetryFirst = std::chrono::milliseconds(200);
constexpr auto kRetryMax = std::chrono::milliseconds(10'000);
constexpr TimeUs kFailureLogPeriodUs = 30'000'000;
constexpr auto kHeldCheckPeriod = std::chrono::milliseconds(1500);

// The wait before trying a failed add or delete again: kRetryFirst after the first failure in a
// row, doubling with each further one, up to kRetryMax.
std::chrono::milliseconds retry_wait(std::uint32_t failures) {
  KEEL_ASSERT(failures > 0);
  return std::min<std::chrono::milliseconds>(kRetryMax,
                                             kRetryFirst * (1u << std::min(failures - 1, 10u)));
}

}  // namespace

bool VipService::acquire(std::uint32_t number) {
  Address& address = addresses_[number];
  if (handover_) handover_->take_back(number);  // a no-op unless it is kept here
  cancel_delete(number);                        // wanted here again: it may stay
  // Before the address exists here: no neighbour can switch to this host before the rule is in.
  start_forwarding(number);
  auto added = netlink_->add(address.interface, address.prefix);
  if (!added) {
    if (handover_) handover_->stop_forwarding(number);
    add_failed(number, added.error().message);
    return false;
  }
  if (address.add_failures > 0) {
    spdlog::info("vip {}: added to {} after {} failed attempts", address.text, address.interface,
                 address.add_failures);
  }
  address.add_pending = false;
  address.add_failures = 0;
  address.foreign = added.value() == io::AddOutcome::kAlreadyPresent && !marked_as_keels(address);
  address.held = true;
  address.since_us = io::monotonic_now_us();
  address.why = added.value() == io::AddOutcome::kAdded
                    ? "acquired: placement gave it here"
                    : "acquired: it was already on the interface";
  ++address.acquisitions;
  spdlog::info("vip {}: acquired on {}", address.text, address.interface);
  announce(number, 0);
  run_hook(pools_[address.pool].config->on_acquire, address);
  return true;
}

// The core hears that the add failed: the address is not held here, and the pool is unhealthy
// here until the retry (add_failed()).
void VipService::not_added(std::uint32_t number) {
  node_->acquire_failed(number, io::monotonic_now_us());
  drop_pending(number);
}

// An address that was already on the interface when keel added it is keel's only if it carries
// keel's mark. One that does not was configured by someone else (docs/vip-kernel.md: unmarked
// addresses are never touched): keel uses it while placement gives it here, but never deletes
// it. On a kernel that does not keep the mark nothing can be told apart, and keel takes the
// address as its own, as it would a leftover of its own crash (the warning at open says so).
bool VipService::marked_as_keels(const Address& address) {
  if (!mark_kept_) return true;
  auto listed = netlink_->list(address.interface);
  if (!listed) return true;  // the add just worked: a failure here is a passing one
  for (const auto& found : listed.value()) {
    if (found.prefix.address != address.prefix.address) continue;
    if (found.keel_owned()) return true;
    spdlog::warn(
        "vip {}: already on {} without keel's mark (configured outside keel): used "
        "here, but keel will not delete it",
        address.text, address.interface);
    return false;
  }
  return true;
}

// Placement gave the address here but the kernel refused it (most often: the interface is gone
// for a moment). The pool counts as unhealthy here until a retry is due, so that its addresses go
// to a host that can hold them; then it counts as healthy again (if its check passes) and
// placement gives this host its share back, which tries the add again. The wait doubles with each
// failure of the same address in a row, up to kRetryMax, and so does the log's silence.
void VipService::add_failed(std::uint32_t number, const std::string& error) {
  Address& address = addresses_[number];
  Pool& pool = pools_[address.pool];
  address.add_pending = true;  // the core counts it as held here until it releases it
  address.why = "add failed: " + error;
  ++address.add_failures;
  const auto wait = retry_wait(address.add_failures);
  const TimeUs now = io::monotonic_now_us();
  if (address.add_failures == 1 || now - pool.add_failure_logged_us >= kFailureLogPeriodUs) {
    pool.add_failure_logged_us = now;
    spdlog::error(
        "vip {}: cannot add to {}: {} (failure {} in a row); pool {} counts as "
        "unhealthy here, trying again in {} ms",
        address.text, address.interface, error, address.add_failures, pool.config->name,
        wait.count());
  }
  if (pool.add_failing) return;  // a retry is already due
  pool.add_failing = true;
  // Posted: the core must not be re-entered from inside its own actions.
  asio::post(io_, [this, index = address.pool] { report_health(index, "an address add failed"); });
  pool.add_retry = std::make_unique<asio::steady_timer>(io_, wait);
  pool.add_retry->async_wait([this, index = address.pool](const asio::error_code& failed) {
    if (failed || stopped_) return;
    pools_[index].add_failing = false;
    report_health(index, "trying the failed add again");
  });
}

// The core let go of an address whose add had failed: nothing to delete, no hook to run.
void VipService::drop_pending(std::uint32_t number) {
  Address& address = addresses_[number];
  address.add_pending = false;
  address.since_us = io::monotonic_now_us();
  address.why = "released before it could be added (" + address.why + ")";
  spdlog::info("vip {}: released (it was never added here)", address.text);
}

void VipService::release(std::uint32_t number, const std::string& why) {
  Address& address = addresses_[number];
  if (handover_) handover_->stop_forwarding(number);
  Result<io::DeleteOutcome> removed = io::DeleteOutcome::kAlreadyGone;
  if (address.foreign) {
    spdlog::warn("vip {}: left on {}: it was there without keel's mark before keel took it",
                 address.text, address.interface);
  } else {
    removed = netlink_->remove(address.interface, address.prefix);
  }
  address.foreign = false;
  address.quiet = false;
  address.held = false;
  address.since_us = io::monotonic_now_us();
  address.why = why;
  spdlog::info("vip {}: {}", address.text, why);
  if (!removed) {
    delete_failed(number, removed.error().message);  // silent meanwhile if it was adopted
  } else if (handover_) {
    handover_->end_adopted_silence(number);
  }
  run_hook(pools_[address.pool].config->on_release, address);
}

// The kernel refused to delete an address placement has taken away from this host (a netlink
// error, the interface renamed for a while, the agent without CAP_NET_ADMIN). Placement counts it
// as released all the same, and another host is about to add it: left here, it would be on two
// hosts, both answering ARP for it. So the delete is tried again after retry_wait(), until it
// works, the address is gone, or placement gives it back here (acquire() ends the retries). The
// log's silence grows as for adds. A timer per address rather than the 1.5 s held-address check:
// the first retries come sooner, and the check looks only at held addresses.
void VipService::delete_failed(std::uint32_t number, const std::string& error) {
  Address& address = addresses_[number];
  address.why = "released, but the delete failed (" + error + ")";
  if (stopped_) {
    spdlog::error("vip {}: cannot delete from {}: {}; left there at shutdown, delete it by hand",
                  address.text, address.interface, error);
    return;
  }
  address.why += "; trying again";
  address.delete_pending = true;
  ++address.delete_failures;
  const auto wait = retry_wait(address.delete_failures);
  const TimeUs now = io::monotonic_now_us();
  if (address.delete_failures == 1 ||
      now - address.delete_failure_logged_us >= kFailureLogPeriodUs) {
    address.delete_failure_logged_us = now;
    spdlog::error(
        "vip {}: cannot delete from {}: {} (failure {} in a row); it is still here although "
        "placement released it, trying again in {} ms",
        address.text, address.interface, error, address.delete_failures, wait.count());
  }
  if (!address.delete_retry) address.delete_retry = std::make_unique<asio::steady_timer>(io_);
  address.delete_retry->expires_after(wait);
  address.delete_retry->async_wait([this, number](const asio::error_code& failed) {
    if (failed || stopped_) return;
    retry_delete(number);
  });
}

void VipService::retry_delete(std::uint32_t number) {
  Address& address = addresses_[number];
  if (!address.delete_pending) return;
  // Only keel's own address is deleted. One found there without keel's mark was configured by
  // someone else since (keel's was deleted after all, by hand or with its interface): theirs.
  if (mark_kept_) {
    if (auto listed = netlink_->list(address.interface)) {
      const auto found =
          std::find_if(listed.value().begin(), listed.value().end(),
                       [&](const auto& a) { return a.prefix.address == address.prefix.address; });
      if (found == listed.value().end() || !found->keel_owned()) {
        spdlog::info("vip {}: {} from {}; no longer deleting it", address.text,
                     found == listed.value().end() ? "gone" : "now there without keel's mark",
                     address.interface);
        cancel_delete(number);
        return;
      }
    }  // else the interface cannot be listed: the delete below fails and is tried again
  }
  auto removed = netlink_->remove(address.interface, address.prefix);
  if (!removed) {
    delete_failed(number, removed.error().message);
    return;
  }
  spdlog::info("vip {}: deleted from {} after {} failed attempts", address.text, address.interface,
               address.delete_failures);
  address.why = "deleted after " + std::to_string(address.delete_failures) + " failed attempts";
  cancel_delete(number);
}

// No more delete retries for the address: it was deleted, it is gone, or it is wanted here.
// Either way an adopted address's ARP silence is no longer needed.
void VipService::cancel_delete(std::uint32_t number) {
  if (handover_) handover_->end_adopted_silence(number);
  Address& address = addresses_[number];
  if (address.delete_retry) address.delete_retry->cancel();
  address.delete_pending = false;
  address.delete_failures = 0;
}

// A drained host's address, just taken over by its new holder: kept (silent) for the handover
// period so that the connections the neighbours opened here before they switched can finish.
void VipService::release_after_handover(std::uint32_t number) {
  Address& address = addresses_[number];
  if (!handover_->enabled() || !address.prefix.address.is_v4()) {
    release(number, "released: handed over (drained)");
    return;
  }
  address.held = false;
  address.since_us = io::monotonic_now_us();
  address.why = "handed over (drained); kept without ARP for open connections";
  spdlog::info("vip {}: {}", address.text, address.why);
  handover_->keep_quietly(number, address.prefix.address.to_v4(), [this, number] {
    release(number, "released: handed over (drained), handover period over");
  });
}

void VipService::arm_held_check() {
  held_check_timer_.expires_after(kHeldCheckPeriod);
  held_check_timer_.async_wait([this](const asio::error_code& error) {
    if (error || stopped_) return;
    check_held();
    if (handover_) handover_->retry_unsilence();
    arm_held_check();
  });
}

// An address keel holds can vanish without keel doing anything: `ip addr flush`, a link flap
// (the kernel deletes global IPv6 addresses when the link goes down), the deletion of the
// subnet's primary IPv4 address (which takes the secondaries with it). Nothing tells keel, which
// would go on reporting it held while nobody answers for it. So every kHeldCheckPeriod one dump
// per interface with held addresses looks for them, and a missing one is added and announced
// again (or, if that fails, handled as any failed add).
void VipService::check_held() {
  std::map<std::string, std::vector<io::InterfaceAddress>> present;
  std::vector<std::uint32_t> failed;
  for (std::uint32_t number = 0; number < addresses_.size(); ++number) {
    Address& address = addresses_[number];
    if (!address.held) continue;
    auto [slot, fresh] = present.try_emplace(address.interface);
    if (fresh) {
      // An interface that cannot be listed (gone) has none of its addresses.
      if (auto listed = netlink_->list(address.interface)) slot->second = std::move(listed).value();
    }
    const bool found = std::any_of(slot->second.begin(), slot->second.end(), [&](const auto& a) {
      return a.prefix.address == address.prefix.address;
    });
    if (found) continue;
    spdlog::warn("vip {}: held here but gone from {} (deleted outside keel); adding it again",
                 address.text, address.interface);
    auto added = netlink_->add(address.interface, address.prefix);
    if (!added) {
      address.held = false;
      address.since_us = io::monotonic_now_us();
      add_failed(number, added.error().message);
      failed.push_back(number);
      continue;
    }
    // Present after all (a listing that failed, or added meanwhile): keel's only with its mark.
    address.foreign = added.value() == io::AddOutcome::kAlreadyPresent && !marked_as_keels(address);
    address.why = "added again: it had been deleted outside keel";
    announce(number, 0);
  }
  for (const std::uint32_t number : failed) not_added(number);
  if (!failed.empty()) run_actions();
}

}  // namespace keel::agent
