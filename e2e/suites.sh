# shellcheck shell=bash
# The upstream suites as make e2e (e2e/run.sh) and make kind-conformance
# (hack/kind-conformance.sh) run them: sourced, so both invoke them the same
# way. Unmodified binaries, flags only:
#   - e2e.test from k8s.io/kubernetes (tools/cluster), the Netpol specs,
#     skipping only the SCTP connectivity ones;
#   - the network-policy-api conformance tests (tools/cnp), profile
#     ClusterNetworkPolicy with all features, skipping exactly the steps that
#     probe SCTP (go run ./e2e/cmd/report cnp-skips lists them, with reasons).
#
# The caller sets:
#   E2E_TOOLS   the directory hack/cluster.sh printed (e2e.test, ginkgo, cnp-conformance.test)
#   E2E_REPORT  where the results go (netpol/junit_01.xml, cnp-conformance.xml, logs)
#   KUBECONFIG  the cluster
#   E2E_RUN     optional: a command prefix the binaries run under (e2e/cluster.sh run)
# and optionally E2E_SUBSET=ci for the representative subset .ci/run uses,
# E2E_GINKGO_NODES (default 2).

E2E_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Every Netpol spec but the SCTP ones ([Feature:SCTPConnectivity]: this
# kernel has no SCTP; the two TCP specs about SCTP policies do run).
NETPOL_FOCUS='Netpol'
NETPOL_SKIP='SCTPConnectivity'
# The CI subset: 9 specs. TCP (default deny, ports), UDP (default deny,
# ports), named ports (ingress and egress), ipBlock (CIDR, except), egress
# (pod selector), namespace selectors.
NETPOL_FOCUS_CI="Netpol NetworkPolicy between server and client should (support a 'default-deny-ingress' policy|enforce policy to allow traffic only from a different namespace, based on NamespaceSelector|allow ingress access on one named port|allow egress access on one named port|deny egress from pods based on PodSelector|allow egress access to server in CIDR block|enforce except clause while egress access to server in CIDR block) |Netpol \[LinuxOnly\] NetworkPolicy between server and client using UDP should (support a 'default-deny-ingress' policy|enforce policy based on Ports) "
NETPOL_MIN_CI=8
# The CI subset of the conformance suite: 6 tests. Admin tier (allow, deny
# and pass, at ports), Baseline tier (UDP egress), named ports, node peers,
# the tiers with NetworkPolicies (CNPAdminTierIntegration), and networks
# (inline CIDR peers: only its set-up runs here, as both its steps probe
# SCTP; the lab's make conformance runs their TCP and UDP probes).
CNP_RUN_CI='^(CNPAdminTierIngressTCP|CNPBaselineTierEgressUDP|CNPAdminTierEgressNamedPort|CNPAdminTierEgressNodePeers|CNPAdminTierIntegration|CNPAdminTierEgressInlineCIDRPeers)$'
CNP_MIN_CI=5

e2e_netpol_focus() { if [ "${E2E_SUBSET:-}" = ci ]; then echo "$NETPOL_FOCUS_CI"; else echo "$NETPOL_FOCUS"; fi; }
e2e_cnp_run() { if [ "${E2E_SUBSET:-}" = ci ]; then echo "$CNP_RUN_CI"; fi; }

# e2e_report_tool: builds e2e/cmd/report once.
e2e_report_tool() {
  if [ ! -x "$E2E_REPORT/.bin/report" ]; then
    mkdir -p "$E2E_REPORT/.bin"
    (cd "$E2E_ROOT" && go build -o "$E2E_REPORT/.bin/report" ./e2e/cmd/report) || return 1
  fi
  echo "$E2E_REPORT/.bin/report"
}

# e2e_netpol: the real e2e.test, Netpol specs, under ginkgo (parallel).
e2e_netpol() {
  local focus rc=0
  focus=$(e2e_netpol_focus)
  mkdir -p "$E2E_REPORT/netpol"
  echo "e2e: netpol: e2e.test --ginkgo.focus='$focus' --ginkgo.skip='$NETPOL_SKIP'"
  ${E2E_RUN:-} "$E2E_TOOLS/ginkgo" --nodes="${E2E_GINKGO_NODES:-2}" --no-color --timeout=2h \
    --focus="$focus" --skip="$NETPOL_SKIP" \
    "$E2E_TOOLS/e2e.test" -- \
    --kubeconfig="$KUBECONFIG" --provider=skeleton --report-dir="$E2E_REPORT/netpol" \
    > "$E2E_REPORT/netpol.log" 2>&1 || rc=$?
  grep -E '^(Ran [0-9]+ of|SUCCESS|FAIL|  \[FAIL\])' "$E2E_REPORT/netpol.log" || true
  return $rc
}

# e2e_cnp_crds: the ClusterNetworkPolicy CRD of the release tools/cnp pins,
# experimental channel (the suite's -all-features needs its fields).
e2e_cnp_crds() {
  local dir
  dir=$(cd "$E2E_ROOT/tools/cnp" && go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api) || return 1
  echo "$dir/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml"
}

# e2e_cnp: the network-policy-api conformance suite's own tests.
e2e_cnp() {
  local report pattern run rc=0
  report=$(e2e_report_tool) || return 1
  pattern=$("$report" cnp-skip-pattern) || return 1
  run="^TestConformanceProfiles\$"
  [ -n "$(e2e_cnp_run)" ] && run+="/$(e2e_cnp_run)"
  "$report" cnp-skips > "$E2E_REPORT/cnp-skipped.txt"
  echo "e2e: cnp-conformance: TestConformanceProfiles -conformance-profiles=ClusterNetworkPolicy -all-features, $(wc -l < "$E2E_REPORT/cnp-skipped.txt") steps skipped for SCTP ($E2E_REPORT/cnp-skipped.txt)"
  # The suite's own report (-report-output) is not written: it counts a
  # test that -test.skip left out as passed.
  ( ${E2E_RUN:-} env KUBECONFIG="$KUBECONFIG" "$E2E_TOOLS/cnp-conformance.test" \
      -test.run "$run" -test.skip "$pattern" -test.v=test2json -test.timeout 90m \
      -conformance-profiles=ClusterNetworkPolicy -all-features \
      -organization=policyd -project=policyd -url=https://github.com/policyd/policyd \
      -version="$(git -C "$E2E_ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)" \
      -contact=policyd -additional-info="make e2e (e2e/run.sh) on a real two-node cluster" 2>&1 || echo "exit $?" >&2
  ) | go tool test2json -t -p cnp-conformance \
    | "$report" junit -name cnp-conformance -o "$E2E_REPORT/cnp-conformance.xml" > "$E2E_REPORT/cnp-conformance.log" || rc=$?
  grep -E '^\s*--- (PASS|FAIL): TestConformanceProfiles/[^/]+ ' "$E2E_REPORT/cnp-conformance.log" || true
  return $rc
}

# e2e_summary [-lifecycle FILE]: the summary line, and its exit status.
e2e_summary() {
  local report focus
  report=$(e2e_report_tool) || return 1
  focus=$(e2e_netpol_focus)
  local args=(-netpol "$E2E_REPORT/netpol/junit_01.xml" -netpol-focus "$focus" -netpol-skip "$NETPOL_SKIP"
    -cnp "$E2E_REPORT/cnp-conformance.xml" -cnp-run "$(e2e_cnp_run)")
  [ -f "$E2E_REPORT/netpol/junit_01.xml" ] || args[1]=""
  [ -f "$E2E_REPORT/cnp-conformance.xml" ] || args[7]=""
  if [ "${E2E_SUBSET:-}" = ci ]; then args+=(-netpol-min "$NETPOL_MIN_CI" -cnp-min "$CNP_MIN_CI"); fi
  "$report" summary "${args[@]}" "$@"
}
