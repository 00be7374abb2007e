package compile_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

var logDrops = compile.Options{Log: compile.LogOptions{Drops: true, Group: 100, Rate: 10, Burst: 5}}

func (f *fixture) compileWith(t *testing.T, node string, opts compile.Options) *ruleset.Ruleset {
	t.Helper()
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, f.policies)
	require.Empty(t, errs)
	rs, err := (&compile.Compiler{Options: opts}).Compile(selectors.FromSnapshot(snap), node)
	require.NoError(t, err)
	require.NoError(t, ruleset.Check(rs), "the compiled ruleset breaks its shapes' contract")
	return rs
}

// TestCompile_LoggedDefaultDeny: the default deny of a group chain goes to
// a log chain whose prefix resolves to the isolating policies.
func TestCompile_LoggedDefaultDeny(t *testing.T) {
	t.Parallel()
	f := newFixture(withPolicy(policy("x", "deny", networkingv1.NetworkPolicySpec{})))
	rs := f.compileWith(t, "node-1", logDrops)
	ch := rs.Chain(mapTargets(rs, compile.MapIngress4)["10.0.0.1"])
	require.NotNil(t, ch)
	last := ch.Rules[len(ch.Rules)-1].RuleVerdict()
	require.Equal(t, ruleset.Goto, last.Kind, "default deny %s", last)
	lc := rs.Chain(last.Chain)
	require.NotNil(t, lc)
	require.Len(t, lc.Rules, 2)
	lr, ok := lc.Rules[0].(*ruleset.LogRule)
	require.True(t, ok, "log chain starts with %q", lc.Rules[0].Text())
	assert.Equal(t, "drop", lc.Rules[1].Text())
	assert.Equal(t, uint16(100), lr.Group)
	assert.Equal(t, decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Policies: []string{"x/deny"}}, rs.Deciders[lr.Prefix])
	// Both families and the invalid drop have their log chains; every
	// prefix resolves, and every log rule names the table's one limit: the
	// rate is the node's.
	require.Equal(t, []*ruleset.Limit{{Name: ruleset.LimitName(10, 5), Rate: 10, Burst: 5}}, rs.Limits)
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if lr, ok := r.(*ruleset.LogRule); ok {
				assert.Equal(t, rs.Limits[0].Name, lr.Limit)
				assert.Contains(t, rs.Deciders, lr.Prefix)
				assert.True(t, strings.HasPrefix(c.Name, ruleset.LogChainPrefix), "log rule in %s", c.Name)
			}
		}
	}
}

// TestCompile_LoggingOffIsTodaysTable: the zero LogOptions compile the
// same text as Compile, without Deciders.
func TestCompile_LoggingOffIsTodaysTable(t *testing.T) {
	t.Parallel()
	f := newFixture(withPolicy(policy("x", "deny", networkingv1.NetworkPolicySpec{})))
	off := f.compileWith(t, "node-1", compile.Options{Log: compile.LogOptions{Group: 5, Rate: 3}})
	assert.Equal(t, f.compile(t, "node-1").Text(), off.Text())
	assert.Nil(t, off.Deciders)
	assert.NotEqual(t, off.Text(), f.compileWith(t, "node-1", logDrops).Text())
}

// TestCompile_LogIDsStableAndNeverReused: adding a policy keeps the ids of
// the deciders that did not change, and a changed decider gets a new id,
// never an old one that stood for something else.
func TestCompile_LogIDsStableAndNeverReused(t *testing.T) {
	t.Parallel()
	deny := withPolicy(policy("x", "deny", networkingv1.NetworkPolicySpec{}))
	before := newFixture(deny).compileWith(t, "node-1", logDrops)
	afterUnrelated := newFixture(deny, withPolicy(policy("y", "other", networkingv1.NetworkPolicySpec{}))).compileWith(t, "node-1", logDrops)
	for id, d := range before.Deciders {
		assert.Equal(t, d, afterUnrelated.Deciders[id], "id %s", id)
	}
	edited := newFixture(deny, withPolicy(policy("x", "second", networkingv1.NetworkPolicySpec{}))).compileWith(t, "node-1", logDrops)
	seen := map[string]decider.Decider{}
	for _, rs := range []*ruleset.Ruleset{before, afterUnrelated, edited} {
		for id, d := range rs.Deciders {
			if old, ok := seen[id]; ok {
				assert.Equal(t, old, d, "id %s reused", id)
			}
			seen[id] = d
			assert.Equal(t, compile.DeciderID(d), id)
		}
	}
	var found bool
	for _, d := range edited.Deciders {
		if d.Kind == decider.KindNetworkPolicy && strings.Join(d.Policies, ",") == "x/deny,x/second" {
			found = true
		}
	}
	assert.True(t, found, "the edited group's deny names both policies: %v", edited.Deciders)
}

