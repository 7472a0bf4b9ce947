#include "lab/names.hpp"

#include <algorithm>
#include <cstdio>

#include "core/common/assert.hpp"

namespace keel::lab {

static_assert(kMaxPrefixLength + 4 <= kMaxInterfaceName, "PREFIX-h28 must fit an interface name");
static_assert(kAddressOffset + kMaxLabHosts < 255, "host addresses must stay inside the /24");

std::string generate_prefix(std::uint64_t pid, std::uint64_t nanoseconds) {
  // A 64-bit mix (splitmix64's finaliser) so that close pids and close times differ widely.
  std::uint64_t x = pid * 0x9e3779b97f4a7c15ULL ^ nanoseconds;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  char text[8];
  std::snprintf(text, sizeof text, "kl%04x", static_cast<unsigned>(x & 0xffff));
  return text;
}

Result<Ok> validate_prefix(const std::string& prefix) {
  const auto is_lower = [](char c) { return c >= 'a' && c <= 'z'; };
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const bool shape_ok =
      !prefix.empty() && prefix.size() <= kMaxPrefixLength && is_lower(prefix.front()) &&
      std::all_of(prefix.begin(), prefix.end(), [&](char c) { return is_lower(c) || is_digit(c); });
  if (!shape_ok) {
    return Error{"prefix '" + prefix + "' must be a lowercase letter followed by at most " +
                 std::to_string(kMaxPrefixLength - 1) + " lowercase letters or digits"};
  }
  return Ok{};
}

LabNames::LabNames(std::string prefix) : prefix_(std::move(prefix)) {
  KEEL_ASSERT(validate_prefix(prefix_).ok());
}

bool LabNames::owns(const std::string& name) const {
  return name.size() > prefix_.size() && name.compare(0, prefix_.size(), prefix_) == 0 &&
         name[prefix_.size()] == '-';
}

Result<int> parse_host(const std::string& text, int hosts) {
  std::string digits = text;
  if (!digits.empty() && digits.front() == 'h') digits.erase(0, 1);
  const bool numeric =
      !digits.empty() && digits.size() <= 3 &&
      std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  const int index = numeric ? std::stoi(digits) : 0;
  if (index < 1 || index > hosts) {
    return Error{"no host '" + text + "': this lab has h1 .. h" + std::to_string(hosts)};
  }
  return index;
}

Result<std::vector<int>> parse_host_list(const std::string& text, int hosts) {
  std::vector<int> list;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = std::min(text.find(',', start), text.size());
    auto host = parse_host(text.substr(start, comma - start), hosts);
    if (!host) return host.error();
    if (std::find(list.begin(), list.end(), host.value()) != list.end()) {
      return Error{"host h" + std::to_string(host.value()) + " appears twice in '" + text + "'"};
    }
    list.push_back(host.value());
    start = comma + 1;
  }
  return list;
}

}  // namespace keel::lab
