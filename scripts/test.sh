#!/usr/bin/env bash
# The test command of the project (CI runs it): unit tests under ASan/UBSan, a short run of every
# fuzz target, then the full ctest suite on the release build, whose summary is printed last.
# KEEL_FUZZ_SECONDS sets the time per fuzz target (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
banner() { printf '\n===== keel test: %s =====\n' "$*"; }

banner "setup"
./scripts/setup.sh

# Line tables are all the test command needs of debug information, and it builds each tree once
# from clean, which a unity build does in less than half the time (scripts/build.sh).
export KEEL_DEBUG_INFO=lines KEEL_UNITY=1

banner "build asan"
# What the unit tests run: their binary and the agent (AgentProcess starts it); the e2e suites
# and the benchmarks run from the release build.
./scripts/build.sh asan keel_tests keel
banner "unit tests (asan)"
ctest --test-dir build-asan -L unit --output-on-failure --no-label-summary -j2

banner "build fuzz"
./scripts/build.sh fuzz
banner "fuzz smoke (${KEEL_FUZZ_SECONDS:-20}s each)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build-fuzz/artifacts
# Each target is one process on one core: run as many at once as there are cores.
smoke() {
  local fuzzer=$1 name
  name=$(basename "$fuzzer")
  mkdir -p "$work/$name"
  for corpus in "fuzz/corpus/$name" "fuzz/corpus/${name%_fuzz}"; do
    if [[ -d $corpus ]]; then cp -r "$corpus/." "$work/$name/"; fi
  done
  if "$fuzzer" -max_total_time="${KEEL_FUZZ_SECONDS:-20}" -timeout=10 \
       -artifact_prefix="build-fuzz/artifacts/$name-" "$work/$name" >"$work/$name.log" 2>&1; then
    echo "$name: ok ($(grep -o 'Done [0-9]* runs' "$work/$name.log" || echo 'no stats'))"
  else
    tail -n 60 "$work/$name.log"
    echo "$name: FAILED (crash inputs in build-fuzz/artifacts/)" >&2
    return 1
  fi
}
fuzzers=0
failed=0
running=0
for fuzzer in build-fuzz/fuzz/*_fuzz; do
  [[ -x $fuzzer ]] || continue
  fuzzers=$((fuzzers + 1))
  if ((running >= $(nproc))); then
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
  fi
  smoke "$fuzzer" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || failed=$((failed + 1))
  running=$((running - 1))
done
if ((failed > 0)); then
  echo "fuzz smoke: $failed of $fuzzers targets FAILED" >&2
  exit 1
fi
echo "fuzz smoke: $fuzzers targets ok"

banner "build release"
./scripts/build.sh release
banner "all tests (release)"
ctest --test-dir build --output-on-failure --no-label-summary -j2
