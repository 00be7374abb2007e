// Package cluster owns policyd's validated, typed view of a Kubernetes cluster:
// namespaces, pods and NetworkPolicies after they have been checked at the boundary.
//
// Everything downstream (the selector index, the semantics model, the compiler)
// consumes these types, never raw API objects. Conversion from networking.k8s.io/v1
// and core/v1 objects lives in convert.go; a policy that fails validation is still
// represented, in a fail-closed form (see Policy.Invalid), so that one broken
// policy can never widen what is allowed.
package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Protocol is an L4 protocol a NetworkPolicy port can name. The zero value is
// invalid and never matches a packet.
type Protocol uint8

// Protocol values; numeric values are the IANA protocol numbers.
const (
	ProtocolInvalid Protocol = 0
	ProtocolTCP     Protocol = 6
	ProtocolUDP     Protocol = 17
	ProtocolSCTP    Protocol = 132
)

// Protocols lists the protocols NetworkPolicy v1 supports, in a fixed order.
var Protocols = []Protocol{ProtocolTCP, ProtocolUDP, ProtocolSCTP}

// String returns the Kubernetes spelling (TCP, UDP, SCTP).
func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "TCP"
	case ProtocolUDP:
		return "UDP"
	case ProtocolSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("invalid(%d)", uint8(p))
}

// Lower returns the nftables / port-name spelling (tcp, udp, sctp).
func (p Protocol) Lower() string { return strings.ToLower(p.String()) }

// ParseProtocol parses a Kubernetes protocol name, case-insensitively. An empty
// string is not accepted here; callers apply the TCP default themselves.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtocolTCP, nil
	case "UDP":
		return ProtocolUDP, nil
	case "SCTP":
		return ProtocolSCTP, nil
	}
	return ProtocolInvalid, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", s)
}

// ParseAPIProtocol parses a protocol as the API server validates it: exactly
// TCP, UDP or SCTP. An object saying `protocol: tcp` is rejected by the API
// server, so policyd does not guess what it meant either.
func ParseAPIProtocol(s string) (Protocol, error) {
	switch s {
	case "TCP":
		return ProtocolTCP, nil
	case "UDP":
		return ProtocolUDP, nil
	case "SCTP":
		return ProtocolSCTP, nil
	}
	if p, err := ParseProtocol(s); err == nil {
		return ProtocolInvalid, fmt.Errorf("protocol %q must be written %s (the API server rejects other spellings)", s, p)
	}
	return ProtocolInvalid, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", s)
}

// Namespace is a namespace name and its labels.
type Namespace struct {
	Name   string
	Labels labels.Set
}

// ContainerPort is one declared container port of a pod.
type ContainerPort struct {
	Name     string
	Port     int32
	Protocol Protocol
	// HostPort, when set, is the node port the CNI (portmap) DNATs to this
	// container port; explain follows it.
	HostPort uint16
}

// Pod is the part of a pod that policy decisions depend on.
type Pod struct {
	Namespace string
	Name      string
	Labels    labels.Set
	// NodeName is spec.nodeName; empty while the pod is unscheduled.
	NodeName string
	// HostNetwork pods share their node's address. They are never isolated by
	// policies and never match pod-selector peers; their traffic is node traffic
	// (see README, "hostNetwork pods").
	HostNetwork bool
	// IPs are status.podIPs (or status.podIP), at most one per family, in the
	// order the API gives them. Empty while the pod has no address yet.
	IPs   []netip.Addr
	Ports []ContainerPort
	// Created is metadata.creationTimestamp. When two pods claim one address
	// (the API can lag behind an address being reused), the newer pod owns
	// it: the runtime hands an address out again only once the old sandbox
	// is gone.
	Created time.Time
}

// OwnsAddressOver reports whether p, rather than o, owns an address both
// claim: the newer pod, or on a tie the one with the smaller key.
func (p *Pod) OwnsAddressOver(o *Pod) bool {
	if !p.Created.Equal(o.Created) {
		return p.Created.After(o.Created)
	}
	return p.Key() < o.Key()
}

