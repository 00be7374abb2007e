#!/usr/bin/env bash
# Builds the real cluster's binaries for `make e2e` from the Go module proxy,
# once: tools/cluster pins the Kubernetes release (kube-apiserver, etcd,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl,
# agnhost, ginkgo and the e2e.test binary) and tools/cnp the
# network-policy-api conformance suite. The binaries are cached in
# $POLICYD_CLUSTER_TOOLS_DIR (default ~/.cache/policyd/cluster/<pins>) and
# reused while those pins and this recipe are unchanged. Prints the directory.
#
# Kubernetes binaries report their release (kubelet --version: v1.34.4), not
# v0.0.0-master: the version is read from tools/cluster/go.mod and stamped
# with -X, as Kubernetes' own build does. A cold build is about 700 CPU-s on
# top of hack/apiserver.sh's (same flags, so its build cache is reused), and
# about 1,500 CPU-s from nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/cluster"
cnp="$root/tools/cnp"

# The recipe is part of the cache key: change it and the binaries are rebuilt.
recipe='go build; go test -c; agnhost CGO_ENABLED=0; version -X v2'
key=$( (cat "$mod/go.mod" "$mod/go.sum" "$cnp/go.mod" "$cnp/go.sum"; echo "$recipe") | sha256sum | cut -c1-12)
dir="${POLICYD_CLUSTER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/policyd/cluster/$key}"
if [ -f "$dir/complete" ]; then
  echo "$dir"
  exit 0
fi

k8s=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)   # v1.34.4
major=${k8s#v}; major=${major%%.*}
minor=${k8s#v*.}; minor=${minor%%.*}
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$(date +%s)
echo "building the cluster's binaries ($k8s) into $dir (cold: about 25 minutes on 2 cores)" >&2
# Same flags as hack/apiserver.sh (no -trimpath, cgo as the toolchain
# defaults), so kube-apiserver's and etcd's packages come from its cache; -X
# only changes the link. nice: the machine is shared.
(
  cd "$mod"
  nice -n 10 go build -ldflags "$vflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl \
    go.etcd.io/etcd/server/v3 github.com/onsi/ginkgo/v2/ginkgo
  # go names a /v3 module's binary after the element before the suffix.
  mv "$tmp/server" "$tmp/etcd"
  nice -n 10 go test -c -ldflags "$vflags" -o "$tmp/e2e.test" k8s.io/kubernetes/test/e2e
  # agnhost runs in an image without libc.
  CGO_ENABLED=0 nice -n 10 go build -ldflags "$vflags" -o "$tmp/agnhost" k8s.io/kubernetes/test/images/agnhost
) >&2
(cd "$cnp" && nice -n 10 go test -c -o "$tmp/cnp-conformance.test" sigs.k8s.io/network-policy-api/conformance) >&2
{
  echo "kubernetes $k8s"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    echo "$b $("$tmp/$b" --version 2>&1 | head -1)"
  done
  echo "kubectl $("$tmp/kubectl" version --client 2>&1 | head -1)"
  echo "etcd $("$tmp/etcd" --version 2>&1 | head -1)"
  echo "ginkgo $("$tmp/ginkgo" version 2>&1 | head -1)"
  echo "network-policy-api $(cd "$cnp" && go list -m -f '{{.Version}}' sigs.k8s.io/network-policy-api)"
  echo "built in $(($(date +%s) - start)) s"
} > "$tmp/versions.txt"
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "$dir"
