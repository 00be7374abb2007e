package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/quarantine"
)

// Quarantine: objects a node enforces in their stripped form.
//
// A node quarantines an object (policy/quarantine) in the directions it
// judges: a connection's egress is judged on the source pod's node, its
// ingress on the destination pod's node (an address several pods claim is
// judged on the node of the pod given, for every claimant, as the kernel
// there does). So each direction is judged on the snapshot as its node
// enforces it: the objects quarantined there replaced by their stripped
// forms (quarantine.Set.Snapshot), exactly what the compiler builds for
// that node.

// QuarantineNote names an object that the node judging a direction
// quarantines and that took part in the verdict (an isolating
// NetworkPolicy, or the ClusterNetworkPolicy that decided).
type QuarantineNote struct {
	// Kind is "NetworkPolicy" or "ClusterNetworkPolicy"; Name its key.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Node is the node that quarantines it.
	Node string `json:"node"`
	// Reason is "object-budget", "node-budget" or "kernel-refused".
	Reason string `json:"reason"`
	// Message names the object, the node, the figure and the budget.
	Message string `json:"message"`
}

// Quarantined evaluates packets as the nodes enforce them, given each
// node's quarantine decisions. It caches per node; it is not safe for
// concurrent use.
type Quarantined struct {
	s         *cluster.Snapshot
	decisions func(node string) []quarantine.Decision
	nodes     map[string]*quarantinedNode
}

type quarantinedNode struct {
	e *evaluator
	q map[quarantine.Object]quarantine.Decision
}

// NewQuarantined returns an evaluator of s where decisions(node) are the
// objects quarantined on node (asked once per node; nil quarantines
// nothing).
func NewQuarantined(s *cluster.Snapshot, decisions func(node string) []quarantine.Decision) *Quarantined {
	return &Quarantined{s: s, decisions: decisions, nodes: map[string]*quarantinedNode{}}
}

// EvaluateQuarantined is Evaluate with the objects q quarantines on each
// node in their stripped forms, in the directions that node judges.
func EvaluateQuarantined(s *cluster.Snapshot, q *quarantine.Set, pkt Packet) Decision {
	return NewQuarantined(s, q.Node).Evaluate(pkt)
}

// node returns the evaluator of the snapshot as node enforces it.
func (v *Quarantined) node(name string) *quarantinedNode {
	if n, ok := v.nodes[name]; ok {
		return n
	}
	n := &quarantinedNode{q: map[quarantine.Object]quarantine.Decision{}}
	var set quarantine.Set
	if name != "" && v.decisions != nil {
		for _, d := range v.decisions(name) {
			d.Node = name
			set.Add(d)
			n.q[d.Object] = d
		}
	}
	n.e = newEvaluator(set.Snapshot(v.s, name))
	v.nodes[name] = n
	return n
}

// judgingNode returns the node whose table judges direction d of pkt: the
// source pod's for egress, the destination pod's for ingress ("" when that
// end is not a pod).
func judgingNode(d cluster.Direction, pkt Packet) string {
	ep := pkt.Src
	if d == cluster.Ingress {
		ep = pkt.Dst
	}
	if p := policyPod(ep); p != nil {
		return p.NodeName
	}
	return ""
}

// Evaluate decides pkt as Evaluate does, each direction on the snapshot its
// node enforces, and notes the quarantined objects that took part.
func (v *Quarantined) Evaluate(pkt Packet) Decision {
	pkt.Dst.Node = false // only meaningful on the source
	var out [2]Direction
	for i, d := range []cluster.Direction{cluster.Egress, cluster.Ingress} {
		name := judgingNode(d, pkt)
		n := v.node(name)
		out[i] = n.e.judge(d, pkt, true)
		if len(n.q) > 0 {
			noteQuarantine(&out[i], n, name)
		}
	}
	return Decision{Allowed: out[0].Allowed && out[1].Allowed, Egress: out[0], Ingress: out[1]}
}

// noteQuarantine adds to dir the objects quarantined on node that took part
// in its verdict, and says so in its reason.
func noteQuarantine(dir *Direction, n *quarantinedNode, node string) {
	var notes []QuarantineNote
	note := func(qd quarantine.Decision) {
		notes = append(notes, QuarantineNote{Kind: qd.Kind.String(), Name: qd.Key, Node: node, Reason: qd.Reason.String(), Message: qd.Message()})
	}
	for _, key := range dir.Policies {
		if qd, ok := n.q[quarantine.Object{Kind: quarantine.NetworkPolicy, Key: key}]; ok {
			note(qd)
		}
	}
	cnp := ""
	if dir.ClusterRule != nil {
		if qd, ok := n.q[quarantine.Object{Kind: quarantine.ClusterNetworkPolicy, Key: dir.ClusterRule.Policy}]; ok {
			note(qd)
			cnp = qd.Key
		}
	}
	if len(notes) == 0 {
		return
	}
	dir.Quarantined = notes
	if cnp != "" {
		r := dir.ClusterRule
		dir.Reason = fmt.Sprintf("denied by %s ClusterNetworkPolicy %s (priority %d): it is quarantined and denies everything in the directions it has rules in",
			r.Tier, cnp, r.Priority)
	}
	var items []string
	for _, nt := range notes {
		how := "enforced without its rules"
		if nt.Kind == quarantine.ClusterNetworkPolicy.String() {
			how = "enforced as a Deny of everything"
		}
		items = append(items, fmt.Sprintf("%s %s, %s (%s)", nt.Kind, nt.Name, how, nt.Reason))
	}
	slices.Sort(items)
	dir.Reason += fmt.Sprintf(" [QUARANTINED on node %s: %s]", node, strings.Join(items, "; "))
}

// Matrix is Matrix of the snapshot as the nodes enforce it: each probe's
// directions judged with what their nodes quarantine.
func (v *Quarantined) Matrix() []Cell {
	var pods []*cluster.Pod
	for _, p := range v.s.Pods {
		if !p.HostNetwork && len(p.IPs) > 0 {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b *cluster.Pod) int { return strings.Compare(a.Key(), b.Key()) })
	var cells []Cell
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			src, dst, ok := commonFamily(from, to)
			if !ok {
				continue
			}
			for _, k := range declaredPorts(to) {
				pkt := Packet{Src: src, Dst: dst, Protocol: k.Protocol, Port: k.Port}
				eg := v.node(judgingNode(cluster.Egress, pkt)).e.judge(cluster.Egress, pkt, false)
				in := v.node(judgingNode(cluster.Ingress, pkt)).e.judge(cluster.Ingress, pkt, false)
				cells = append(cells, Cell{From: from.Key(), To: to.Key(), Port: k.Port, Protocol: k.Protocol, Allowed: eg.Allowed && in.Allowed})
			}
		}
	}
	return cells
}
