// Package quarantine owns what it means for a policy object to be
// quarantined on a node, in one place for every consumer: the compiler
// decides (policy/compile's budget check, or the agent when the kernel
// refuses a batch the object produced), and the compiler, the semantics
// model, explain, lint and the agent's reports all read the same Decision
// and apply the same stripped copy of the object.
//
// A quarantined object fails closed on its node, in the directions judged
// there (ingress on the destination's node, egress on the source's):
//
//   - a NetworkPolicy keeps selecting and isolating its pods in its
//     directions, with none of its rules: they allow nothing;
//   - a ClusterNetworkPolicy takes the API's fail-closed form: a Deny of
//     everything in each direction it has rules in, at its tier and
//     priority, so that its Accept rules match nothing and nothing it
//     passes or denies gets through.
//
// Quarantining only ever removes allows, never adds one: a table with an
// object quarantined admits a subset of what it admits without.
package quarantine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/policyd/policyd/cluster"
)

// Kind is the kind of a quarantined object. The zero value is invalid.
type Kind uint8

// Kinds.
const (
	KindInvalid Kind = iota
	// NetworkPolicy is a networking.k8s.io/v1 NetworkPolicy ("ns/name").
	NetworkPolicy
	// ClusterNetworkPolicy is a policy.networking.k8s.io
	// ClusterNetworkPolicy (its name).
	ClusterNetworkPolicy
)

// String returns the API kind, "NetworkPolicy" or "ClusterNetworkPolicy".
func (k Kind) String() string {
	switch k {
	case NetworkPolicy:
		return "NetworkPolicy"
	case ClusterNetworkPolicy:
		return "ClusterNetworkPolicy"
	}
	return "invalid"
}

// Reason says why an object was quarantined. The zero value is invalid.
type Reason uint8

// Reasons.
const (
	ReasonInvalid Reason = iota
	// OverObjectBudget: the object's own cost on the node is over the
	// per-object budget.
	OverObjectBudget
	// OverNodeBudget: the node's table is over the per-node budget, and
	// the object was among those picked to bring it under (most expensive
	// first).
	OverNodeBudget
	// KernelRefused: the kernel refused the batch of a sync, and bisection
	// over the policies found this object's part of it refused.
	KernelRefused
)

// String returns the reason as metrics and JSON spell it.
func (r Reason) String() string {
	switch r {
	case OverObjectBudget:
		return "object-budget"
	case OverNodeBudget:
		return "node-budget"
	case KernelRefused:
		return "kernel-refused"
	}
	return "invalid"
}

// Object names one policy object.
type Object struct {
	Kind Kind
	// Key is "namespace/name" for a NetworkPolicy, the name for a
	// ClusterNetworkPolicy.
	Key string
}

// String returns "NetworkPolicy ns/name" or "ClusterNetworkPolicy name".
func (o Object) String() string { return o.Kind.String() + " " + o.Key }

// Compare orders objects by kind, then key.
func (o Object) Compare(p Object) int {
	return cmp.Or(cmp.Compare(o.Kind, p.Kind), strings.Compare(o.Key, p.Key))
}

// Figure is one dimension of a cost against its budget.
type Figure struct {
	// Dimension is "rules", "elements" or "chains".
	Dimension string
	// Cost is the figure counted; Budget the limit it is over (for
	// OverNodeBudget: the node's total and the per-node budget).
	Cost, Budget int
}

// Decision is one object quarantined on one node.
type Decision struct {
	Object
	// Node is the node whose table the decision is for.
	Node   string
	Reason Reason
	// Figure is the cost that was over its budget (budget reasons).
	Figure Figure
	// ObjectCost is the object's own cost on the node in Figure's
	// dimension (for OverNodeBudget, what quarantining it saves at most).
	ObjectCost int
	// Detail is the kernel's error, for KernelRefused.
	Detail string
	// Created is the object's creationTimestamp.
	Created time.Time
}

// Message says what happened and why, naming the object, the node, the
// figure and the budget: the text of the Warning Event, the log line and
// explain's note.
func (d Decision) Message() string {
	switch d.Reason {
	case OverObjectBudget:
		return fmt.Sprintf("%s is quarantined on node %s: it compiles to %d %s there, over the per-object budget of %d; its subjects fail closed (policyd enforces it without its rules)",
			d.Object, d.Node, d.Figure.Cost, d.Figure.Dimension, d.Figure.Budget)
	case OverNodeBudget:
		return fmt.Sprintf("%s is quarantined on node %s: the node's table would hold %d %s, over the per-node budget of %d, and this object costs %d of them (the most expensive go first); its subjects fail closed (policyd enforces it without its rules)",
			d.Object, d.Node, d.Figure.Cost, d.Figure.Dimension, d.Figure.Budget, d.ObjectCost)
	case KernelRefused:
		return fmt.Sprintf("%s is quarantined on node %s: the kernel refused its rules (%s); its subjects fail closed (policyd enforces it without its rules)",
			d.Object, d.Node, d.Detail)
	}
	return fmt.Sprintf("%s is quarantined on node %s", d.Object, d.Node)
}

