// Reading typed fields out of toml++ tables with messages that name the line, the section and
// the key: the pieces parse_config() and the sections in their own files (vip_config.cpp) share.
//
// Every reader takes an optional key: absent, it returns false and leaves `out` alone; present
// but wrong (type, range, control characters), it adds a problem and returns false.
//
// Thread-safety: pure functions.
#pragma once

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.hpp"

namespace keel::config::detail {

// "an integer", "a string", ...: what a value is, for messages.
std::string type_name(const toml::node& node);

inline int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }
inline int line_of(const toml::key& key) { return static_cast<int>(key.source().begin.line); }

// Reports keys of `table` not in `keys`, suggesting the nearest known one, or else what
// `elsewhere(name)` returns (" (it belongs in [ring])"; may be empty).
void check_keys(const toml::table& table, std::string_view label,
                const std::vector<std::string_view>& keys, Problems& problems,
                const std::function<std::string(std::string_view)>& elsewhere = {});

template <typename T>
bool read_integer(const toml::table& table, std::string_view key, std::string_view label,
                  std::int64_t low, std::int64_t high, T& out, Problems& problems) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return false;
  const auto* integer = node->as_integer();
  if (integer == nullptr) {
    problems.add(line_of(*node),
                 fmt::format("{} {} must be an integer, not {}", label, key, type_name(*node)));
    return false;
  }
  const std::int64_t value = integer->get();
  if (value < low || value > high) {
    problems.add(line_of(*node), fmt::format("{} {} must be between {} and {} (got {})", label, key,
                                             low, high, value));
    return false;
  }
  out = static_cast<T>(value);
  return true;
}

bool read_string(const toml::table& table, std::string_view key, std::string_view label,
                 std::string& out, Problems& problems);
bool read_bool(const toml::table& table, std::string_view key, std::string_view label, bool& out,
               Problems& problems);
// Reports a name (cluster, node, ...) that is not 1 to kMaxNameBytes of [A-Za-z0-9._-].
void check_name(const toml::table& table, std::string_view key, std::string_view what,
                const std::string& name, Problems& problems);

// Whether the last component of `path` can name a file: not "" (as in "/run/keel/"), "." or "..",
// which name directories. A socket path that names a directory is refused only by bind().
bool names_a_file(std::string_view path);

// An array of strings; each element checked as read_string checks a string.
bool read_string_array(const toml::table& table, std::string_view key, std::string_view label,
                       std::vector<std::string>& out, Problems& problems);

}  // namespace keel::config::detail