// Key returns "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// IP returns the pod's address of the given family (4 or 6), if any.
func (p *Pod) IP(family int) (netip.Addr, bool) {
	for _, a := range p.IPs {
		if (family == 4) == a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ResolvePort resolves a named port on this pod for a protocol. It reports the
// port number, or false when the pod declares no port of that name and protocol.
func (p *Pod) ResolvePort(name string, proto Protocol) (int32, bool) {
	for _, cp := range p.Ports {
		if cp.Name == name && cp.Protocol == proto {
			return cp.Port, true
		}
	}
	return 0, false
}

// Direction is ingress or egress. The zero value is invalid.
type Direction uint8

// Direction values.
const (
	DirectionInvalid Direction = iota
	Ingress
	Egress
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "invalid"
}

// Policy is a validated NetworkPolicy.
type Policy struct {
	Namespace string
	Name      string
	// PodSelector selects the policy's subjects within Namespace. Never nil:
	// an unparsable pod selector becomes labels.Everything() (fail closed:
	// every pod of the namespace is isolated, see Invalid).
	PodSelector labels.Selector
	// PodSelectorKey is a canonical string for PodSelector.
	PodSelectorKey string
	// IsolatesIngress / IsolatesEgress say which directions the policy isolates
	// its subjects for, after policyTypes defaulting.
	IsolatesIngress bool
	IsolatesEgress  bool
	// IngressRules / EgressRules are the rules, in spec order. Rule indexes in
	// explanations are indexes into these slices and equal the spec indexes.
	IngressRules []Rule
	EgressRules  []Rule
	// Errors are the validation errors, each naming the field. A policy with
	// errors is still enforced: invalid parts match nothing (see convert.go).
	Errors []error
	// Created is metadata.creationTimestamp: among objects that cost a
	// node alike, the newest is quarantined first (policy/quarantine).
	Created time.Time
}

// Key returns "namespace/name".
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// Isolates reports whether the policy isolates its subjects for d.
func (p *Policy) Isolates(d Direction) bool {
	switch d {
	case Ingress:
		return p.IsolatesIngress
	case Egress:
		return p.IsolatesEgress
	}
	return false
}

// Rules returns the rules for d.
func (p *Policy) Rules(d Direction) []Rule {
	switch d {
	case Ingress:
		return p.IngressRules
	case Egress:
		return p.EgressRules
	}
	return nil
}

// Rule is one ingress or egress rule.
type Rule struct {
	// AllPeers is true when the spec's from/to list is empty or absent: every
	// source (ingress) or destination (egress) matches. When false, only Peers
	// match; an empty Peers with AllPeers false matches nothing (all listed
	// peers were invalid).
	AllPeers bool
	Peers    []Peer
	// AllPorts is true when the spec's ports list is empty or absent: every
	// port and protocol matches. When false, only Ports match.
	AllPorts bool
	Ports    []Port
}

// PeerKind tells which kind of peer a Peer is. The zero value is invalid and
// matches nothing.
type PeerKind uint8

// PeerKind values.
const (
	PeerInvalid PeerKind = iota
	// PeerPods selects pods by namespace and pod selectors.
	PeerPods
	// PeerIPBlock selects addresses by CIDR minus excepts (also a
	// ClusterNetworkPolicy networks entry, without excepts).
	PeerIPBlock
	// PeerNodes selects the addresses of the nodes NodeSelector matches (a
	// ClusterNetworkPolicy nodes peer).
	PeerNodes
)

// Peer is one entry of a rule's from/to list.
type Peer struct {
	Kind PeerKind

	// For PeerPods. NamespaceSelector nil means "the policy's own namespace"
	// (Namespace holds it); PodSelector nil means "every pod".
	Namespace         string
	NamespaceSelector labels.Selector
	PodSelector       labels.Selector
	// Key is a canonical identity: two peers with equal keys select the same
	// pods. It includes Namespace only when NamespaceSelector is nil.
	Key string

	// For PeerIPBlock.
	CIDR   netip.Prefix
	Except []netip.Prefix

	// For PeerNodes.
	NodeSelector labels.Selector
}

// Port is one entry of a rule's ports list. Exactly one form is used:
// a numeric port or range (Port, EndPort), every port of Protocol (Port 0), or a
// named port (Name), resolved on the destination pod.
type Port struct {
	// Protocol is never ProtocolInvalid for a valid entry.
	Protocol Protocol
	// Port is the first port, 0 meaning every port of Protocol.
	Port int32
	// EndPort is the last port of a range (inclusive); equal to Port when the
	// entry is a single port.
	EndPort int32
	// Name is a named port; Port and EndPort are 0 then.
	Name string
}

// Matches reports whether a packet to port/proto on dst matches this entry.
// dst resolves named ports and may be nil (an address that is not a pod), in
// which case a named port never matches.
func (pt Port) Matches(dst *Pod, proto Protocol, port int32) bool {
	if pt.Protocol == ProtocolInvalid || pt.Protocol != proto {
		return false
	}
	if pt.Name != "" {
		if dst == nil {
			return false
		}
		n, ok := dst.ResolvePort(pt.Name, proto)
		return ok && n == port
	}
	if pt.Port == 0 {
		return true
	}
	return port >= pt.Port && port <= pt.EndPort
}

// String renders the entry as a person reads it: "TCP/80", "UDP/1000-2000",
// "TCP/serve-80-tcp", "SCTP/*".
func (pt Port) String() string {
	switch {
	case pt.Name != "":
		return pt.Protocol.String() + "/" + pt.Name
	case pt.Port == 0:
		return pt.Protocol.String() + "/*"
	case pt.EndPort != pt.Port:
		return fmt.Sprintf("%s/%d-%d", pt.Protocol, pt.Port, pt.EndPort)
	}
	return fmt.Sprintf("%s/%d", pt.Protocol, pt.Port)
}

// Snapshot is a consistent view of the cluster for one decision or compile.
// Slices are sorted by key; lookups go through the maps.
type Snapshot struct {
	Namespaces map[string]*Namespace
	Pods       []*Pod
	Policies   []*Policy
	// ClusterPolicies are the ClusterNetworkPolicies, in evaluation order
	// (SortClusterPolicies); Nodes the nodes, by name.
	ClusterPolicies []*ClusterPolicy
	Nodes           []*Node
	// Services are the Services (explain only: nothing is enforced on them),
	// sorted by key, each with its EndpointSlices.
	Services []*Service
	// Errors are the conversion errors NewSnapshot, AddClusterPolicies and
	// AddServices returned, kept so that every reader of the snapshot can
	// report what was invalid (Invalid); each object is held in its
	// fail-closed form whatever they say.
	Errors []error
}