// Error returns Message: a Decision is also the error that names the
// object.
func (d Decision) Error() string { return d.Message() }

// Set holds quarantine decisions by node. The zero value is empty and
// ready to use; a nil *Set is empty too.
type Set struct {
	byNode map[string]map[Object]Decision
}

// Add records d, replacing an earlier decision for the same object and
// node.
func (s *Set) Add(d Decision) {
	if s.byNode == nil {
		s.byNode = map[string]map[Object]Decision{}
	}
	m := s.byNode[d.Node]
	if m == nil {
		m = map[Object]Decision{}
		s.byNode[d.Node] = m
	}
	m[d.Object] = d
}

// Len returns the number of decisions.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, m := range s.byNode {
		n += len(m)
	}
	return n
}

// Lookup returns the decision quarantining o on node, if any.
func (s *Set) Lookup(node string, o Object) (Decision, bool) {
	if s == nil {
		return Decision{}, false
	}
	d, ok := s.byNode[node][o]
	return d, ok
}

// Node returns the decisions of node, sorted by object.
func (s *Set) Node(node string) []Decision {
	if s == nil {
		return nil
	}
	out := make([]Decision, 0, len(s.byNode[node]))
	for _, d := range s.byNode[node] {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Decision) int { return a.Object.Compare(b.Object) })
	return out
}

// All returns every decision, sorted by node, then object.
func (s *Set) All() []Decision {
	if s == nil {
		return nil
	}
	nodes := make([]string, 0, len(s.byNode))
	for n := range s.byNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	var out []Decision
	for _, n := range nodes {
		out = append(out, s.Node(n)...)
	}
	return out
}

// PolicyObject names a NetworkPolicy.
func PolicyObject(p *cluster.Policy) Object { return Object{Kind: NetworkPolicy, Key: p.Key()} }

// ClusterPolicyObject names a ClusterNetworkPolicy.
func ClusterPolicyObject(p *cluster.ClusterPolicy) Object {
	return Object{Kind: ClusterNetworkPolicy, Key: p.Key()}
}

// StripPolicy returns the form a quarantined NetworkPolicy is enforced in:
// the same subjects and isolated directions, no rules.
func StripPolicy(p *cluster.Policy) *cluster.Policy {
	return &cluster.Policy{
		Namespace:       p.Namespace,
		Name:            p.Name,
		PodSelector:     p.PodSelector,
		PodSelectorKey:  p.PodSelectorKey,
		IsolatesIngress: p.IsolatesIngress,
		IsolatesEgress:  p.IsolatesEgress,
		Errors:          p.Errors,
		Created:         p.Created,
	}
}

// StripClusterPolicy returns the form a quarantined ClusterNetworkPolicy is
// enforced in: its tier, priority and subjects, and in each direction it
// has rules in, one rule denying everything.
func StripClusterPolicy(p *cluster.ClusterPolicy) *cluster.ClusterPolicy {
	out := *p
	denyAll := func(rules []cluster.ClusterRule) []cluster.ClusterRule {
		if len(rules) == 0 {
			return nil
		}
		return []cluster.ClusterRule{{Action: cluster.ActionDeny, MatchAll: true}}
	}
	out.Ingress, out.Egress = denyAll(p.Ingress), denyAll(p.Egress)
	return &out
}

// Snapshot returns snap as node enforces it: the objects quarantined on
// node replaced by their stripped forms (StripPolicy,
// StripClusterPolicy), everything else shared. It returns snap itself when
// nothing is quarantined on node.
func (s *Set) Snapshot(snap *cluster.Snapshot, node string) *cluster.Snapshot {
	if s == nil || len(s.byNode[node]) == 0 {
		return snap
	}
	q := s.byNode[node]
	out := *snap
	out.Policies = make([]*cluster.Policy, len(snap.Policies))
	for i, p := range snap.Policies {
		if _, ok := q[PolicyObject(p)]; ok {
			p = StripPolicy(p)
		}
		out.Policies[i] = p
	}
	out.ClusterPolicies = make([]*cluster.ClusterPolicy, len(snap.ClusterPolicies))
	for i, p := range snap.ClusterPolicies {
		if _, ok := q[ClusterPolicyObject(p)]; ok {
			p = StripClusterPolicy(p)
		}
		out.ClusterPolicies[i] = p
	}
	return &out
}
