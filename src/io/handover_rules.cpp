#include "io/handover_rules.hpp"

#include <nftables/libnftables.h>

#include <algorithm>

namespace keel::io {
namespace {

std::string dotted_name(const asio::ip::address_v4& address) {
  std::string text = address.to_string();
  std::replace(text.begin(), text.end(), '.', '_');
  return text;
}

// Interface names are checked by the config (no quotes, no spaces); quoted for nft anyway.
std::string quoted(const std::string& text) { return "\"" + text + "\""; }

}  // namespace

Result<std::unique_ptr<HandoverRules>> HandoverRules::open() {
  nft_ctx* context = nft_ctx_new(NFT_CTX_DEFAULT);
  if (context == nullptr) return Error{"nftables: cannot create a context"};
  // Errors are read back from the buffer instead of being printed on stderr.
  if (nft_ctx_buffer_error(context) != 0 || nft_ctx_buffer_output(context) != 0) {
    nft_ctx_free(context);
    return Error{"nftables: cannot buffer its output"};
  }
  return std::unique_ptr<HandoverRules>(new HandoverRules(context));
}

HandoverRules::~HandoverRules() { nft_ctx_free(context_); }

std::string HandoverRules::forward_table(const asio::ip::address_v4& address) {
  return "keel_handover_" + dotted_name(address);
}

std::string HandoverRules::quiet_table(const asio::ip::address_v4& address) {
  return "keel_quiet_" + dotted_name(address);
}

Result<Ok> HandoverRules::run(const std::string& commands) {
  const int failed = nft_run_cmd_from_buffer(context_, commands.c_str());
  std::string error = nft_ctx_get_error_buffer(context_);
  if (failed == 0) return Ok{};
  // The first line is the message; the rest quotes the command text, which callers describe.
  error = error.substr(0, error.find('\n'));
  if (error.rfind("Error: ", 0) == 0) error.erase(0, 7);
  return Error{"nftables: " + (error.empty() ? std::string("the command failed") : error)};
}

Result<Ok> HandoverRules::delete_table(const std::string& family, const std::string& table) {
  // Adding first makes the delete succeed whether or not the table was there.
  return run("add table " + family + " " + table + "\ndelete table " + family + " " + table + "\n");
}

Result<Ok> HandoverRules::forward_unknown(const asio::ip::address_v4& address,
                                          const asio::ip::address_v4& old_holder,
                                          const std::string& interface) {
  const std::string table = forward_table(address);
  const std::string what = " (forwarding " + address.to_string() + " to " + old_holder.to_string() +
                           " on " + interface + ")";
  // Before conntrack (raw priority): the copy is the old holder's business, not this host's.
  // `socket wildcard 1`: the lookup found no connection, only a listener on 0.0.0.0.
  auto done =
      run("add table ip " + table + "\nflush table ip " + table + "\nadd chain ip " + table +
          " prerouting { type filter hook prerouting priority -300; }\nadd rule ip " + table +
          " prerouting ip daddr " + address.to_string() +
          " tcp flags & syn == 0 socket wildcard 1 dup to " + old_holder.to_string() + " device " +
          quoted(interface) + " drop\n");
  if (!done) return Error{done.error().message + what};
  return Ok{};
}

Result<Ok> HandoverRules::stop_forwarding(const asio::ip::address_v4& address) {
  return delete_table("ip", forward_table(address));
}

Result<Ok> HandoverRules::silence(const asio::ip::address_v4& address) {
  const std::string table = quiet_table(address);
  return run("add table arp " + table + "\nflush table arp " + table + "\nadd chain arp " + table +
             " output { type filter hook output priority 0; }\nadd rule arp " + table +
             " output arp saddr ip " + address.to_string() + " drop\n");
}

Result<Ok> HandoverRules::unsilence(const asio::ip::address_v4& address) {
  return delete_table("arp", quiet_table(address));
}

}  // namespace keel::io
