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
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
)

func intp(i int) *int { return &i }

// TestKernelRecord_JSON: a kernel record is its decider's one JSON form
// (policies always a list) with the node and id added, and reads back as
// written.
func TestKernelRecord_JSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    runner.KernelRecord
		want string
	}{
		{"v1 default deny", runner.KernelRecord{Decider: decider.Decider{Verdict: decider.VerdictDeny, Direction: "ingress", Kind: decider.KindNetworkPolicy, Policies: []string{"x/allow-b", "x/default-deny"}}},
			`{"verdict":"deny","direction":"ingress","kind":"NetworkPolicy","policies":["x/allow-b","x/default-deny"]}`},
		{"v1 rule admitted", runner.KernelRecord{Decider: decider.Decider{Verdict: decider.VerdictAllow, Direction: "egress", Kind: decider.KindNetworkPolicy, Policies: []string{"x/allow-b"}, Rule: intp(0)}, Node: "node-1", ID: "pd:00"},
			`{"verdict":"allow","direction":"egress","kind":"NetworkPolicy","policies":["x/allow-b"],"rule":0,"node":"node-1","id":"pd:00"}`},
		{"cnp rule", runner.KernelRecord{Decider: decider.Decider{Verdict: decider.VerdictDeny, Direction: "egress", Kind: decider.KindClusterNetworkPolicy, Policies: []string{"NAME"}, Tier: "Admin", Rule: intp(2), RuleName: "deny-all", Action: "Deny"}},
			`{"verdict":"deny","direction":"egress","kind":"ClusterNetworkPolicy","policies":["NAME"],"tier":"Admin","rule":2,"ruleName":"deny-all","action":"Deny"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.d)
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(b))
			var back runner.KernelRecord
			require.NoError(t, json.Unmarshal(b, &back))
			assert.Equal(t, tt.d, back)
		})
	}
}

// TestFillVerdict_Samples: for every sample decider, as explain's answer, a
// kernel record of the same decider agrees, one of any other sample (or of
// the same one with its rule's name or index changed) disagrees, and none at
// all is missing; every sample as a kernel record reads back from the lab's
// JSON as itself with its node and id.
func TestFillVerdict_Samples(t *testing.T) {
	t.Parallel()
	samples := decider.Samples()
	for i, want := range samples {
		rec := func(d decider.Decider) []*runner.KernelRecord {
			return []*runner.KernelRecord{{Decider: d, Node: "node-1", ID: "pd:0123456789abcdef"}}
		}
		c := runner.Cell{Observed: want.Verdict == decider.VerdictAllow}
		runner.FillVerdict(&c, []*decider.Decider{&want}, rec(decider.Samples()[i]))
		assert.Equal(t, runner.VerdictAgree, c.VerdictCheck, "%s", want)
		assert.Equal(t, &want, c.Explained)
		require.NotNil(t, c.Kernel)

		b, err := json.Marshal(c.Kernel)
		require.NoError(t, err)
		var back runner.KernelRecord
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, *c.Kernel, back, "%s", b)

		for j, other := range samples {
			if i == j {
				continue
			}
			c := runner.Cell{Observed: want.Verdict == decider.VerdictAllow}
			runner.FillVerdict(&c, []*decider.Decider{&want}, rec(other))
			assert.Equal(t, runner.VerdictDisagree, c.VerdictCheck, "explain %s, kernel %s", want, other)
		}
		if want.Rule != nil {
			// The rule's name is not in the id the kernel logs: a record
			// naming the rule as it was before a rename agrees.
			renamed := decider.Samples()[i]
			renamed.RuleName = "another"
			c := runner.Cell{Observed: want.Verdict == decider.VerdictAllow}
			runner.FillVerdict(&c, []*decider.Decider{&want}, rec(renamed))
			assert.Equal(t, runner.VerdictAgree, c.VerdictCheck, "explain %s, kernel %+v", want, renamed)
			for _, edit := range []func(*decider.Decider){
				func(d *decider.Decider) { d.Rule = intp(*d.Rule + 1) },
			} {
				d := decider.Samples()[i]
				edit(&d)
				c := runner.Cell{Observed: want.Verdict == decider.VerdictAllow}
				runner.FillVerdict(&c, []*decider.Decider{&want}, rec(d))
				assert.Equal(t, runner.VerdictDisagree, c.VerdictCheck, "explain %s, kernel %+v", want, d)
			}
		}
		c = runner.Cell{}
		runner.FillVerdict(&c, []*decider.Decider{&want}, nil)
		assert.Equal(t, runner.VerdictMissing, c.VerdictCheck, "%s", want)
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
		assert.Equal(t, decider.KindNetworkPolicy, c.Kernel.Kind)
		assert.True(t, strings.HasPrefix(c.Kernel.ID, "pd:"), c.Kernel.ID)
		assert.NotEmpty(t, c.Kernel.Node)
		switch {
		case !c.Observed:
			denied++
			assert.Equal(t, decider.VerdictDeny, c.Kernel.Verdict)
			assert.Equal(t, both, c.Kernel.Policies, "a default deny names every isolating policy")
			assert.Nil(t, c.Kernel.Rule)
		case c.Port == 80:
			admitted++
			assert.Equal(t, decider.VerdictAllow, c.Kernel.Verdict)
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
		if c.Kernel.Kind == decider.KindClusterNetworkPolicy {
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
