#!/usr/bin/env bash
# A real two-node Kubernetes cluster on one machine, in network namespaces,
# without Docker or kind (see e2e/README.md for the topology).
#
#   e2e/cluster.sh up [--shape bridge|routed]   bring it up (tears down leftovers first)
#   e2e/cluster.sh down                        remove every process, mount, cgroup,
#                                              namespace and file it made; restore sysctls
#   e2e/cluster.sh check-clean                 exit 1, listing them, if any remain
#   e2e/cluster.sh kubectl ARGS...             kubectl against it (admin)
#   e2e/cluster.sh run CMD ARGS...             CMD in the control plane's network
#                                              namespace, KUBECONFIG set
#   e2e/cluster.sh node N CMD ARGS...          CMD in node N's network namespace (N: 1, 2)
#
# Environment: PDE2E_TOOLS (binaries, from hack/cluster.sh; found if unset),
# PDE2E_DIR (state, default /var/lib/pde2e), PDE2E_LOGS (daemon logs, default
# $PDE2E_DIR.logs; kept after down), PDE2E_IMAGES (an images.tar from
# e2e/images.sh to import into each node).
#
# Shapes: bridge (default): the bridge CNI plugin and kube-proxy in nftables
# mode; routed: the ptp CNI plugin (a veth and a /32 route per pod) and
# kube-proxy in iptables mode. Both from Debian's containernetworking-plugins.
#
# Needs root. Everything it names starts with pde2e- (network namespaces,
# links, cgroups, CNI networks): nothing else on the machine is touched, and
# down finds what to remove by those names and by the state directory, never
# by a process name.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
D="${PDE2E_DIR:-/var/lib/pde2e}"
LOGS="${PDE2E_LOGS:-$D.logs}"
NODES=(1 2)

# Addresses: only 10.x, only inside the namespaces made here.
NODE_NET=10.207.0
CP_IP=$NODE_NET.10
POD_CIDR=10.208.0.0/16
SVC_CIDR=10.209.0.0/16
SVC_API_IP=10.209.0.1
node_ip() { echo "$NODE_NET.$((10 + $1))"; }
node_name() { echo "pde2e-n$1"; }
NETNS_BR=pde2e-net
NETNS_CP=pde2e-cp
netns_node() { echo "pde2e-n$1"; }
ALL_NETNS="$NETNS_BR $NETNS_CP $(for n in "${NODES[@]}"; do netns_node "$n"; done)"
# The global sysctls the kubelet sets (component-helpers/node/util/sysctl and
# the kubelet's container manager); down restores the values up found.
KUBELET_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
SANDBOX_IMAGE=localhost/policyd-e2e/pause:1
# Places outside the state directory that the runtimes write to whatever
# their configuration: libcni's result cache, containerd 1.6's shim sockets.
# down removes what is ours there, and each directory if up found it absent.
GLOBAL_DIRS="/var/lib/cni /run/containerd"

# sysctl_snapshot: every sysctl this (host) namespace sees, less the
# counters that change by themselves.
sysctl_snapshot() {
  sysctl -a 2>/dev/null | grep -vE '^(fs\.(dentry-state|dentry-negative|file-nr|inode-nr|inode-state|aio-nr|quota\.[a-z_]+)|kernel\.(ns_last_pid|random\.(uuid|entropy_avail)|pty\.nr)|net\.netfilter\.nf_conntrack_count) ' | sort
}

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: $*" >&2; exit 1; }

tools() { echo "$PDE2E_TOOLS"; }
# find_tools: PDE2E_TOOLS, else the directory the running cluster was
# started with, else hack/cluster.sh's (building them if need be).
find_tools() {
  if [ -z "${PDE2E_TOOLS:-}" ] && [ -f "$D/tools" ]; then PDE2E_TOOLS=$(cat "$D/tools"); fi
  if [ -z "${PDE2E_TOOLS:-}" ]; then PDE2E_TOOLS=$("$root/hack/cluster.sh"); fi
  export PDE2E_TOOLS
}

in_netns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

