#!/usr/bin/env bash
# Packs the images the real cluster runs into OCI image archives, without a
# registry or Docker: a layer is a reproducible tar.gz of a directory, and an
# image is that plus a config, a manifest and an index, written with tar,
# gzip and sha256sum. Nodes load them with `ctr -n k8s.io images import`.
#
#   e2e/images.sh OUT TOOLS_DIR
#
# writes OUT/images.tar holding:
#   docker.io/library/policyd:latest      the Dockerfile's layout (its static
#                                          binary in /usr/local/bin, run as
#                                          0:0) on a scratch base: what the
#                                          manifests in deploy/ run
#   docker.io/library/policyd:e2e-next    the same, built as another version:
#                                          the rolling update's new image
#   registry.k8s.io/e2e-test-images/agnhost:2.56 and :2.45
#                                          agnhost built from the pinned
#                                          Kubernetes source, tagged as e2e.test
#                                          (2.56) and the network-policy-api
#                                          suite (2.45) expect it, with bash
#                                          (the suite runs /bin/bash -c) and a
#                                          guard, e2e/sctpguard, as /agnhost
#   localhost/policyd-e2e/pause:1          the sandbox image: agnhost pause
#   localhost/policyd-e2e/prober:1         e2e/prober, the lifecycle tests' traffic
set -euo pipefail
out=$1
tools=$2
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$out/image-work"
rm -rf "$work"
mkdir -p "$work/blobs/sha256" "$work/trees"
blobs="$work/blobs/sha256"

# blob FILE: stores FILE under its digest; prints "sha256:HEX SIZE".
blob() {
  local sum
  sum=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$blobs/$sum"
  echo "sha256:$sum $(stat -c %s "$blobs/$sum")"
}

# layer DIR: a reproducible layer of DIR (fixed owner and times, sorted);
# prints "DIGEST SIZE DIFFID".
layer() {
  local dir=$1 tarf="$work/layer.tar" diffid
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$dir" -cf "$tarf" .
  diffid="sha256:$(sha256sum "$tarf" | cut -d' ' -f1)"
  gzip -n -1 "$tarf"
  echo "$(blob "$tarf.gz") $diffid"
}

# image NAMES ENTRYPOINT CMD LAYER...: writes the config and manifest of an
# image made of LAYERs ("DIGEST SIZE DIFFID" each) and adds one index entry per
# name in NAMES (space separated). ENTRYPOINT and CMD are JSON arrays.
index_entries=()
image() {
  local names=$1 entrypoint=$2 cmd=$3; shift 3
  local diffids="" layers="" l d s i
  for l in "$@"; do
    read -r d s i <<<"$l"
    diffids+="${diffids:+,}\"$i\""
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d\",\"size\":$s}"
  done
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Cmd":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"User":"0:0","WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$entrypoint" "$cmd" "$diffids" > "$work/config.json"
  local config
  config=$(blob "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "${config% *}" "${config#* }" "$layers" > "$work/manifest.json"
  local manifest name
  manifest=$(blob "$work/manifest.json")
  for name in $names; do
    index_entries+=("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"${manifest% *}\",\"size\":${manifest#* },\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}")
  done
}

version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)

# policyd, as the Dockerfile builds it (static, -trimpath, -s -w), on the
# files distroless/static adds that the agent can use: /etc/passwd, /tmp and
# CA certificates.
policyd_image() {
  local tag=$1 ver=$2 t="$work/trees/policyd-$2"
  mkdir -p "$t/usr/local/bin" "$t/etc/ssl/certs" "$t/tmp"
  chmod 1777 "$t/tmp"
  (cd "$root" && CGO_ENABLED=0 go build -trimpath \
     -ldflags "-s -w -X main.version=$ver -X main.commit=$commit" -o "$t/usr/local/bin/policyd" ./cmd/policyd)
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$t/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$t/etc/group"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt "$t/etc/ssl/certs/"; fi
  image "docker.io/library/policyd:$tag" '["/usr/local/bin/policyd"]' 'null' "$(layer "$t")"
}
policyd_image latest "$version"
policyd_image e2e-next "$version-e2e-next"

# agnhost: the upstream image is Alpine with bash and a few tools, /agnhost,
# ENTRYPOINT ["/agnhost"] and CMD ["pause"]. Here: static bash and busybox
# from Debian, the upstream binary as /agnhost.upstream, and /agnhost the
# guard, which starts agnhost without its SCTP listeners when the kernel
# cannot open SCTP sockets (agnhost porter exits on the first one that fails).
base="$work/trees/agnhost-base"
mkdir -p "$base/bin" "$base/etc" "$base/tmp" "$base/uploads"
chmod 1777 "$base/tmp"
cp /bin/bash-static "$base/bin/bash"
ln -s bash "$base/bin/sh"
cp /bin/busybox "$base/bin/busybox"
for applet in $("$base/bin/busybox" --list); do
  [ -e "$base/bin/$applet" ] || ln -s busybox "$base/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n' > "$base/etc/passwd"
printf 'root:x:0:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' > "$base/etc/group"
bin="$work/trees/agnhost-bin"
mkdir -p "$bin"
cp "$tools/agnhost" "$bin/agnhost.upstream"
guard="$work/trees/agnhost-guard"
mkdir -p "$guard"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$guard/agnhost" ./e2e/sctpguard)
base_layer=$(layer "$base")
bin_layer=$(layer "$bin")
guard_layer=$(layer "$guard")
image "registry.k8s.io/e2e-test-images/agnhost:2.56 registry.k8s.io/e2e-test-images/agnhost:2.45" \
  '["/agnhost"]' '["pause"]' "$base_layer" "$bin_layer" "$guard_layer"
# The pause image shares agnhost's binary layer.
image "localhost/policyd-e2e/pause:1" '["/agnhost.upstream","pause"]' 'null' "$bin_layer"

prober="$work/trees/prober"
mkdir -p "$prober"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$prober/prober" ./e2e/prober)
image "localhost/policyd-e2e/prober:1" '["/prober"]' 'null' "$(layer "$prober")"

printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
entries=$(IFS=,; echo "${index_entries[*]}")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$entries" > "$work/index.json"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out/images.tar" oci-layout index.json blobs
rm -rf "$work"
echo "$out/images.tar"
