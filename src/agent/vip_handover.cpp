#include "agent/vip_handover.hpp"

#include <spdlog/spdlog.h>

namespace keel::agent {

VipHandover::VipHandover(asio::io_context& io, std::chrono::milliseconds period,
                         std::unique_ptr<io::HandoverRules> rules)
    : io_(io), period_(period), rules_(std::move(rules)) {}

VipHandover::~VipHandover() { finish_all(); }

void VipHandover::warn_once(const std::string& what, const Error& error) {
  if (warned_) {
    spdlog::debug("vip handover: {}: {}", what, error.message);
    return;
  }
  warned_ = true;
  spdlog::warn("vip handover: {}: {} (connections open at a drain's switch may be reset)", what,
               error.message);
}

void VipHandover::forward(std::uint32_t number, const asio::ip::address_v4& address,
                          const asio::ip::address_v4& old_holder, const std::string& interface) {
  if (!enabled()) return;
  stop_forwarding(number);
  if (auto done = rules_->forward_unknown(address, old_holder, interface); !done) {
    warn_once("forwarding " + address.to_string(), done.error());
    return;
  }
  spdlog::info("vip {}: for {} ms, connections this host does not know go to {}",
               address.to_string(), period_.count(), old_holder.to_string());
  Timed& entry = forwarded_[number];
  entry.address = address;
  entry.timer = std::make_unique<asio::steady_timer>(io_, period_);
  entry.timer->async_wait([this, number](const asio::error_code& error) {
    if (!error) stop_forwarding(number);
  });
}

void VipHandover::stop_forwarding(std::uint32_t number) {
  auto found = forwarded_.find(number);
  if (found == forwarded_.end()) return;
  found->second.timer->cancel();
  if (auto done = rules_->stop_forwarding(found->second.address); !done) {
    warn_once("ending forwarding", done.error());
  }
  forwarded_.erase(found);
}

void VipHandover::keep_quietly(std::uint32_t number, const asio::ip::address_v4& address,
                               std::function<void()> release) {
  if (!enabled()) {
    release();
    return;
  }
  if (auto done = rules_->silence(address); !done) {
    // An adopted address stays in adopted_: release() ends its silence once it is deleted.
    warn_once("silencing " + address.to_string(), done.error());
    release();
    return;
  }
  // Already silent if it was adopted: the handover's period now decides when that ends.
  adopted_.erase(number);
  unsilence_failed_.erase(number);
  Timed& entry = kept_[number];
  entry.address = address;
  entry.release = std::move(release);
  entry.timer = std::make_unique<asio::steady_timer>(io_, period_);
  entry.timer->async_wait([this, number](const asio::error_code& error) {
    if (!error) end_kept(number, true);
  });
}

void VipHandover::end_kept(std::uint32_t number, bool release) {
  auto found = kept_.find(number);
  if (found == kept_.end()) return;
  Timed entry = std::move(found->second);
  kept_.erase(found);
  entry.timer->cancel();
  if (!release) return unsilence(number, entry.address);
  // Deleted before ARP is allowed again, so that the address is never announced from here. Its
  // silence then ends as an adopted address's does: once the delete works (the service's
  // release() or a retry of a failed delete ends it), never while the address is still here.
  adopted_[number] = entry.address;
  entry.release();
}

void VipHandover::unsilence(std::uint32_t number, const asio::ip::address_v4& address) {
  if (auto done = rules_->unsilence(address); !done) {
    if (unsilence_failed_.count(number) == 0) {
      spdlog::warn("vip {}: cannot let it answer ARP again (trying again): {}", address.to_string(),
                   done.error().message);
    }
    unsilence_failed_[number] = address;
    return;
  }
  if (unsilence_failed_.erase(number) != 0) {
    spdlog::info("vip {}: answers ARP again", address.to_string());
  }
}

void VipHandover::retry_unsilence() {
  const auto failed = unsilence_failed_;
  for (const auto& [number, address] : failed) unsilence(number, address);
}

void VipHandover::take_back(std::uint32_t number) { end_kept(number, false); }

Result<Ok> VipHandover::silence_adopted(std::uint32_t number, const asio::ip::address_v4& address) {
  if (!rules_) return Error{"no nftables rules"};
  // Recorded even if silencing fails: a rule the killed agent left for it (kept at start) must
  // still go when placement confirms the address here.
  adopted_[number] = address;
  unsilence_failed_.erase(number);
  return rules_->silence(address);
}

void VipHandover::end_adopted_silence(std::uint32_t number) {
  auto found = adopted_.find(number);
  if (found == adopted_.end()) return;
  const asio::ip::address_v4 address = found->second;
  adopted_.erase(found);
  unsilence(number, address);
}

void VipHandover::finish_all() {
  while (!kept_.empty()) end_kept(kept_.begin()->first, true);
  while (!forwarded_.empty()) stop_forwarding(forwarded_.begin()->first);
}

}  // namespace keel::agent
