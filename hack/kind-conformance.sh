#!/usr/bin/env bash
# Runs the upstream suites against policyd in a kind cluster, with the same
# invocation as make e2e (e2e/suites.sh): e2e.test's Netpol specs and the
# network-policy-api conformance tests, the same skips, the same summary
# line. Needs Docker, kind and kubectl on PATH. NOT exercised on the machines
# policyd is developed on (no Docker engine there): make e2e runs the same
# suites on a real cluster built without Docker.
#
# Environment: KIND_CLUSTER (default policyd), KEEP=1 keeps the cluster,
# E2E_REPORT (default ./e2e-report-kind), E2E_SUBSET=ci for the CI subset.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-policyd}"
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-conformance needs $tool on PATH" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "kind-conformance needs a running Docker engine" >&2; exit 2; }

E2E_REPORT=$(realpath -m "${E2E_REPORT:-e2e-report-kind}")
rm -rf "$E2E_REPORT"
mkdir -p "$E2E_REPORT"
export E2E_REPORT
work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The suites' binaries, from the same pins as make e2e (tools/cluster, tools/cnp).
E2E_TOOLS=$(./hack/cluster.sh)
export E2E_TOOLS
# shellcheck source=e2e/suites.sh
. e2e/suites.sh

# Two workers: the suites' pods spread over nodes, so policies are enforced
# both on the client's node (egress) and the server's (ingress). kind's
# default CNI (kindnet) routes pods; policyd runs beside it.
cat > "$work/kind.yaml" <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
- role: worker
YAML
kind create cluster --name "$cluster" --config "$work/kind.yaml" --wait 120s
docker build -t policyd:latest .
kind load docker-image policyd:latest --name "$cluster"
kind get kubeconfig --name "$cluster" > "$work/kubeconfig"
export KUBECONFIG="$work/kubeconfig"
kubectl apply --server-side -f "$(e2e_cnp_crds)"
kubectl wait --for condition=established --timeout=60s crd/clusternetworkpolicies.policy.networking.k8s.io
kubectl apply -k deploy/
kubectl -n policyd-system rollout status daemonset/policyd --timeout=180s

e2e_netpol || true
e2e_cnp || true
e2e_summary
