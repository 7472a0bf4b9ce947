#!/usr/bin/env bash
# Configures and builds one flavour of keel with Ninja.
# Usage: build.sh [release|asan|fuzz] [target...]
#   release  build/       RelWithDebInfo, warnings are errors
#   asan     build-asan/  AddressSanitizer + UBSan, warnings are errors
#   fuzz     build-fuzz/  clang, libFuzzer targets from fuzz/ (see build-fuzz/fuzz/)
# The sanitizer and fuzz builds carry line tables only (-g1): enough for their reports' file:line,
# and a quarter less compile time than full debug information. KEEL_DEBUG_INFO=lines asks the
# same of a release build (the test command does; a build for gdb wants the default).
# KEEL_UNITY=1 asks for a unity build (below).
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
# The sanitizer and fuzz builds optimise at -O1, as the sanitizers advise: their reports stay
# exact, and they compile in about a quarter less time than at -O2.
debug_info=-g
optimise=-O2
if [[ $flavour != release || ${KEEL_DEBUG_INFO:-} == lines ]]; then debug_info=-g1; fi
if [[ $flavour != release ]]; then optimise=-O1; fi
options+=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$optimise $debug_info -DNDEBUG")
# KEEL_UNITY=1 compiles each target in batches of sources (CMake's unity build): a clean build
# takes less than half the time, as the batch shares the work on the headers and templates they
# have in common, but a change to one file recompiles its whole batch. The test command uses it;
# a developer's build stays per file. So two files of one target may not define the same name in
# their anonymous namespaces: a shared helper goes in a header, a file's own constant gets a name
# of its own.
if [[ ${KEEL_UNITY:-} == 1 ]]; then
  options+=(-DCMAKE_UNITY_BUILD=ON)
else
  options+=(-DCMAKE_UNITY_BUILD=OFF)
fi
if command -v ccache >/dev/null; then options+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake -S . -B "$dir" -G Ninja "${options[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
