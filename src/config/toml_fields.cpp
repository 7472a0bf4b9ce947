#include "config/toml_fields.hpp"

#include <algorithm>
#include <array>

namespace keel::config::detail {
namespace {

// ASCII's control characters. Bytes from 0x80 are UTF-8 (a \u escape in the file puts them
// there), not controls: as a signed char they were below ' ' and refused as such.
bool has_control_characters(const std::string& value) {
  return std::any_of(value.begin(), value.end(),
                     [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

}  // namespace

std::string type_name(const toml::node& node) {
  static constexpr std::array<const char*, 10> kNames = {
      "nothing",   "a table", "an array", "a string",   "an integer", "a floating-point number",
      "a boolean", "a date",  "a time",   "a date-time"};
  static_assert(static_cast<int>(toml::node_type::date_time) == 9);
  return kNames[static_cast<std::size_t>(node.type())];
}

void check_keys(const toml::table& table, std::string_view label,
                const std::vector<std::string_view>& keys, Problems& problems,
                const std::function<std::string(std::string_view)>& elsewhere) {
  for (auto&& [key, value] : table) {
    const auto name = key.str();
    if (std::find(keys.begin(), keys.end(), name) != keys.end()) continue;
    std::string message = fmt::format("unknown key '{}' in {}", printable(name), label);
    if (auto guess = closest(name, keys)) {
      message += fmt::format(" (did you mean {}?)", *guess);
    } else if (elsewhere) {
      message += elsewhere(name);
    }
    problems.add(line_of(key), std::move(message));
  }
}

bool read_string(const toml::table& table, std::string_view key, std::string_view label,
                 std::string& out, Problems& problems) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return false;
  const auto* text = node->as_string();
  if (text == nullptr) {
    problems.add(line_of(*node),
                 fmt::format("{} {} must be a string, not {}", label, key, type_name(*node)));
    return false;
  }
  if (has_control_characters(text->get())) {
    problems.add(line_of(*node),
                 fmt::format("{} {} must not contain control characters", label, key));
    return false;
  }
  out = text->get();
  return true;
}

bool read_bool(const toml::table& table, std::string_view key, std::string_view label, bool& out,
               Problems& problems) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return false;
  const auto* flag = node->as_boolean();
  if (flag == nullptr) {
    problems.add(line_of(*node),
                 fmt::format("{} {} must be true or false, not {}", label, key, type_name(*node)));
    return false;
  }
  out = flag->get();
  return true;
}

bool read_string_array(const toml::table& table, std::string_view key, std::string_view label,
                       std::vector<std::string>& out, Problems& problems) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return false;
  const auto* array = node->as_array();
  if (array == nullptr) {
    problems.add(line_of(*node), fmt::format("{} {} must be an array of strings, not {}", label,
                                             key, type_name(*node)));
    return false;
  }
  std::vector<std::string> values;
  for (const toml::node& element : *array) {
    const auto* text = element.as_string();
    if (text == nullptr || has_control_characters(text->get())) {
      problems.add(
          line_of(element),
          fmt::format("{} {} must hold only strings without control characters", label, key));
      return false;
    }
    values.push_back(text->get());
  }
  out = std::move(values);
  return true;
}

bool names_a_file(std::string_view path) {
  const std::string_view last = path.substr(path.rfind('/') + 1);  // all of it without a '/'
  return !last.empty() && last != "." && last != "..";
}

void check_name(const toml::table& table, std::string_view key, std::string_view what,
                const std::string& name, Problems& problems) {
  if (valid_name(name)) return;
  problems.add(line_of(*table.get(key)),
               fmt::format("{} \"{}\" must be 1 to {} characters of A-Z, a-z, 0-9, '.', '_', '-'",
                           what, name, kMaxNameBytes));
}

}  // namespace keel::config::detail