# start NAME NETNS CMD...: runs a daemon in NETNS, logging to $LOGS/NAME.log,
# its pid in $D/pids/NAME. Inherited descriptors are closed first: a caller
# holding a lock (flock) must not pass it to the cluster's daemons.
start() {
  local name=$1 ns=$2; shift 2
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
    done
    exec nsenter --net="/run/netns/$ns" -- "$@" </dev/null >>"$LOGS/$name.log" 2>&1
  ) &
  echo $! > "$D/pids/$name"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what (logs: $LOGS)"
    sleep 0.5
  done
}

kc() { in_netns "$NETNS_CP" "$(tools)/kubectl" --kubeconfig "$D/pki/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------- network

network_up() {
  local n ns
  for ns in $ALL_NETNS; do ip netns add "$ns"; in_netns "$ns" ip link set lo up; done
  in_netns "$NETNS_BR" ip link add pde2e-br0 type bridge
  in_netns "$NETNS_BR" ip link set pde2e-br0 up
  # link NETNS NAME IP: a veth from the bridge namespace into NETNS.
  link() {
    ip link add "$2" netns "$1" type veth peer name "$2-br" netns "$NETNS_BR"
    in_netns "$NETNS_BR" ip link set "$2-br" master pde2e-br0 up
    in_netns "$1" ip addr add "$3/24" dev "$2"
    in_netns "$1" ip link set "$2" up
  }
  link "$NETNS_CP" pde2e-cp "$CP_IP"
  for n in "${NODES[@]}"; do
    ns=$(netns_node "$n")
    link "$ns" "pde2e-n$n" "$(node_ip "$n")"
    # Service addresses need a route for the first lookup; kube-proxy's
    # DNAT then sends the packet to a real endpoint.
    in_netns "$ns" ip route add "$SVC_CIDR" dev "pde2e-n$n"
    # Per-namespace sysctls: they go away with the namespace.
    in_netns "$ns" sysctl -qw net.ipv4.ip_forward=1
    # Bridged pods' traffic must cross the IP hooks (kube-proxy's DNAT
    # replies, policyd's rules); this is per namespace on this kernel.
    if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
      in_netns "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=1
    fi
  done
}

# routes: each node's pod CIDR via that node, in every other namespace.
routes_up() {
  local n m cidr
  for n in "${NODES[@]}"; do
    cidr=$(kc get node "$(node_name "$n")" -o jsonpath='{.spec.podCIDR}')
    [ -n "$cidr" ] || die "node $(node_name "$n") has no podCIDR"
    echo "$cidr" > "$D/node$n/podcidr"
    in_netns "$NETNS_CP" ip route replace "$cidr" via "$(node_ip "$n")"
    for m in "${NODES[@]}"; do
      [ "$m" = "$n" ] || in_netns "$(netns_node "$m")" ip route replace "$cidr" via "$(node_ip "$n")"
    done
  done
}

# ---------------------------------------------------------------- PKI

pki_up() {
  local p="$D/pki"
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=pde2e-ca 2>/dev/null
    # sign NAME SUBJ [SANS]: a key and a certificate signed by the CA.
    sign() {
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" > "$1.ext"; else : > "$1.ext"; fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
    }
    sign apiserver /CN=kube-apiserver \
      "IP:$CP_IP,IP:$SVC_API_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    # The API server's client certificate towards the kubelets (logs, exec).
    sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static bearer tokens for the components and the admin.
    : > tokens.csv
    token() {
      local t
      t=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
      if [ -n "$3" ]; then echo "$t,$2,$2,\"$3\""; else echo "$t,$2,$2"; fi >> tokens.csv
      cat > "$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pde2e
  cluster:
    server: https://$CP_IP:6443
    certificate-authority: $p/ca.crt
users:
- name: $2
  user:
    token: $t
contexts:
- name: pde2e
  context: {cluster: pde2e, user: $2}
current-context: pde2e
EOF
    }
    token admin pde2e-admin system:masters
    token kcm system:kube-controller-manager ""
    token scheduler system:kube-scheduler ""
    token kube-proxy system:kube-proxy ""
    for n in "${NODES[@]}"; do token "kubelet-$n" "system:node:$(node_name "$n")" system:nodes; done
  )
}

