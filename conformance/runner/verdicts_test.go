package runner_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/conformance/lab"
	"github.com/policyd/policyd/conformance/runner"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/ruleset"
)

func intp(i int) *int { return &i }

// TestDecider_JSON: a NetworkPolicy decider's policy is a list, a
// ClusterNetworkPolicy's a string, and both read back as written.
func TestDecider_JSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    runner.Decider
		want string
	}{
		{"v1 default deny", runner.Decider{Verdict: "deny", Direction: "ingress", Kind: runner.KindNetworkPolicy, Policies: []string{"x/allow-b", "x/default-deny"}},
			`{"verdict":"deny","direction":"ingress","kind":"NetworkPolicy","policy":["x/allow-b","x/default-deny"]}`},
		{"v1 rule admitted", runner.Decider{Verdict: "allow", Direction: "egress", Kind: runner.KindNetworkPolicy, Policies: []string{"x/allow-b"}, Rule: intp(0), Node: "node-1", ID: "pd:00"},
			`{"verdict":"allow","direction":"egress","kind":"NetworkPolicy","policy":["x/allow-b"],"rule":0,"node":"node-1","id":"pd:00"}`},
		{"cnp rule", runner.Decider{Verdict: "deny", Direction: "egress", Kind: runner.KindClusterNetworkPolicy, Policies: []string{"NAME"}, Tier: "Admin", Rule: intp(2), RuleName: "deny-all", Action: "Deny"},
			`{"verdict":"deny","direction":"egress","kind":"ClusterNetworkPolicy","policy":"NAME","tier":"Admin","rule":2,"ruleName":"deny-all","action":"Deny"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.d)
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(b))
			var back runner.Decider
			require.NoError(t, json.Unmarshal(b, &back))
			assert.Equal(t, tt.d, back)
		})
	}
}

// verdictCells returns the checked cells of results, and the summed stats.
func verdictCells(results []runner.StepResult) ([]runner.Cell, runner.VerdictStats) {
	var cells []runner.Cell
	var st runner.VerdictStats
	for _, r := range results {
		st.Add(r.Verdicts)
		for _, c := range r.Cells {
			if c.VerdictCheck != "" {
				cells = append(cells, c)
			}
		}
	}
	return cells, st
}

// TestRun_VerdictsNameTheDecider runs an upstream case with two policies
// stacked on x/a with --verdicts --log-allowed: each denied probe's first
// packet has a kernel record naming both isolating policies, from the node
// that dropped it; each allowed probe to x/a has the record of the rule
// explain names; nothing is missing or disagrees.
func TestRun_VerdictsNameTheDecider(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := scenarios(t, "^stacked-policies-overlapping-pod-selectors$", nodes)
	results := run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}, Verdicts: true, LogAllowed: true}, sc)
	require.Len(t, results, 2)
	cells, st := verdictCells(results[1:])
	assert.Positive(t, st.Denied.Probes)
	assert.Equal(t, st.Denied.Probes, st.Denied.Agree, "denied: %+v", st.Denied)
	assert.Equal(t, st.Allowed.Probes, st.Allowed.Agree, "allowed: %+v", st.Allowed)
	assert.Positive(t, st.Allowed.Decided, "the policies' rules admit some probes")
	both := []string{"x/allow-client-a-via-ns-selector", "x/allow-client-a-via-ns-selector-80"}
	var denied, admitted int
	for _, c := range cells {
		assert.Equal(t, runner.VerdictAgree, c.VerdictCheck, "%+v", c)
		if c.To != "x/a" {
			continue
		}
		require.NotNil(t, c.Kernel, "%+v", c)
		assert.Equal(t, "ingress", c.Kernel.Direction)
		assert.Equal(t, runner.KindNetworkPolicy, c.Kernel.Kind)
		assert.True(t, strings.HasPrefix(c.Kernel.ID, "pd:"), c.Kernel.ID)
		assert.NotEmpty(t, c.Kernel.Node)
		switch {
		case !c.Observed:
			denied++
			assert.Equal(t, "deny", c.Kernel.Verdict)
			assert.Equal(t, both, c.Kernel.Policies, "a default deny names every isolating policy")
			assert.Nil(t, c.Kernel.Rule)
		case c.Port == 80:
			admitted++
			assert.Equal(t, "allow", c.Kernel.Verdict)
			assert.Equal(t, []string{"x/allow-client-a-via-ns-selector-80"}, c.Kernel.Policies)
			assert.Equal(t, intp(0), c.Kernel.Rule)
		}
		assert.Equal(t, c.Explained.Policies, c.Kernel.Policies)
	}
	assert.Positive(t, denied)
	assert.Positive(t, admitted)
}

// TestRun_VerdictsClusterNetworkPolicyRule: on a ClusterNetworkPolicy
// test, the Admin Deny rules' drops are recorded with the policy, the rule
// index and action, as explain names them.
func TestRun_VerdictsClusterNetworkPolicyRule(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := cnpScenarios(t, "^CNPAdminTierPriorityField$", nodes, nil)
	cells, st := verdictCells(run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}, Verdicts: true}, sc))
	assert.Equal(t, st.Denied.Probes, st.Denied.Agree, "denied: %+v", st.Denied)
	cnpDenies := 0
	for _, c := range cells {
		require.NotNil(t, c.Kernel, "%+v", c)
		if c.Kernel.Kind == runner.KindClusterNetworkPolicy {
			cnpDenies++
			assert.Equal(t, "Deny", c.Kernel.Action)
			assert.Equal(t, "Admin", c.Kernel.Tier)
			assert.NotNil(t, c.Kernel.Rule)
			assert.Len(t, c.Kernel.Policies, 1)
		}
	}
	assert.Positive(t, cnpDenies, "the test's Admin Deny rules must have dropped something")
}

// TestRun_VerdictsCanFail proves the check can fail both ways: a decider
// map that lies about what an id stands for (the kernel logs the right id,
// the run resolves it to the wrong policies) makes every denied probe
// disagree, and log rules removed from the tables make every record missing.
func TestRun_VerdictsCanFail(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := scenarios(t, "^default-deny-ingress$", nodes)
	cfg := runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}, Verdicts: true}

	cfg.Mutate = func(_ string, rs *ruleset.Ruleset) {
		for id, d := range rs.Deciders {
			d.Policies = append(append([]string(nil), d.Policies...), "x/not-this-one")
			rs.Deciders[id] = d
		}
	}
	_, st := verdictCells(run(t, cfg, sc))
	assert.Positive(t, st.Denied.Probes)
	assert.Equal(t, st.Denied.Probes, st.Denied.Disagree, "a corrupted decider map went unnoticed: %+v", st.Denied)
	assert.True(t, st.Failed())

	cfg.Mutate = func(_ string, rs *ruleset.Ruleset) {
		for _, c := range rs.Chains {
			if strings.HasPrefix(c.Name, ruleset.LogChainPrefix) {
				c.Rules = c.Rules[1:] // the log rule; the verdict stays
			}
		}
	}
	_, st = verdictCells(run(t, cfg, sc))
	assert.Positive(t, st.Denied.Probes)
	assert.Equal(t, st.Denied.Probes, st.Denied.Missing, "drops without a log went unnoticed: %+v", st.Denied)
	assert.Zero(t, st.Denied.Recorded)
}

// TestRun_VerdictsServiceAfterDrops: the LoadBalancer case's probes are
// pinned to their backend's source port, so a record of any port of the
// same flow counts for them; right after a case that dropped probes to the
// same backend, none of that case's late records may be taken for them
// (it did, when the Service step started before the earlier records were
// all in). Through ClusterIPs, NodePorts and the external IP, denied and
// allowed, every probe agrees.
func TestRun_VerdictsServiceAfterDrops(t *testing.T) {
	netnstest.RequireRoot(t)
	nodes := []string{"node-1", "node-2"}
	sc := scenarios(t, "^(default-deny-all|default-deny-ingress-loadbalancer-local)$", nodes)
	require.Equal(t, "default-deny-all", sc[0].Name)
	results := run(t, runner.Config{Lab: lab.Config{CNI: lab.CNIRouted, Nodes: nodes}, Verdicts: true, LogAllowed: true}, sc)
	cells, st := verdictCells(results)
	assert.False(t, st.Failed(), "%+v", st)
	via := 0
	for _, c := range cells {
		assert.Equal(t, runner.VerdictAgree, c.VerdictCheck, "%+v kernel %s explain %s", c, c.Kernel, c.Explained)
		if c.Via != "" && !c.Observed {
			via++
		}
	}
	assert.Positive(t, via, "the Service's denied probes were checked")
}
