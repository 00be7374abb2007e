#!/usr/bin/env bash
# make e2e: policyd on a real two-node cluster (e2e/cluster.sh), deployed as
# users deploy it, judged by the upstream suites' own binaries (e2e/suites.sh)
# and the DaemonSet lifecycle tests (e2e/lifecycle); then torn down, and the
# machine checked for anything left behind. The last line is the summary:
#
#   e2e: netpol P/N passed, cnp-conformance P/N passed (S skipped: SCTP), lifecycle P/N passed
#
# Exit status 0 only if every suite passed and nothing was left behind.
#
#   e2e/run.sh [--shape bridge|routed]
#
# Environment:
#   E2E_REPORT     results folder (default ./e2e-report): JUnit files
#                  netpol/junit_01.xml, cnp-conformance.xml, lifecycle.xml; logs
#   E2E_SUITES     which to run (default netpol,cnp,lifecycle)
#   E2E_SUBSET=ci  the representative subset .ci/run runs (e2e/suites.sh)
#   E2E_DEPLOY     the kustomization to install policyd from (default deploy)
#   E2E_UNINSTALL  the uninstall kustomization (default deploy/uninstall)
#   E2E_KEEP=1     leave the cluster up (e2e/cluster.sh down removes it)
# Needs root and a machine of its own while the cluster runs: on a shared
# one, run it under the machine's lock (flock). Builds happen first, before
# anything touches the kernel.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
shape=${E2E_SHAPE:-bridge}
while [ $# -gt 0 ]; do
  case $1 in
    --shape) shape=$2; shift 2 ;;
    --shape=*) shape=${1#*=}; shift ;;
    *) echo "usage: e2e/run.sh [--shape bridge|routed]" >&2; exit 2 ;;
  esac
done
suites=",${E2E_SUITES:-netpol,cnp,lifecycle},"
E2E_REPORT=$(realpath -m "${E2E_REPORT:-$root/e2e-report}")
deploy=$(realpath "${E2E_DEPLOY:-deploy}")
uninstall=$(realpath "${E2E_UNINSTALL:-deploy/uninstall}")
export E2E_REPORT
t0=$SECONDS
stamp() { echo "e2e: [$((SECONDS - t0)) s] $*"; }

rm -rf "$E2E_REPORT"
mkdir -p "$E2E_REPORT/.bin"
stamp "results in $E2E_REPORT (shape $shape)"

# 1. Builds, all before the cluster: the cluster's binaries (cached), the
# images, policyd (the kubectl plugin) and the lifecycle tests.
"$root/hack/cluster-deps.sh" > "$E2E_REPORT/debian-packages.txt"
E2E_TOOLS=$("$root/hack/cluster.sh")
export E2E_TOOLS
cat "$E2E_TOOLS/versions.txt" "$E2E_REPORT/debian-packages.txt" > "$E2E_REPORT/versions.txt"
images=$(e2e/images.sh "$E2E_REPORT/.images" "$E2E_TOOLS")
go build -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev) -X main.commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -o "$E2E_REPORT/.bin/policyd" ./cmd/policyd
go test -c -tags e2e -o "$E2E_REPORT/.bin/lifecycle.test" ./e2e/lifecycle
# shellcheck source=e2e/suites.sh
. "$root/e2e/suites.sh"
report=$(e2e_report_tool)
tbuild=$((SECONDS - t0))
stamp "built in $tbuild s"

