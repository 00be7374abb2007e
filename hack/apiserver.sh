#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the integration tests from the Go module
# proxy (tools/apiserver pins the releases), once: the binaries are cached in
# $POLICYD_TOOLS_DIR (default ~/.cache/policyd/tools/<pins>) and reused while
# tools/apiserver/go.sum is unchanged. Prints the directory holding them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/apiserver"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12) # content only: any checkout path shares the cache
dir="${POLICYD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/policyd/tools/$key}"
if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/etcd" ]; then
  mkdir -p "$dir"
  echo "building kube-apiserver and etcd into $dir (a cold build takes about 8 minutes)" >&2
  (cd "$mod" && go build -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver \
     && go build -o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3) >&2
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
  mv "$dir/etcd.tmp" "$dir/etcd"
fi
echo "$dir"
