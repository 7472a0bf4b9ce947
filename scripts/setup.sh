#!/usr/bin/env bash
# Installs every package keel's build and tests need (Debian 12). Safe to run again: it only calls
# apt-get when something is missing.
set -euo pipefail
packages=(build-essential cmake ninja-build g++ clang libclang-rt-14-dev clang-format
          libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libfmt-dev libspdlog-dev
          nlohmann-json3-dev pkg-config libasio-dev libsodium-dev libsystemd-dev
          libtomlplusplus-dev libmnl-dev libnftables-dev
          # the lab and end-to-end tests: namespaces, bridge faults, the incumbent to compare with
          iproute2 nftables procps psmisc corosync libcpg-dev libcorosync-common-dev
          # the frontends demo serves its page with nginx
          nginx-light
          # bench/vip compares keel's floating IPs with these
          keepalived ucarp
          # volumes: real NBD clients (nbdinfo, nbdcopy, nbdfuse, nbdsh, qemu-img, qemu-io), FUSE,
          # loop devices and ext4 for the full stack; nbdkit and fio for bench/volume
          libnbd-bin python3-libnbd qemu-utils fuse3 e2fsprogs util-linux nbdkit fio)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  if [[ $status != "install ok installed" ]]; then missing+=("$package"); fi
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -qq)
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
  apt=(sudo "${apt[@]}")
fi
echo "setup: installing ${missing[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${apt[@]}" update && "${apt[@]}" install "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup: apt-get failed" >&2
  exit 1
fi
echo "setup: done"
