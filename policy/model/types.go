// Package model owns policyd's reference semantics of Kubernetes NetworkPolicy
// v1: a pure function from a cluster snapshot and one packet to an allow/deny
// decision, with the reasons a person needs to act on it.
//
// Nothing here touches the kernel or nftables. The compiler's output is checked
// against this package (conformance, `policyd explain`), and this package is
// checked against a second, independently written evaluator in its tests.
//
// The semantics follow the networking.k8s.io/v1 API documentation; every rule
// is restated where it is implemented (see evaluate.go).
package model

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/policyd/policyd/cluster"
)

// Endpoint is one end of a packet.
type Endpoint struct {
	// Pod is the pod that owns IP, or nil when the address is not a pod's
	// (an external address, a node). A hostNetwork pod may be given: it is
	// treated as node traffic (never isolated, never a pod-selector peer).
	Pod *cluster.Pod
	// IP is the address used on the wire. ipBlock peers are matched against it.
	IP netip.Addr
	// Node, on the source endpoint, marks traffic from the destination pod's
	// own node (kubelet probes). Such traffic is always allowed into the pod,
	// and the source's egress is not judged. Node is ignored on Dst.
	Node bool
}

// Packet is the first packet of a connection as seen by policy: source,
// destination, L4 protocol and destination port.
type Packet struct {
	Src, Dst Endpoint
	Protocol cluster.Protocol
	Port     int32
	// Hairpin says the packet left its source pod for a Service address
	// and comes back to the pod's own address, translated by kube-proxy on
	// the pod's node (a pod calling itself through a Service). Unlike a
	// packet a pod sends straight to its own address, which never leaves
	// it, such a packet is judged as the node sees it: the pod's egress to
	// its own address and its ingress from it.
	Hairpin bool
}

// Decision is the verdict for one packet. Allowed is true only when both the
// source's egress and the destination's ingress allow the packet.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Egress is judged on the source pod.
	Egress Direction `json:"egress"`
	// Ingress is judged on the destination pod.
	Ingress Direction `json:"ingress"`
}

// Direction is the verdict of one direction (egress on the source pod,
// ingress on the destination pod).
type Direction struct {
	// Direction is "egress" or "ingress".
	Direction string `json:"direction"`
	// Pod is the judged pod as "namespace/name", or "" when that endpoint is
	// not a (non-hostNetwork) pod; the direction then always allows.
	Pod string `json:"pod"`
	// Isolated reports whether some policy isolates Pod for this direction.
	Isolated bool `json:"isolated"`
	// Policies are the keys of the policies isolating Pod for this
	// direction, sorted.
	Policies []string `json:"policies,omitempty"`
	Allowed  bool     `json:"allowed"`
	// Reason is one sentence explaining the verdict.
	Reason string `json:"reason"`
	// Match is the first rule that admitted the packet, in the order policy
	// key, rule index, peer index, port index. Nil when the direction is not
	// isolated or the packet was denied, and for node traffic.
	Match *RuleRef `json:"match,omitempty"`
	// Tier is the tier whose rule decided: "Admin", "NetworkPolicy" or
	// "Baseline"; "" when nothing did (not isolated, the default allows).
	Tier string `json:"tier,omitempty"`
	// ClusterRule is the ClusterNetworkPolicy rule that decided, when one did.
	ClusterRule *ClusterRuleRef `json:"clusterRule,omitempty"`
	// Passed lists the Pass rules that matched on the way (an Admin Pass
	// hands over to the NetworkPolicy tier).
	Passed []ClusterRuleRef `json:"passed,omitempty"`
	// Claimants, set when two or more pods claim the judged address, are
	// their keys: the direction was judged as the strictest of them, and Pod
	// is the claimant whose verdict is reported.
	Claimants []string `json:"claimants,omitempty"`
	// NearestMiss is set when the packet was denied while isolated and some
	// isolating policy has a rule for this direction: the rule that came
	// closest and why it did not match.
	NearestMiss *Miss `json:"nearestMiss,omitempty"`
	// Quarantined lists the objects that took part in the verdict (an
	// isolating NetworkPolicy, the deciding ClusterNetworkPolicy) and that
	// the node judging this direction quarantines (quarantine.go).
	Quarantined []QuarantineNote `json:"quarantined,omitempty"`
}

