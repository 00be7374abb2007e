package model_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/model"
)

// TestDirection_DeciderSamples: for every sample decider, the model's
// judgement of a direction that decider decided names it exactly; the
// model never names a conntrack-invalid drop. A new kind fails here until
// the model says whether and how it names it.
func TestDirection_DeciderSamples(t *testing.T) {
	t.Parallel()
	for _, want := range decider.Samples() {
		allowed := want.Verdict == decider.VerdictAllow
		var dir model.Direction
		switch want.Kind {
		case decider.KindClusterNetworkPolicy:
			dir = model.Direction{Direction: want.Direction, Pod: "x/a", Allowed: allowed, Tier: want.Tier,
				ClusterRule: &model.ClusterRuleRef{Policy: want.Policies[0], Tier: want.Tier, Priority: 5, Direction: want.Direction,
					Rule: *want.Rule, Name: want.RuleName, Action: want.Action, Peer: model.All, Port: 0}}
		case decider.KindNetworkPolicy:
			dir = model.Direction{Direction: want.Direction, Pod: "x/a", Isolated: true, Allowed: allowed, Tier: "NetworkPolicy", Policies: want.Policies}
			if allowed {
				dir.Policies = append([]string{"x/another"}, want.Policies...)
				dir.Match = &model.RuleRef{Policy: want.Policies[0], Direction: want.Direction, Rule: *want.Rule, Peer: 0, Port: model.All}
			}
		case decider.KindCtInvalid:
			continue // no Direction names it: see TestDirection_DeciderNone
		case decider.KindInvalid:
			t.Fatalf("an invalid sample: %s", want)
		default:
			t.Fatalf("the model has no form of decider kind %s", want.Kind)
		}
		got, ok := dir.Decider()
		if assert.True(t, ok, "%s", want) {
			assert.Equal(t, want, got)
			assert.True(t, want.Equal(got), "%s", want)
		}
	}
}

// TestDirection_DeciderNone: nothing decided a direction that is not
// isolated and that no ClusterNetworkPolicy rule matched, nor node traffic.
func TestDirection_DeciderNone(t *testing.T) {
	t.Parallel()
	for _, dir := range []model.Direction{
		{Direction: "ingress", Pod: "x/a", Allowed: true},
		{Direction: "egress", Pod: "", Allowed: true},
		{Direction: "ingress", Pod: "x/a", Isolated: true, Allowed: true, Tier: "NetworkPolicy", Policies: []string{"x/p"}}, // node traffic: no rule
	} {
		_, ok := dir.Decider()
		assert.False(t, ok, "%+v", dir)
	}
}