# 2. The cluster; torn down on any exit, then checked.
export PDE2E_TOOLS=$E2E_TOOLS PDE2E_IMAGES=$images PDE2E_LOGS=$E2E_REPORT/cluster-logs
summary_file="$E2E_REPORT/summary.txt"
: > "$summary_file"
status=1
# diagnose: the state of a failed run, before teardown removes it.
diagnose() {
  stamp "collecting diagnostics into $E2E_REPORT/diagnostics.txt and pod-logs/"
  kc get nodes,pods -A -o wide
  kc get events -A --sort-by=.lastTimestamp | tail -n 100
  kc describe pods -n policyd-system
  kc -n policyd-system logs -l app.kubernetes.io/name=policyd --all-containers --tail=200 --prefix
  for n in 1 2; do cp -r "/var/lib/pde2e/node$n/pod-logs" "$E2E_REPORT/pod-logs-node$n" 2>/dev/null || true; done
}
finish() {
  local leftovers=0
  trap - EXIT INT TERM
  if [ "$status" != 0 ] && [ -d /var/lib/pde2e ]; then diagnose > "$E2E_REPORT/diagnostics.txt" 2>&1 || true; fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    stamp "cluster kept: e2e/cluster.sh kubectl ..., e2e/cluster.sh down"
  else
    local td=$SECONDS
    e2e/cluster.sh down || true
    if e2e/cluster.sh check-clean > "$E2E_REPORT/leftovers.txt" 2>&1; then
      stamp "torn down in $((SECONDS - td)) s; nothing left behind (no process, network namespace, link, mount, cgroup, file or sysctl change)"
    else
      leftovers=1
      stamp "torn down, but left behind:"
      cat "$E2E_REPORT/leftovers.txt"
    fi
  fi
  stamp "wall time $((SECONDS - t0)) s"
  if [ -s "$summary_file" ]; then
    cat "$summary_file"
  else
    echo "e2e: netpol 0/0 passed, cnp-conformance 0/0 passed (0 skipped: SCTP): the run stopped before the suites ended"
  fi
  [ "$leftovers" = 0 ] || status=1
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

e2e/cluster.sh up --shape "$shape"
tup=$SECONDS
kc() { e2e/cluster.sh kubectl "$@"; }
export KUBECONFIG=/var/lib/pde2e/kubeconfig
E2E_RUN="$root/e2e/cluster.sh run"
export E2E_RUN

# 3. Deploy as users do: the CRDs of the network-policy-api release policyd
# supports, then the kustomization.
crd=$(e2e_cnp_crds)
kc apply --server-side -f "$crd" >/dev/null
kc wait --for condition=established --timeout=60s crd/clusternetworkpolicies.policy.networking.k8s.io >/dev/null
kc apply -k "$deploy"
kc -n policyd-system rollout status daemonset/policyd --timeout=180s
stamp "cluster up and policyd rolled out in $((SECONDS - tup + (tup - t0 - tbuild))) s"
kc get nodes -o wide
kc -n policyd-system get pods -o wide
# What teardown must restore: the kubelet changes these for the whole machine.
stamp "global sysctls while up: $(sysctl vm.overcommit_memory kernel.panic kernel.panic_on_oops | tr -d ' ' | tr '\n' ' ')(before: $(tr '\n' ' ' < "$PDE2E_LOGS/sysctl.saved"))"

# 4. The suites, then the lifecycle tests (the last of which uninstalls).
failed=0
if [[ $suites == *,netpol,* ]]; then
  ts=$SECONDS; e2e_netpol || failed=1; stamp "netpol in $((SECONDS - ts)) s"
fi
if [[ $suites == *,cnp,* ]]; then
  ts=$SECONDS; e2e_cnp || failed=1; stamp "cnp-conformance in $((SECONDS - ts)) s"
fi
lifecycle=()
if [[ $suites == *,lifecycle,* ]]; then
  ts=$SECONDS
  ( $E2E_RUN "$E2E_REPORT/.bin/lifecycle.test" -test.v=test2json -test.timeout 40m \
      -kubectl "$E2E_TOOLS/kubectl" -policyd "$E2E_REPORT/.bin/policyd" \
      -deploy "$deploy" -uninstall "$uninstall" 2>&1 || true
  ) | go tool test2json -t -p lifecycle \
    | "$report" junit -name lifecycle -o "$E2E_REPORT/lifecycle.xml" > "$E2E_REPORT/lifecycle.log" || failed=1
  grep -E '^(--- (PASS|FAIL)|\s+(lifecycle|fixture)_test.go:[0-9]+: )' "$E2E_REPORT/lifecycle.log" || true
  stamp "lifecycle in $((SECONDS - ts)) s"
  lifecycle=(-lifecycle "$E2E_REPORT/lifecycle.xml")
fi

# 5. The summary, kept for the last line.
if e2e_summary "${lifecycle[@]}" > "$E2E_REPORT/summary.full" 2>&1 && [ "$failed" = 0 ]; then
  status=0
fi
head -n -1 "$E2E_REPORT/summary.full"
tail -n 1 "$E2E_REPORT/summary.full" > "$summary_file"
