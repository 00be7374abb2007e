package runner_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/conformance"
	"github.com/policyd/policyd/conformance/cnp"
	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/runner"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/ruleset"
)

func scenarios(t *testing.T, pattern string, nodes []string) []runner.Scenario {
	t.Helper()
	cases, err := conformance.Cases()
	require.NoError(t, err)
	re := regexp.MustCompile(pattern)
	var picked []conformance.Case
	for _, c := range cases {
		if re.MatchString(c.Name) {
			picked = append(picked, c)
		}
	}
	require.NotEmpty(t, picked, pattern)
	sc, err := runner.CaseScenarios(picked, nodes)
	require.NoError(t, err)
	return sc
}

var runCounter int

func run(t *testing.T, cfg runner.Config, sc []runner.Scenario) []runner.StepResult {
	t.Helper()
	// A run id of our own, so that the leftover check ignores labs other
	// packages' tests build at the same time.
	runCounter++
	cfg.Lab.RunID = fmt.Sprintf("rt%d%d", os.Getpid()%100000, runCounter)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out []runner.StepResult
	require.NoError(t, runner.Run(ctx, cfg, sc, func(r runner.StepResult) { out = append(out, r) }))
	assertNoLeftovers(t, cfg.Lab.RunID)
	return out
}

// assertNoLeftovers checks that the run left no namespaces, links or nft
// tables behind, and that no policyd table landed in the root namespace.
func assertNoLeftovers(t *testing.T, runID string) {
	t.Helper()
	left, err := lab.Leftovers(runID)
	require.NoError(t, err)
	assert.Empty(t, left, "lab run %s left these behind", runID)
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.NotContains(t, string(out), "inet policyd", "enforcement must stay inside the lab's node namespaces")
}

// TestRun_UpstreamCases runs a spread of upstream cases (multi-step ones,
// named ports, egress ipBlocks, namespace relabels) in both CNI shapes
// through per-pod ClusterIPs, on two nodes. `make conformance` runs all of
// them in every mode.
func TestRun_UpstreamCases(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := scenarios(t, "^(default-deny-all|egress-named-port|egress-cidr-except|ingress-from-updated-namespace|stop-enforcing-after-delete|udp-ports|default-deny-ingress-loadbalancer-local)$", nodes)
	for _, cni := range []lab.CNI{lab.CNIRouted, lab.CNIBridged} {
		t.Run(string(cni), func(t *testing.T) {
			results := run(t, runner.Config{Lab: lab.Config{CNI: cni, Nodes: nodes, DNAT: true}}, sc)
			cells := 0
			for _, r := range results {
				cells += len(r.Cells)
				if r.Disagree > 0 {
					exp, obs := r.Tables()
					for pp := range exp {
						t.Errorf("%s step %d %s:\nexpected\n%sobserved\n%s", r.Scenario, r.Index, pp, exp[pp], obs[pp])
					}
				}
			}
			require.Greater(t, cells, 500, "the scenarios must have probed something")
		})
	}
}

// TestRun_MutationIsDetected proves the lab can fail: with one allow rule
// removed from every node's compiled ruleset, the cells it admitted must be
// reported as disagreeing.
func TestRun_MutationIsDetected(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := scenarios(t, "^allow-from-same-namespace-pod-selector$", nodes)
	removed := 0
	mutate := func(node string, rs *ruleset.Ruleset) {
		for _, c := range rs.Chains {
			if !strings.HasPrefix(c.Name, "ingress-") {
				continue
			}
			for i, r := range c.Rules {
				if _, ok := r.(*ruleset.AllowRule); ok {
					c.Rules = append(c.Rules[:i:i], c.Rules[i+1:]...)
					removed++
					break
				}
			}
		}
	}
	results := run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}, Mutate: mutate}, sc)
	require.Positive(t, removed, "the mutation must have removed a rule")
	disagree := 0
	for _, r := range results {
		disagree += r.Disagree
		for _, c := range r.Cells {
			if !c.Agrees() {
				assert.True(t, c.Expected, "a removed allow rule can only turn allowed cells into denied ones: %+v", c)
				assert.False(t, c.Observed, "%+v", c)
			}
		}
	}
	assert.Positive(t, disagree, "a ruleset missing an allow rule went unnoticed")
}

func cnpScenarios(t *testing.T, pattern string, nodes []string, edit func([]cnp.Test)) []runner.Scenario {
	t.Helper()
	tests, err := cnp.Tests()
	require.NoError(t, err)
	re := regexp.MustCompile(pattern)
	var picked []cnp.Test
	for _, tc := range tests {
		if re.MatchString(tc.Name) {
			picked = append(picked, tc)
		}
	}
	require.NotEmpty(t, picked, pattern)
	if edit != nil {
		edit(picked)
	}
	sc, err := runner.CNPScenarios(picked, nodes)
	require.NoError(t, err)
	return sc
}

