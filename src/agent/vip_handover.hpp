// VipHandover: the timed side of a drain's connection handover (io/handover_rules.hpp explains
// the rules). For `period` after a make-before-break handover of an IPv4 address:
//   - on the new holder, packets of connections it does not know are forwarded to the old holder
//     (forward(); undone when the period ends or the address is released here);
//   - on the old holder, the address stays on the interface without ARP (keep_quietly()), and
//     is deleted when the period ends, by the callback given, unless placement gives the address
//     back here first (take_back()).
// finish_all() ends every period at once (agent shutdown). A host whose rules cannot be installed
// hands over as before, and says so once in the log.
//
// The same ARP silence serves an address adopted at start (agent/vip_service.hpp): held here
// from before the agent's restart, but not this host's until placement confirms it, since another
// host may have taken it over meanwhile; answering ARP for it then would pull the neighbours'
// traffic away from that host. silence_adopted() keeps it quiet until end_adopted_silence(),
// whatever the handover period (it needs only the rules).
//
// Thread-safety: none; the agent's io_context thread.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/common/result.hpp"
#include "io/handover_rules.hpp"

namespace keel::agent {

class VipHandover {
 public:
  // `rules` may be null: nothing is installed and keep_quietly() releases at once. A `period` of
  // zero turns the drain's handover off; adopted addresses are still silenced with the rules.
  VipHandover(asio::io_context& io, std::chrono::milliseconds period,
              std::unique_ptr<io::HandoverRules> rules);
  ~VipHandover();

  // Whether a drain hands addresses over (rules installed, a period set).
  bool enabled() const { return rules_ != nullptr && period_.count() > 0; }
  std::chrono::milliseconds period() const { return period_; }

  void forward(std::uint32_t number, const asio::ip::address_v4& address,
               const asio::ip::address_v4& old_holder, const std::string& interface);
  void stop_forwarding(std::uint32_t number);
  // Silences `address` and calls `release` when the period ends (at once if silencing fails).
  void keep_quietly(std::uint32_t number, const asio::ip::address_v4& address,
                    std::function<void()> release);
  bool kept(std::uint32_t number) const { return kept_.count(number) != 0; }
  // Placement gave a kept address back to this host: it is no longer released, and speaks ARP.
  void take_back(std::uint32_t number);
  // No address kept quietly (a stopping agent waits for this before it leaves the ring).
  bool idle() const { return kept_.empty(); }
  void finish_all();

  // Keeps adopted `address` from answering ARP, or says why it cannot.
  Result<Ok> silence_adopted(std::uint32_t number, const asio::ip::address_v4& address);
  // Placement confirmed it here, or it was deleted: it may speak ARP again (if it is still on the
  // interface). A no-op for an address not silenced by silence_adopted().
  void end_adopted_silence(std::uint32_t number);
  // Tries again to lift the silences whose removal failed: a rule left in place would keep the
  // address from answering ARP whenever it is held here later. Called periodically.
  void retry_unsilence();

 private:
  struct Timed {
    asio::ip::address_v4 address;
    std::unique_ptr<asio::steady_timer> timer;
    std::function<void()> release;  // kept addresses only
  };
  void warn_once(const std::string& what, const Error& error);
  void end_kept(std::uint32_t number, bool release);
  // Lifts the silence of `address`, or remembers it for retry_unsilence().
  void unsilence(std::uint32_t number, const asio::ip::address_v4& address);

  asio::io_context& io_;
  std::chrono::milliseconds period_;
  std::unique_ptr<io::HandoverRules> rules_;
  std::map<std::uint32_t, Timed> forwarded_;  // by address number
  std::map<std::uint32_t, Timed> kept_;
  std::map<std::uint32_t, asio::ip::address_v4> adopted_;  // silenced until confirmed
  std::map<std::uint32_t, asio::ip::address_v4> unsilence_failed_;
  bool warned_ = false;
};

}  // namespace keel::agent
