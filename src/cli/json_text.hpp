// Reading fields of the agent's JSON replies for tables: a missing or null field prints as "-".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace keel::cli {

inline std::string json_text(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace keel::cli
