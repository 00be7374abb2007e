package model

import (
	"slices"

	"github.com/policyd/policyd/policy/decider"
)

// Decider returns what decided d, as the kernel logs it: the
// ClusterNetworkPolicy rule that decided; the NetworkPolicy rule that
// admitted the packet; or, for a denial in the NetworkPolicy tier, the
// default deny of every policy isolating the pod. It returns false when
// nothing decided d: the pod is not isolated and no ClusterNetworkPolicy
// rule matched, node traffic, a pod to itself. The model never names
// decider.KindCtInvalid: it judges packets, not conntrack states.
func (d Direction) Decider() (decider.Decider, bool) {
	out := decider.Decider{Direction: d.Direction, Verdict: decider.VerdictDeny}
	if d.Allowed {
		out.Verdict = decider.VerdictAllow
	}
	switch {
	case d.ClusterRule != nil:
		r := d.ClusterRule
		out.Kind, out.Policies = decider.KindClusterNetworkPolicy, []string{r.Policy}
		out.Tier, out.Rule, out.RuleName, out.Action = r.Tier, decider.Index(r.Rule), r.Name, r.Action
	case d.Tier == "NetworkPolicy" && d.Allowed && d.Match != nil:
		out.Kind, out.Policies, out.Rule = decider.KindNetworkPolicy, []string{d.Match.Policy}, decider.Index(d.Match.Rule)
	case d.Tier == "NetworkPolicy" && !d.Allowed:
		out.Kind, out.Policies = decider.KindNetworkPolicy, slices.Clone(d.Policies)
	default:
		return decider.Decider{}, false
	}
	return out, true
}