// ClusterRuleRef names one ClusterNetworkPolicy rule and the peer and port
// entries that matched.
type ClusterRuleRef struct {
	Policy    string `json:"policy"`
	Tier      string `json:"tier"`
	Priority  int32  `json:"priority"`
	Direction string `json:"direction"`
	// Rule is the index into the policy's ingress or egress list; Name the
	// rule's name ("" when it has none).
	Rule   int    `json:"rule"`
	Name   string `json:"name,omitempty"`
	Action string `json:"action"`
	// Peer and Port index the rule's peers (after a networks entry is
	// split into one peer per CIDR) and protocol entries (a
	// destinationNamedPort counts once per protocol); All for no list.
	Peer int `json:"peer"`
	Port int `json:"port"`
}

// Index values used in RuleRef.Peer and RuleRef.Port.
const (
	// All means the rule has no peer (or no port) list, so it matches every
	// peer (or every port).
	All = -1
	// None, only in a Miss, means no entry of the list matched.
	None = -2
)

// RuleRef names one rule and, within it, the peer and port entries that matched.
type RuleRef struct {
	// Policy is the policy key "namespace/name".
	Policy string `json:"policy"`
	// Direction is "ingress" or "egress".
	Direction string `json:"direction"`
	// Rule is the index into the policy's ingress or egress list.
	Rule int `json:"rule"`
	// Peer is the index into the rule's from/to list, or All.
	// In a Miss it may also be None.
	Peer int `json:"peer"`
	// Port is the index into the rule's ports list, or All.
	// In a Miss it may also be None.
	Port int `json:"port"`
}

// String renders the reference as "x/p ingress[0] peer 1 port 0"; in a Miss,
// a list none of whose entries matched reads "no port entry matched"
// ("x/p ingress[0] peer 1, no port entry matched").
func (r RuleRef) String() string {
	if r.Peer == None || r.Port == None {
		return fmt.Sprintf("%s %s[%d] %s, %s", r.Policy, r.Direction, r.Rule, indexString("peer", r.Peer), indexString("port", r.Port))
	}
	return fmt.Sprintf("%s %s[%d] %s %s", r.Policy, r.Direction, r.Rule, indexString("peer", r.Peer), indexString("port", r.Port))
}

func indexString(what string, i int) string {
	switch i {
	case All:
		return "all " + what + "s"
	case None:
		return "no " + what + " entry matched"
	}
	return fmt.Sprintf("%s %d", what, i)
}

// Miss is the rule that came closest to admitting a denied packet. Peer and
// Port are the matching entries' indexes, All when the rule has no such list,
// or None when no entry matched.
type Miss struct {
	RuleRef
	// Reason says what did not match, e.g.
	// "peer matched but port TCP/81 is not in [TCP/80]".
	Reason string `json:"reason"`
}

// Cell is one entry of a connectivity matrix: may From open a connection to
// To on Port/Protocol.
type Cell struct {
	From     string           `json:"from"`
	To       string           `json:"to"`
	Port     int32            `json:"port"`
	Protocol cluster.Protocol `json:"protocol"`
	Allowed  bool             `json:"allowed"`
}

type cellJSON struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  bool   `json:"allowed"`
}

// MarshalJSON writes the protocol by name ("TCP"), not by number.
func (c Cell) MarshalJSON() ([]byte, error) {
	return json.Marshal(cellJSON{From: c.From, To: c.To, Port: c.Port, Protocol: c.Protocol.String(), Allowed: c.Allowed})
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (c *Cell) UnmarshalJSON(b []byte) error {
	var j cellJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	proto, err := cluster.ParseProtocol(j.Protocol)
	if err != nil {
		return fmt.Errorf("cell %s -> %s: protocol: %w", j.From, j.To, err)
	}
	*c = Cell{From: j.From, To: j.To, Port: j.Port, Protocol: proto, Allowed: j.Allowed}
	return nil
}
