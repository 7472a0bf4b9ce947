#!/usr/bin/env bash
# Builds keel and walks through a real ring on this machine: `keel lab demo` builds five hosts as
# network namespaces on a bridge, each with its own agent on real UDP, then kills a host,
# partitions the hosts and heals them, printing the views as they change and checking that every
# host delivered the same messages in the same order. Needs root (namespaces, nftables).
# Everything it creates is removed at the end, also on failure or Ctrl-C (docs/lab.md).
# Usage: lab_demo.sh [--hosts N] [--pause SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ((EUID != 0)); then
  echo "lab_demo: the lab creates network namespaces and nftables rules; run it as root" >&2
  echo "  (e.g. sudo $0)" >&2
  exit 1
fi
./scripts/setup.sh
./scripts/build.sh release keel

# The demo removes its lab itself (and a guard process does if the demo dies); this trap is the
# last line of defence, by prefix, whatever happened.
prefix="kd$(printf '%04x' $(($$ % 65536)))"
trap 'build/keel lab down --prefix "$prefix" >/dev/null 2>&1 || true' EXIT
build/keel lab demo --prefix "$prefix" "$@"
