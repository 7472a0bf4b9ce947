#include "io/handover_rules.hpp"

#include <nftables/libnftables.h>

#include <algorithm>
#include <optional>
#include <sstream>

namespace keel::io {
namespace {

constexpr const char* kForwardTablePrefix = "keel_handover_";
constexpr const char* kQuietTablePrefix = "keel_quiet_";

std::string dotted_name(const asio::ip::address_v4& address) {
  std::string text = address.to_string();
  std::replace(text.begin(), text.end(), '.', '_');
  return text;
}

// Interface names are checked by the config (no quotes, no spaces); quoted for nft anyway.
std::string quoted(const std::string& text) { return "\"" + text + "\""; }

// The address a table name `prefix` + A_B_C_D is named after, if the rest reads as one.
std::optional<asio::ip::address_v4> named_address(const std::string& name,
                                                  const std::string& prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  std::string dotted = name.substr(prefix.size());
  std::replace(dotted.begin(), dotted.end(), '_', '.');
  asio::error_code error;
  const auto address = asio::ip::make_address_v4(dotted, error);
  if (error) return std::nullopt;
  return address;
}

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
  return kForwardTablePrefix + dotted_name(address);
}

std::string HandoverRules::quiet_table(const asio::ip::address_v4& address) {
  return kQuietTablePrefix + dotted_name(address);
}

bool HandoverRules::made_by_keel(const std::string& family, const std::string& name) {
  // Named exactly as keel names them (so no other spelling of an address, and nothing after it).
  if (family == "ip") {
    const auto address = named_address(name, kForwardTablePrefix);
    return address && forward_table(*address) == name;
  }
  if (family == "arp") {
    const auto address = named_address(name, kQuietTablePrefix);
    return address && quiet_table(*address) == name;
  }
  return false;
}

Result<std::vector<std::string>> HandoverRules::remove_leftovers(
    const std::set<std::string>& keep) {
  auto listed = output_of("list tables");
  if (!listed) return listed.error();
  // One line per table: "table FAMILY NAME".
  std::vector<std::string> removed;
  std::optional<Error> failed;
  std::istringstream lines(listed.value());
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string keyword, family, name, rest;
    if (!(words >> keyword >> family >> name) || keyword != "table" || (words >> rest)) continue;
    if (!made_by_keel(family, name) || keep.count(name) != 0) continue;
    if (auto deleted = delete_table(family, name); !deleted) {
      if (!failed) failed = Error{"table " + family + " " + name + ": " + deleted.error().message};
      continue;
    }
    removed.push_back(family + " " + name);
  }
  if (failed) return *failed;
  return removed;
}

Result<std::string> HandoverRules::output_of(const std::string& command) {
  nft_ctx_get_output_buffer(context_);  // starts the buffer afresh
  if (auto done = run(command); !done) return done.error();
  return std::string(nft_ctx_get_output_buffer(context_));
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