# ---------------------------------------------------------------- control plane

control_plane_up() {
  local t p="$D/pki"
  t=$(tools)
  start etcd "$NETNS_CP" "$t/etcd" --name pde2e --data-dir "$D/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster pde2e=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
  start kube-apiserver "$NETNS_CP" "$t/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$CP_IP" --bind-address 0.0.0.0 --secure-port 6443 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --token-auth-file "$p/tokens.csv" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SVC_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged \
    --kubelet-client-certificate "$p/kubelet-client.crt" --kubelet-client-key "$p/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 kc get --raw /readyz
  start kube-controller-manager "$NETNS_CP" "$t/kube-controller-manager" \
    --kubeconfig "$p/kcm.kubeconfig" \
    --authentication-kubeconfig "$p/kcm.kubeconfig" --authorization-kubeconfig "$p/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --use-service-account-credentials --service-account-private-key-file "$p/sa.key" \
    --root-ca-file "$p/ca.crt" \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SVC_CIDR" --profiling=false --v=1
  start kube-scheduler "$NETNS_CP" "$t/kube-scheduler" \
    --kubeconfig "$p/scheduler.kubeconfig" \
    --authentication-kubeconfig "$p/scheduler.kubeconfig" --authorization-kubeconfig "$p/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

# ---------------------------------------------------------------- nodes

cgroup_controllers() { for c in /sys/fs/cgroup/*/cgroup.procs; do dirname "$c"; done; }

node_up() {
  local n=$1 t shape=$2 nd ns name ip mode
  t=$(tools)
  nd="$D/node$n"; ns=$(netns_node "$n"); name=$(node_name "$n"); ip=$(node_ip "$n")
  mkdir -p "$nd"/{containerd/root,containerd/state,runc,cni/net.d,cni/ipam,opt,kubelet,certs,pod-logs,volume-plugins}
  # The kubelet requires its cgroup root to exist in every hierarchy.
  local c
  for c in $(cgroup_controllers); do
    mkdir -p "$c/$name"
    if [ -e "$c/cpuset.cpus" ]; then
      cat "$c/cpuset.cpus" > "$c/$name/cpuset.cpus"
      cat "$c/cpuset.mems" > "$c/$name/cpuset.mems"
    fi
  done
  cat > "$nd/containerd.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$nd/containerd.sock"
[ttrpc]
  address = "$nd/containerd.sock.ttrpc"
[debug]
  address = "$nd/containerd-debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # No CAP_SYS_RESOURCE here: without this every pod sandbox fails.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$nd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni/net.d"
EOF
  start "containerd-$n" "$ns" containerd --config "$nd/containerd.toml"
  wait_for "containerd on $name" 60 ctr --address "$nd/containerd.sock" version
  if [ -n "${PDE2E_IMAGES:-}" ]; then
    ctr --address "$nd/containerd.sock" -n k8s.io images import "$PDE2E_IMAGES" >/dev/null
  fi
  printf '# pde2e: no cluster DNS; neither suite needs it\n' > "$nd/resolv.conf"
  cat > "$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /$name
failSwapOn: false
oomScoreAdj: 0
resolvConf: $nd/resolv.conf
podLogsDir: $nd/pod-logs
volumePluginDir: $nd/volume-plugins
containerRuntimeEndpoint: unix://$nd/containerd.sock
# Images are imported, never pulled: do not collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
serializeImagePulls: false
rotateCertificates: false
EOF
  start "kubelet-$n" "$ns" "$t/kubelet" --config "$nd/kubelet.yaml" \
    --kubeconfig "$D/pki/kubelet-$n.kubeconfig" --root-dir "$nd/kubelet" --cert-dir "$nd/certs" \
    --hostname-override "$name" --node-ip "$ip" --v=1
  mode=nftables; [ "$shape" = routed ] && mode=iptables
  cat > "$nd/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $D/pki/kube-proxy.kubeconfig}
hostnameOverride: $name
mode: $mode
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# Zeros: leave the conntrack sysctls (nf_conntrack_max is global) alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start "kube-proxy-$n" "$ns" "$t/kube-proxy" --config "$nd/kube-proxy.yaml" --v=1
}

# cni_up N SHAPE: the node's CNI network, on the pod CIDR the controller
# manager gave it. ipMasq off: policies must see pod addresses across nodes.
cni_up() {
  local n=$1 shape=$2 nd cidr plugin
  nd="$D/node$n"; cidr=$(cat "$nd/podcidr")
  if [ "$shape" = routed ]; then
    plugin="{\"type\":\"ptp\",\"ipMasq\":false,\"mtu\":1500,"
  else
    plugin="{\"type\":\"bridge\",\"bridge\":\"pde2e-cni0\",\"isGateway\":true,\"ipMasq\":false,\"hairpinMode\":true,"
  fi
  plugin+="\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$nd/cni/ipam\",\"ranges\":[[{\"subnet\":\"$cidr\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}}"
  printf '{"cniVersion":"0.4.0","name":"pde2e-%s","plugins":[%s]}\n' "$shape" "$plugin" > "$nd/cni/net.d/10-pde2e.conflist"
}

has_podcidr() { [ -n "$(kc get node "$1" -o jsonpath='{.spec.podCIDR}')" ]; }

cmd_up() {
  local shape=bridge n
  while [ $# -gt 0 ]; do
    case $1 in
      --shape) shape=$2; shift 2 ;;
      --shape=*) shape=${1#*=}; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  case $shape in bridge|routed) ;; *) die "--shape must be bridge or routed, not $shape" ;; esac
  [ "$(id -u)" = 0 ] || die "needs root"
  find_tools
  if [ -e "$D" ] || ip netns list 2>/dev/null | grep -q '^pde2e-'; then
    log "tearing down a previous cluster first"
    cmd_down
  fi
  local t0=$SECONDS
  mkdir -p "$D/pids" "$LOGS"
  echo "$shape" > "$D/shape"
  echo "$PDE2E_TOOLS" > "$D/tools"
  for g in $GLOBAL_DIRS; do [ -e "$g" ] || echo "$g"; done > "$D/created-dirs"
  cp "$D/created-dirs" "$LOGS/created-dirs"
  # Before anything runs: the values down restores.
  for s in $KUBELET_SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done > "$D/sysctl.saved"
  cp "$D/sysctl.saved" "$LOGS/sysctl.saved"
  sysctl_snapshot > "$LOGS/sysctl.before"
  network_up
  pki_up
  control_plane_up
  log "control plane up in $((SECONDS - t0)) s"
  for n in "${NODES[@]}"; do node_up "$n" "$shape"; done
  for n in "${NODES[@]}"; do
    wait_for "node $(node_name "$n") and its podCIDR" 120 has_podcidr "$(node_name "$n")"
  done
  routes_up
  for n in "${NODES[@]}"; do cni_up "$n" "$shape"; done
  wait_for "nodes Ready" 180 kc wait --for=condition=Ready node --all --timeout=5s
  wait_for "the default ServiceAccount" 60 kc get serviceaccount default
  log "up in $((SECONDS - t0)) s: shape $shape, kubeconfig $D/kubeconfig (from the $NETNS_CP namespace), logs $LOGS"
  cp "$D/pki/admin.kubeconfig" "$D/kubeconfig"
}

# ---------------------------------------------------------------- teardown

# netns_inodes: the network namespaces made here, as inode numbers: the
# named ones and the pods' (mounted under the state directory).
netns_inodes() {
  local ns f
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^pde2e-/ {print $1}'); do
    stat -L -c %i "/run/netns/$ns" 2>/dev/null || true
  done
  if [ -d "$D" ]; then
    awk -v d="$D/" '$9 == "nsfs" && index($5, d) == 1 {print $5}' /proc/self/mountinfo | while read -r f; do
      stat -L -c %i "$f" 2>/dev/null || true
    done
  fi
}

# our_pids: every process that is ours: in one of our network namespaces,
# in one of our cgroups, or started with our state directory in its
# command line (containerd's shims). Never by a process name.
our_pids() {
  local inodes p ino c
  inodes=" $(netns_inodes | tr '\n' ' ') "
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
    ino=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue
    if [ "$inodes" != "  " ] && [[ $inodes == *" $ino "* ]]; then echo "$p"; continue; fi
    if { tr "\\0" " " < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$D/"; then echo "$p"; fi
  done
  for c in /sys/fs/cgroup/*/pde2e-n*; do
    [ -d "$c" ] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
}

stop_pids() {
  local sig=$1; shift
  [ $# -gt 0 ] && kill "-$sig" "$@" 2>/dev/null || true
}

# stop_daemons NAME...: SIGTERM to each, then SIGKILL to those still
# running after 10 s.
stop_daemons() {
  local name pids=() pid i
  for name in "$@"; do
    [ -f "$D/pids/$name" ] || continue
    pid=$(cat "$D/pids/$name")
    rm -f "$D/pids/$name"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for i in $(seq 1 40); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

cmd_down() {
  local n pids i t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "needs root"
  # 1. While the control plane answers: stop the controllers (nothing is
  # recreated), then delete every pod, so that the runtime tears each one
  # down (CNI DEL, its network namespace). Bounded: a broken cluster must
  # not stop the teardown.
  if [ -f "$D/pids/kube-apiserver" ] && [ -f "$D/tools" ]; then
    PDE2E_TOOLS=$(cat "$D/tools")
    stop_daemons kube-controller-manager kube-scheduler
    if kc --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
      kc --request-timeout=30s delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
      for i in $(seq 1 60); do
        local left=0
        for n in "${NODES[@]}"; do
          [ -S "$D/node$n/containerd.sock" ] || continue
          left=$((left + $(ctr --timeout 5s --address "$D/node$n/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null | wc -l)))
        done
        [ "$left" = 0 ] && break
        sleep 1
      done
      log "pods deleted ($left tasks left after ${i} s)"
    fi
  fi
  # 2. Node daemons, then the runtimes, then the control plane.
  stop_daemons $(for n in "${NODES[@]}"; do echo "kubelet-$n kube-proxy-$n"; done)
  stop_daemons $(for n in "${NODES[@]}"; do echo "containerd-$n"; done)
  stop_daemons kube-controller-manager kube-scheduler kube-apiserver
  stop_daemons etcd
  # 3. Whatever is left that is ours (shims, containers, hostNetwork pods).
  for i in 1 2 3 4 5; do
    pids=$(our_pids | sort -u | tr '\n' ' ')
    [ -z "${pids// /}" ] && break
    # shellcheck disable=SC2086
    stop_pids KILL $pids
    sleep 0.5
  done
  # 4. Mounts under the state directory (rootfs overlays, shm, volumes, pod
  # network namespaces), deepest first.
  if [ -d "$D" ]; then
    for i in 1 2 3; do
      local mnts
      mnts=$(awk -v d="$D/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
      [ -z "$mnts" ] && break
      while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mnts"
    done
  fi
  # 5. Network namespaces (their links and pod veths go with them).
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^pde2e-/ {print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
  # 6. Cgroups, deepest first; a cgroup whose last task just died may need
  # a moment before it can be removed.
  for i in $(seq 1 20); do
    local cgs
    cgs=$(find /sys/fs/cgroup/*/ -maxdepth 1 -name 'pde2e-n*' -type d 2>/dev/null || true)
    [ -z "$cgs" ] && break
    find $cgs -depth -type d -exec rmdir {} \; 2>/dev/null || true
    sleep 0.25
  done
  # 7. Global sysctls, as up found them.
  if [ -f "$D/sysctl.saved" ]; then
    while IFS='=' read -r k v; do sysctl -qw "$k=$v" || true; done < "$D/sysctl.saved"
  fi
  # 8. Files: our CNI networks' result caches, shim sockets nobody listens
  # on any more, the directories up found absent, and the state directory.
  rm -f /var/lib/cni/results/pde2e-* 2>/dev/null || true
  for f in $(stale_shim_sockets); do rm -f "$f"; done
  if [ -f "$D/created-dirs" ]; then
    while read -r g; do
      find "$g" -depth -type d -empty -delete 2>/dev/null || true
    done < "$D/created-dirs"
  fi
  rm -rf "$D"
  log "down in $((SECONDS - t0)) s"
}

# stale_shim_sockets: containerd 1.6 shims' sockets (/run/containerd/s) that
# no process listens on.
stale_shim_sockets() {
  local f listening
  [ -d /run/containerd/s ] || return 0
  # Listening paths in every network namespace (/proc/PID/net/unix is per
  # namespace): one process of each.
  listening=" $(for p in /proc/[0-9]*; do echo "$(stat -L -c %i "$p/ns/net" 2>/dev/null) ${p#/proc/}"; done |
    awk 'NF == 2 && !seen[$1]++ {print $2}' | while read -r pid; do
      awk 'NR > 1 && $8 != "" {print $8}' "/proc/$pid/net/unix" 2>/dev/null
    done | sort -u | tr '\n' ' ') "
  for f in /run/containerd/s/*; do
    [ -S "$f" ] || continue
    [[ $listening == *" $f "* ]] || echo "$f"
  done
}

# check-clean: what down should have left: nothing.
cmd_check_clean() {
  local bad=0 out
  out=$(ip netns list 2>/dev/null | awk '$1 ~ /^pde2e-/' || true)
  [ -z "$out" ] || { echo "leftover network namespaces: $out"; bad=1; }
  out=$(ip -o link show 2>/dev/null | grep -F 'pde2e-' || true)
  [ -z "$out" ] || { echo "leftover links: $out"; bad=1; }
  out=$(awk -v d="$D" 'index($5, d) == 1 || $5 ~ /\/pde2e-/ {print $5}' /proc/self/mountinfo)
  [ -z "$out" ] || { echo "leftover mounts: $out"; bad=1; }
  out=$(find /sys/fs/cgroup/*/ -maxdepth 1 -name 'pde2e-*' 2>/dev/null || true)
  [ -z "$out" ] || { echo "leftover cgroups: $out"; bad=1; }
  out=$(for p in /proc/[0-9]*; do { tr "\\0" " " < "$p/cmdline"; } 2>/dev/null | grep -F -- "$D/" | sed "s|^|${p#/proc/}: |"; done || true)
  [ -z "$out" ] || { echo "leftover processes: $out"; bad=1; }
  [ ! -e "$D" ] || { echo "leftover state directory: $D"; bad=1; }
  out=$(ls /var/lib/cni/results/pde2e-* 2>/dev/null || true)
  [ -z "$out" ] || { echo "leftover CNI results: $out"; bad=1; }
  out=$(stale_shim_sockets)
  [ -z "$out" ] || { echo "leftover shim sockets: $out"; bad=1; }
  if [ -f "$LOGS/created-dirs" ]; then
    out=$(while read -r g; do [ ! -e "$g" ] || echo "$g"; done < "$LOGS/created-dirs")
    [ -z "$out" ] || { echo "leftover directories (absent before up): $out"; bad=1; }
  fi
  if [ -f "$LOGS/sysctl.before" ]; then
    out=$(diff "$LOGS/sysctl.before" <(sysctl_snapshot) | grep '^[<>]' || true)
    [ -z "$out" ] || { echo "sysctls changed since up (< before, > now):"; echo "$out"; bad=1; }
  fi
  return $bad
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  check-clean) cmd_check_clean ;;
  kubectl) shift; find_tools; kc "$@" ;;
  run) shift; KUBECONFIG="$D/kubeconfig" in_netns "$NETNS_CP" "$@" ;;
  node) n=$2; shift 2; in_netns "$(netns_node "$n")" "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