// TestRun_CNPTests runs a spread of the ClusterNetworkPolicy suite (both
// tiers, priorities, host-networked peers, node peers, a NetworkPolicy
// beside the tiers, label changes between probes) with real packets on two
// routed nodes: every probed cell must agree with the data, denials must be
// drops, and SCTP cells are counted as not probed only. `make conformance`
// runs the whole suite in every mode.
func TestRun_CNPTests(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := cnpScenarios(t, "^(CNPAdminTierPriorityField|CNPAdminTierIntegration|CNPAdminTierEgressNodePeers|CNPBaselineTierPodSelector|CNPAdminTierIngressSCTP)$", nodes, nil)
	results := run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}}, sc)
	var agree, notProbed int
	for _, r := range results {
		agree += r.Agree
		notProbed += r.NotProbed
		for _, c := range r.Cells {
			if !c.Agrees() {
				t.Errorf("%s step %d (%s): %s -> %s %s/%d: expected allowed=%v, observed %v (%s) %s", r.Scenario, r.Index, r.Step, c.From, c.To, c.Proto, c.Port, c.Expected, c.Observed, c.Detail, c.Err)
			}
			if !c.Probed {
				assert.Equal(t, "SCTP", c.Proto, "only SCTP goes unprobed: %+v", c)
			}
		}
		assert.Equal(t, len(r.Cells), r.Agree+r.Disagree+r.NotProbed, "every cell is counted once")
	}
	assert.Greater(t, agree, 30, "the tests must have probed something")
	assert.Positive(t, notProbed, "CNPAdminTierIngressSCTP's probes are SCTP")
}

// TestRun_CNPWrongExpectationIsDetected proves the lab can fail on the CNP
// suite: with one probe's expectation flipped in a copy of the data, that
// cell, and only that one, must be reported as disagreeing.
func TestRun_CNPWrongExpectationIsDetected(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	var flipped cnp.Probe
	sc := cnpScenarios(t, "^CNPAdminTierPriorityField$", nodes, func(tests []cnp.Test) {
		// A copy: the Steps and Probes slices are shared with the data.
		tc := &tests[0]
		tc.Steps = append([]cnp.Step(nil), tc.Steps...)
		tc.Steps[0].Probes = append([]cnp.Probe(nil), tc.Steps[0].Probes...)
		tc.Steps[0].Probes[0].Allowed = !tc.Steps[0].Probes[0].Allowed
		flipped = tc.Steps[0].Probes[0]
	})
	results := run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}}, sc)
	var bad []runner.Cell
	for _, r := range results {
		for _, c := range r.Cells {
			if !c.Agrees() {
				bad = append(bad, c)
			}
		}
	}
	require.Len(t, bad, 1, "exactly the flipped probe must disagree")
	assert.Equal(t, flipped.From, bad[0].From)
	assert.Equal(t, flipped.To, bad[0].To)
	assert.Equal(t, flipped.Allowed, bad[0].Expected)
	assert.NotEqual(t, bad[0].Expected, bad[0].Observed, "the packets must contradict the flipped expectation: %+v", bad[0])
	t.Logf("flipped %s -> %s %s/%s to allowed=%v: reported expected %v, observed %v (%s)", flipped.From, flipped.To, flipped.Protocol, flipped.Port, flipped.Allowed, bad[0].Expected, bad[0].Observed, bad[0].Detail)
}

// TestRun_DualStackProbesBothFamilies: a dual-stack lab probes its
// dual-stack pairs over IPv6 as well (the examples' frontend-1, api and db),
// every IPv6 cell agrees, and removing the allow rules of the IPv6 ingress
// chains is seen on IPv6 cells only.
func TestRun_DualStackProbesBothFamilies(t *testing.T) {
	netnstest.RequireRoot(t)
	objs, err := manifest.LoadPath("../../examples")
	require.NoError(t, err)
	nodes := []string{"node-a", "node-b"}
	sc := []runner.Scenario{{Name: "examples", Steps: []runner.Step{{Name: "policies", Namespaces: objs.Namespaces, Pods: objs.Pods,
		Policies: objs.Policies, ClusterPolicies: objs.ClusterPolicies, Nodes: objs.Nodes}}}}
	count := func(results []runner.StepResult) (v6, v6bad, v4bad int) {
		for _, r := range results {
			for _, c := range r.Cells {
				switch {
				case c.Family == 6:
					v6++
					if !c.Agrees() {
						v6bad++
					}
				case !c.Agrees():
					v4bad++
				}
			}
		}
		return v6, v6bad, v4bad
	}
	cfg := runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes, IPv6: true}}
	v6, v6bad, v4bad := count(run(t, cfg, sc))
	assert.Positive(t, v6, "no IPv6 cell was probed")
	assert.Zero(t, v6bad+v4bad)

	cfg.Mutate = func(_ string, rs *ruleset.Ruleset) {
		for _, c := range rs.Chains {
			if !strings.HasPrefix(c.Name, "ingress-") {
				continue
			}
			kept := c.Rules[:0:0]
			for _, r := range c.Rules {
				if a, ok := r.(*ruleset.AllowRule); ok && a.Family == 6 {
					continue
				}
				kept = append(kept, r)
			}
			c.Rules = kept
		}
	}
	_, v6bad, v4bad = count(run(t, cfg, sc))
	assert.Positive(t, v6bad, "IPv6 ingress chains without allow rules went unnoticed")
	assert.Zero(t, v4bad, "IPv4 was not touched")
}
