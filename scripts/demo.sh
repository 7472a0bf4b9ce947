#!/usr/bin/env bash
# Builds keel and runs its demo: a simulated cluster whose ring forms views, splits, merges and
# checks delivery.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh release keel
exec build/keel sim --demo
