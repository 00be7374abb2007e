#!/usr/bin/env bash
# Runs the upstream Kubernetes e2e network-policy suite against policyd in a
# kind cluster. Needs Docker, kind and kubectl on PATH. NOT exercised on the
# machines policyd is developed on (no Docker engine there); what it deploys
# (deploy/, the Dockerfile's binary) is tested there against a real API server.
#
# Environment: KIND_CLUSTER (default policyd), KEEP=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-policyd}"
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-conformance needs $tool on PATH" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "kind-conformance needs a running Docker engine" >&2; exit 2; }

work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Two workers: the suite's pods spread over nodes, so policies are enforced
# both on the client's node (egress) and the server's (ingress). kind's default
# CNI (kindnet) routes pods; policyd runs beside it.
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
kubectl --context "kind-$cluster" apply -f deploy/policyd.yaml
kubectl --context "kind-$cluster" -n policyd-system rollout status daemonset/policyd --timeout=180s

# The e2e binary comes from the same pinned k8s.io/kubernetes release as the
# integration tests' API server.
(cd tools/apiserver && go test -c -o "$work/e2e.test" k8s.io/kubernetes/test/e2e)
kind get kubeconfig --name "$cluster" > "$work/kubeconfig"
"$work/e2e.test" --kubeconfig "$work/kubeconfig" --provider skeleton \
  --ginkgo.focus='Netpol' --ginkgo.skip='Feature:SCTPConnectivity' \
  --ginkgo.timeout=2h --report-dir "$work/report"