// TestCompile_AdminPassIsNotLoggedAsDecider: an Admin Pass with nothing
// after it (no NetworkPolicy, no Baseline) is the default allow, for which
// explain names no decider, so with allowed logging on it has no log chain
// of its own; an Admin Accept beside it does. The lab's --verdicts
// --log-allowed run on the ClusterNetworkPolicy suite found the kernel
// logging such a Pass as the rule that admitted the packet.
func TestCompile_AdminPassIsNotLoggedAsDecider(t *testing.T) {
	t.Parallel()
	f := newFixture()
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, nil)
	require.Empty(t, errs)
	peer := []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}
	cnp := &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "admin"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 1,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{
				{Name: "pass-80", Action: npav1beta1.ClusterNetworkPolicyRuleActionPass, From: peer,
					Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: 80}}}}},
				{Name: "accept-rest", Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept, From: peer},
			},
		},
	}
	require.Empty(t, snap.AddClusterPolicies([]*npav1beta1.ClusterNetworkPolicy{cnp}, nil))
	rs, err := (&compile.Compiler{Options: compile.Options{Log: compile.LogOptions{Drops: true, Allowed: true, Group: 100}}}).Compile(selectors.FromSnapshot(snap), "node-1")
	require.NoError(t, err)
	var actions []string
	for _, d := range rs.Deciders {
		if d.Kind == decider.KindClusterNetworkPolicy {
			actions = append(actions, d.Action)
		}
	}
	assert.Equal(t, []string{"Accept"}, actions, "deciders: %v", rs.Deciders)
}

// TestCompile_LoggedAllowsKeepPolicyOrder: with allowed logging, the first
// allow rule that matches is the decider logged, so a group chain keeps its
// rules in policy-key and rule order (the order explain names the admitting
// rule in) instead of dropping a rule another policy's covers. Without
// logging the covered rule is still dropped. The lab's --verdicts
// --log-allowed found the kernel naming x/b-any-80 where explain names
// x/a-from-b for x/b -> x/a TCP/80.
func TestCompile_LoggedAllowsKeepPolicyOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(
		withPolicy(policy("x", "a-from-b", networkingv1.NetworkPolicySpec{PodSelector: *podSel(map[string]string{"pod": "a"}),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"pod": "b"})}}, Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}})),
		withPolicy(policy("x", "b-any-80", networkingv1.NetworkPolicySpec{PodSelector: *podSel(map[string]string{"pod": "a"}),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}})),
	)
	allowed := func(rs *ruleset.Ruleset) []string {
		ch := rs.Chain(mapTargets(rs, compile.MapIngress4)["10.0.0.1"])
		require.NotNil(t, ch)
		var out []string
		for _, r := range ch.Rules {
			if ar, ok := r.(*ruleset.AllowRule); ok {
				out = append(out, ar.Comment)
			}
		}
		return out
	}
	logged := f.compileWith(t, "node-1", compile.Options{Log: compile.LogOptions{Drops: true, Allowed: true, Group: 100}})
	assert.Equal(t, []string{"x/a-from-b ingress[0]", "x/b-any-80 ingress[0]"}, allowed(logged))
	assert.Equal(t, []string{"x/b-any-80 ingress[0]"}, allowed(f.compile(t, "node-1")), "without logging the covered rule goes")
}

// TestDeciderID_Samples: every sample decider's id is the one it had
// before deciders were one type (ids are in the kernel's log chains and
// the agent's resolver across its run, so they never change for a decider
// that exists), and no two samples share one.
func TestDeciderID_Samples(t *testing.T) {
	t.Parallel()
	want := []string{"pd:442d7027ae125a5e", "pd:488c2cd724eef65e", "pd:b84cc68f958233ed", "pd:41a6c46504b80072", "pd:433f918f4b3aaa0f"}
	samples := decider.Samples()
	require.Len(t, want, len(samples))
	for i, d := range samples {
		assert.Equal(t, want[i], compile.DeciderID(d), "%s", d)
	}
}

// TestCompile_ClusterRuleDecidersNameTheirRules: compile writes each
// ClusterNetworkPolicy rule's name into its decider, in both directions, so
// records name the rule as the compiled state did; a rule without a name has
// none.
func TestCompile_ClusterRuleDecidersNameTheirRules(t *testing.T) {
	t.Parallel()
	f := newFixture()
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, nil)
	require.Empty(t, errs)
	all := &metav1.LabelSelector{}
	cnp := &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "block"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 1,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{
				{Name: "first", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny, From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}}}}},
				{Name: "no-metrics", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny, From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: all}}},
			},
			Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{
				{Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Namespaces: all}}},
			},
		},
	}
	require.Empty(t, snap.AddClusterPolicies([]*npav1beta1.ClusterNetworkPolicy{cnp}, nil))
	rs, err := (&compile.Compiler{Options: logDrops}).Compile(selectors.FromSnapshot(snap), "node-1")
	require.NoError(t, err)
	names := map[string]string{}
	for id, d := range rs.Deciders {
		if d.Kind == decider.KindClusterNetworkPolicy {
			require.NotNil(t, d.Rule, "%s", d)
			names[fmt.Sprintf("%s[%d]", d.Direction, *d.Rule)] = d.RuleName
			assert.Equal(t, compile.DeciderID(d), id)
		}
	}
	assert.Equal(t, map[string]string{"ingress[0]": "first", "ingress[1]": "no-metrics", "egress[0]": ""}, names)
}
