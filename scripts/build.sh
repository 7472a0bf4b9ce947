#!/usr/bin/env bash
# Configures and builds one flavour of keel with Ninja.
# Usage: build.sh [release|asan|fuzz] [target...]
#   release  build/       RelWithDebInfo, warnings are errors
#   asan     build-asan/  AddressSanitizer + UBSan, warnings are errors
#   fuzz     build-fuzz/  clang, libFuzzer targets from fuzz/ (see build-fuzz/fuzz/)
# The sanitizer and fuzz builds carry line tables only (-g1): enough for their reports' file:line,
# and a quarter less compile time than full debug information. KEEL_DEBUG_INFO=lines asks the
# same of a release build (the test command does; a build for gdb wants the default).
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
# Set every time, so that a build directory configured one way is not left so by the cache.
debug_info=-g
if [[ $flavour != release || ${KEEL_DEBUG_INFO:-} == lines ]]; then debug_info=-g1; fi
options+=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 $debug_info -DNDEBUG")
if command -v ccache >/dev/null; then options+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake -S . -B "$dir" -G Ninja "${options[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
