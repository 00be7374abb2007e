#!/usr/bin/env bash
# Installs the real cluster's Debian packages at the versions
# tools/cluster/debian-packages pins, if any is missing or at another
# version. Prints each package and version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mapfile -t pins < <(grep -vE '^\s*(#|$)' "$root/tools/cluster/debian-packages")
need=()
for pin in "${pins[@]}"; do
  name=${pin%%=*} want=${pin#*=}
  have=$(dpkg-query -W -f '${Status} ${Version}' "$name" 2>/dev/null || true)
  # shellcheck disable=SC2053 # want is a glob
  if [[ $have != "install ok installed "* ]] || [[ ${have##* } != $want ]]; then need+=("$pin"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >&2
fi
for pin in "${pins[@]}"; do dpkg-query -W -f '${Package} ${Version}\n' "${pin%%=*}"; done
