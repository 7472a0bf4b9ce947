// HandoverRules: the nftables rules that let a drain move an IPv4 floating address without
// resetting the connections open at the moment the neighbours switch (docs/vip-kernel.md).
//
// A drain is make-before-break: the new holder adds the address and announces it, then the
// drained (old) holder lets it go. Neighbours switch to the new holder's MAC when they hear the
// announcement, and the next packet of a connection the old holder accepted a moment earlier
// reaches a host that never saw it and answers with a reset. For the handover period:
//   - the new holder forwards such packets to the old holder (`forward_unknown`): TCP to the
//     address, without SYN, whose socket lookup finds only a listener bound to the wildcard
//     address (so no connection of its own), is copied to the old holder's address on the
//     interface and dropped here;
//   - the old holder keeps the address but sends no ARP for it (`silence`), so that nobody
//     switches back, and answers the forwarded packets from its own sockets.
// Each rule set is a table of its own, named after the address, so that removing it cannot
// touch anything else: `ip keel_handover_A_B_C_D` and `arp keel_quiet_A_B_C_D`. A killed agent
// leaves its tables behind; remove_leftovers() finds them by exactly these names and families.
//
// Calls are synchronous (libnftables, no process spawned) and take about a millisecond. The rules
// live in the network namespace of the caller. Thread-safety: none; one thread at a time.
#pragma once

#include <asio/ip/address_v4.hpp>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/common/result.hpp"

struct nft_ctx;

namespace keel::io {

class HandoverRules {
 public:
  static Result<std::unique_ptr<HandoverRules>> open();
  ~HandoverRules();
  HandoverRules(const HandoverRules&) = delete;
  HandoverRules& operator=(const HandoverRules&) = delete;

  // New holder: packets of connections this host does not know, to `address`, go to `old_holder`
  // out of `interface`.
  Result<Ok> forward_unknown(const asio::ip::address_v4& address,
                             const asio::ip::address_v4& old_holder, const std::string& interface);
  Result<Ok> stop_forwarding(const asio::ip::address_v4& address);
  // Old holder: no ARP leaves this host with `address` as its sender.
  Result<Ok> silence(const asio::ip::address_v4& address);
  Result<Ok> unsilence(const asio::ip::address_v4& address);

  static std::string forward_table(const asio::ip::address_v4& address);
  static std::string quiet_table(const asio::ip::address_v4& address);
  // Whether table `name` of `family` ("ip", "arp") is one that forward_unknown() or silence()
  // makes, for some address: only such a table is keel's to remove.
  static bool made_by_keel(const std::string& family, const std::string& name);

  // Deletes every table of this namespace that made_by_keel() and `keep` does not name; returns
  // them ("arp NAME"). A table that cannot be deleted does not stop the others: the first such
  // error is returned once all were tried.
  Result<std::vector<std::string>> remove_leftovers(const std::set<std::string>& keep = {});

 private:
  explicit HandoverRules(nft_ctx* context) : context_(context) {}
  Result<Ok> run(const std::string& commands);
  Result<std::string> output_of(const std::string& command);
  // Deleting a table that is not there is not an error: the rule is gone either way.
  Result<Ok> delete_table(const std::string& family, const std::string& table);

  nft_ctx* context_;
};

}  // namespace keel::io
