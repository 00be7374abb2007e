package explain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// Change is one connection whose verdict differs between two snapshots:
// a (source, destination, port, protocol) of the reachability matrix, or a
// pod to a Service port (judged through its backends, as ServiceMatrix
// does). Its JSON form is one line of `policyd diff -o jsonl`.
type Change struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Before   bool   `json:"before"`
	After    bool   `json:"after"`
	// BeforePolicies and AfterPolicies name what decided on each side: the
	// policies (namespace/name) or ClusterNetworkPolicies (name) of the
	// deciding rule, or the isolating policies of a denial; empty when
	// nothing isolates the pods.
	BeforePolicies []string `json:"before_policies"`
	AfterPolicies  []string `json:"after_policies"`
	// BeforeRule and AfterRule say it in words (the rule, or why denied).
	BeforeRule string `json:"before_rule"`
	AfterRule  string `json:"after_rule"`
}

// Denies reports whether the change takes away a connection.
func (c Change) Denies() bool { return c.Before && !c.After }

// ReachDiff is what changes from one snapshot to another.
type ReachDiff struct {
	// Changes are sorted: allowed->denied first, then denied->allowed;
	// within each, by (source namespace, destination namespace), source,
	// destination, port, protocol.
	Changes []Change
	// OnlyBefore and OnlyAfter are the pods (namespace/name) judged on one
	// side only; their connections are not compared.
	OnlyBefore, OnlyAfter []string
}

// Diff compares the reachability of before and after: every matrix cell
// (pods matched by namespace/name, on the ports the destination declares
// on both sides) and every pod to Service port, through its backends.
func Diff(before, after *cluster.Snapshot) (ReachDiff, error) {
	var d ReachDiff
	b, a := model.ExplainMatrix(before), model.ExplainMatrix(after)
	inB, inA := map[string]bool{}, map[string]bool{}
	for _, p := range b.Pods {
		inB[p.Key] = true
	}
	for _, p := range a.Pods {
		inA[p.Key] = true
		if !inB[p.Key] {
			d.OnlyAfter = append(d.OnlyAfter, p.Key)
		}
	}
	for _, p := range b.Pods {
		if !inA[p.Key] {
			d.OnlyBefore = append(d.OnlyBefore, p.Key)
		}
	}
	type key struct {
		from, to string
		port     int32
		proto    cluster.Protocol
	}
	old := make(map[key]model.ExplainedCell, len(b.Cells))
	for _, c := range b.Cells {
		old[key{c.From, c.To, c.Port, c.Protocol}] = c
	}
	for _, c := range a.Cells {
		o, ok := old[key{c.From, c.To, c.Port, c.Protocol}]
		if !ok || o.Allowed == c.Allowed {
			continue
		}
		bp, br := DecidedBy(o.Decision)
		ap, ar := DecidedBy(c.Decision)
		d.Changes = append(d.Changes, Change{From: c.From, To: c.To, Port: c.Port, Protocol: c.Protocol.String(),
			Before: o.Allowed, After: c.Allowed, BeforePolicies: bp, AfterPolicies: ap, BeforeRule: br, AfterRule: ar})
	}
	bs, err := ServiceMatrix(before)
	if err != nil {
		return ReachDiff{}, fmt.Errorf("before: %w", err)
	}
	as, err := ServiceMatrix(after)
	if err != nil {
		return ReachDiff{}, fmt.Errorf("after: %w", err)
	}
	type skey struct {
		from, to, proto string
		port            int32
	}
	oldSvc := make(map[skey]ServiceCell, len(bs))
	for _, c := range bs {
		oldSvc[skey{c.From, c.To, c.Protocol, c.Port}] = c
	}
	for _, c := range as {
		o, ok := oldSvc[skey{c.From, c.To, c.Protocol, c.Port}]
		if !ok || o.Allowed == c.Allowed {
			continue
		}
		d.Changes = append(d.Changes, Change{From: c.From, To: c.To, Port: c.Port, Protocol: c.Protocol,
			Before: o.Allowed, After: c.Allowed, BeforeRule: backendsText(o), AfterRule: backendsText(c)})
	}
	slices.SortFunc(d.Changes, func(x, y Change) int {
		if x.Denies() != y.Denies() {
			if x.Denies() {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(NamespaceOf(x.From), NamespaceOf(y.From)), cmp.Compare(NamespaceOf(x.To), NamespaceOf(y.To)),
			cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Protocol, y.Protocol))
	})
	return d, nil
}

// NamespaceOf is the namespace of a diff or matrix end: a pod key
// "NS/NAME" or a Service's "svc/NS/NAME".
func NamespaceOf(key string) string {
	key = strings.TrimPrefix(key, "svc/")
	ns, _, _ := strings.Cut(key, "/")
	return ns
}

func backendsText(c ServiceCell) string {
	return fmt.Sprintf("%d of %d backends allowed", c.AllowedBackends, c.Backends)
}

// DecidedBy names what decided d: the policies of the rule that decided
// (or, for a denial by isolation, the isolating policies) and the rule in
// words. The direction that denied decides a denial; an allowed connection
// is decided by the rules that admitted it in each isolated direction.
func DecidedBy(d model.Decision) ([]string, string) {
	var policies, words []string
	for _, dir := range []model.Direction{d.Egress, d.Ingress} {
		if d.Allowed != dir.Allowed {
			continue // not the direction that decided a denial
		}
		switch {
		case dir.ClusterRule != nil:
			r := dir.ClusterRule
			policies = append(policies, r.Policy)
			words = append(words, fmt.Sprintf("%s %s %s[%d] %s", r.Tier, r.Policy, r.Direction, r.Rule, r.Action))
		case dir.Match != nil:
			policies = append(policies, dir.Match.Policy)
			words = append(words, fmt.Sprintf("%s %s[%d]", dir.Match.Policy, dir.Match.Direction, dir.Match.Rule))
		case dir.Isolated && !dir.Allowed:
			policies = append(policies, dir.Policies...)
			words = append(words, fmt.Sprintf("%s isolated by %s, no rule admits it", dir.Direction, strings.Join(dir.Policies, ", ")))
		}
		if !d.Allowed {
			break // one denying direction is the answer
		}
	}
	slices.Sort(policies)
	policies = slices.Compact(policies)
	if len(words) == 0 {
		words = []string{"not isolated"}
	}
	if policies == nil {
		policies = []string{}
	}
	return policies, strings.Join(words, "; ")
}
