#!/usr/bin/env bash
# keel's demo on this machine: first the ring in the deterministic simulator (views forming, a
# crash, a partition and a merge, checked message by message), then the same on real hosts: five
# network namespaces on a bridge, each running `keel agent` on real UDP, through a kill, a
# partition and a heal (scripts/lab_demo.sh; needs root). Everything the lab creates is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh release keel
echo "===== 1. the ring in the simulator ====="
build/keel sim --demo
echo
echo "===== 2. the ring on real hosts (network namespaces) ====="
exec ./scripts/lab_demo.sh "$@"
