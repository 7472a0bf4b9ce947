// Precompiled for the host side (keel_host, the keel binary): the heavy third-party headers
// most of its files include. Every source still includes what it uses; this only saves parsing
// the same headers once per file.
#pragma once
#include "core.hpp"
#include <asio.hpp>
#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
