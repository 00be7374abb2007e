#!/usr/bin/env bash
# Installs what policyd's lab, kernel tests and demo need on a Debian machine:
# nftables (the nft CLI, used by tests to cross-check netlink output) and
# iproute2 (ip netns). Does nothing when they are present.
set -euo pipefail
need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${need[*]}; run as root (or install them) first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}"
