// Precompiled for keel_sim: the core's standard headers and fmt.
#pragma once
#include "core.hpp"
#include <fmt/format.h>
