#!/usr/bin/env bash
# The pod-churn soak of issue 15 (agent/soak_test.go, TestSoak): policyd run
# against a real API server holding 10,000 pods / 2,000 policies, churned for
# SOAK_DURATION (default 10m) while real packets probe a lab every second.
# Needs root (network namespaces) and the API server binaries (built once by
# hack/apiserver.sh). CPU heavy: run nothing else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_DURATION="${SOAK_DURATION:-10m}"
dir=$(./hack/apiserver.sh)
export POLICYD_TOOLS_DIR="$dir"
# Loading the cluster and building policyd add a few minutes.
exec go test -count=1 -v -run '^TestSoak$' -timeout 3h ./agent/
