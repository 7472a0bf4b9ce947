#!/usr/bin/env bash
# Formats every C++ file in src/ tests/ fuzz/ bench/ in place with clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=()
for dir in src tests fuzz bench; do if [[ -d $dir ]]; then dirs+=("$dir"); fi; done
find "${dirs[@]}" -type f \( -name '*.hpp' -o -name '*.cpp' \) -print0 | xargs -0 -r clang-format -i
