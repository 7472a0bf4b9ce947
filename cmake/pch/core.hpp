// Precompiled for keel_core and keel_sim: standard headers only, as src/core may include
// (scripts/check_core_purity.sh). Every source still includes what it uses; this only saves
// parsing the same headers once per file.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>
