#!/usr/bin/env bash
# keel's demo on this machine: a site's frontends. Four network namespaces on a bridge, each with
# nginx and `keel agent`, share eight floating IPs; a client namespace requests every address 50
# times a second while a host loses its link, nginx dies, the hosts are partitioned and healed,
# and a host is drained; the client's report ends it (scripts/lab_demo.sh --frontends; needs
# root). With --ring: the ring alone instead, first in the deterministic simulator, then on five
# real hosts through a kill, a partition and a heal. Everything the lab creates is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh release keel
if [[ ${1:-} == --ring ]]; then
  shift
  echo "===== 1. the ring in the simulator ====="
  build/keel sim --demo
  echo
  echo "===== 2. the ring on real hosts (network namespaces) ====="
  exec ./scripts/lab_demo.sh "$@"
fi
exec ./scripts/lab_demo.sh --frontends "$@"
