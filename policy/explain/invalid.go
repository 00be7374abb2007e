package explain

import (
	"fmt"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// invalidFor returns the members of all (the snapshot's invalid objects
// and fields, sorted) that bear on r:
//   - of the judged pods (both ends, and every claimant of a shared
//     address), and of the Service the connection went through: every one;
//   - of the NetworkPolicies isolating a pod in a direction, and of the
//     ClusterNetworkPolicies that select it (as subject) or whose rule
//     decided or passed: those of the policy as a whole and of that
//     direction's rules (an invalid egress port does not bear on an
//     ingress verdict).
func invalidFor(snap *cluster.Snapshot, all []cluster.Invalid, r Result) []cluster.Invalid {
	type object struct{ kind, name string }
	const anyDirection = "*"
	dirs := map[object]map[string]bool{}
	add := func(kind, name, dir string) {
		o := object{kind, name}
		if dirs[o] == nil {
			dirs[o] = map[string]bool{}
		}
		dirs[o][dir] = true
	}
	for _, end := range []string{r.From, r.To} {
		if snap.Pod(end) != nil {
			add("Pod", end, anyDirection)
		}
	}
	if r.Service != nil {
		add("Service", r.Service.Service, anyDirection)
	}
	for _, d := range []model.Direction{r.Egress, r.Ingress} {
		if d.Pod != "" {
			add("Pod", d.Pod, anyDirection)
		}
		for _, c := range d.Claimants {
			add("Pod", c, anyDirection)
		}
		for _, p := range d.Policies {
			add("NetworkPolicy", p, d.Direction)
		}
		if d.ClusterRule != nil {
			add("ClusterNetworkPolicy", d.ClusterRule.Policy, d.Direction)
		}
		for _, p := range d.Passed {
			add("ClusterNetworkPolicy", p.Policy, d.Direction)
		}
		if pod := snap.Pod(d.Pod); pod != nil {
			nsLabels := snap.NamespaceLabels(pod.Namespace)
			for _, cp := range snap.ClusterPolicies {
				if cp.SelectsPod(pod, nsLabels) {
					add("ClusterNetworkPolicy", cp.Name, d.Direction)
				}
			}
		}
	}
	var out []cluster.Invalid
	for _, v := range all {
		ds := dirs[object{v.Kind, v.Name}]
		if ds == nil {
			continue
		}
		switch {
		case ds[anyDirection]:
		case v.Under("spec.ingress"):
			if !ds["ingress"] {
				continue
			}
		case v.Under("spec.egress"):
			if !ds["egress"] {
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

// markedAction is the action of a ClusterNetworkPolicy rule as explain's
// text shows it: the action judged, and, when the rule or its policy is
// invalid (among inv, the result's invalid fields), what was written and
// that it was judged in its fail-closed form: "Deny (invalid action Drop:
// judged as Deny)".
func markedAction(r model.ClusterRuleRef, inv []cluster.Invalid) string {
	rule := fmt.Sprintf("spec.%s[%d]", r.Direction, r.Rule)
	var inRule, inPolicy *cluster.Invalid
	for i := range inv {
		v := &inv[i]
		if v.Kind != "ClusterNetworkPolicy" || v.Name != r.Policy {
			continue
		}
		switch {
		case v.Field == rule+".action":
			return fmt.Sprintf("%s (invalid action %s: judged as %s)", r.Action, v.Value, r.Action)
		case v.Under(rule):
			if inRule == nil {
				inRule = v
			}
		case !v.Under("spec.ingress") && !v.Under("spec.egress"):
			if inPolicy == nil {
				inPolicy = v
			}
		}
	}
	switch {
	case inRule != nil && r.Action == cluster.ActionDeny.String():
		return fmt.Sprintf("%s (invalid %s: the whole rule judged as Deny of every packet)", r.Action, inRule.Field)
	case inRule != nil:
		return fmt.Sprintf("%s (invalid %s: that entry ignored)", r.Action, inRule.Field)
	case inPolicy != nil:
		return fmt.Sprintf("%s (invalid %s: the policy judged in its fail-closed form)", r.Action, inPolicy.Field)
	}
	return r.Action
}

// describeMarkedClusterRule is describeClusterRule with the action marked
// by markedAction.
func describeMarkedClusterRule(r model.ClusterRuleRef, inv []cluster.Invalid) string {
	action := markedAction(r, inv)
	r.Action = action
	return describeClusterRule(r)
}
