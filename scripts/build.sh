#!/usr/bin/env bash
# Configures and builds one flavour of keel with Ninja.
# Usage: build.sh [release|asan|fuzz] [target...]
#   release  build/       RelWithDebInfo, warnings are errors
#   asan     build-asan/  AddressSanitizer + UBSan, warnings are errors
#   fuzz     build-fuzz/  clang, libFuzzer targets from fuzz/ (see build-fuzz/fuzz/)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
shift || true

case "$flavour" in
  release) dir=build; options=(-DKEEL_WERROR=ON) ;;
  asan) dir=build-asan; options=(-DKEEL_SANITIZE=ON -DKEEL_WERROR=ON) ;;
  fuzz)
    dir=build-fuzz; options=(-DKEEL_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++)
    export CC=clang CXX=clang++ ;;
  *) echo "usage: $0 [release|asan|fuzz] [target...]" >&2; exit 2 ;;
esac
if command -v ccache >/dev/null; then options+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake -S . -B "$dir" -G Ninja "${options[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
