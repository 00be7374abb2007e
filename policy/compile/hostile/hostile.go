// Package hostile builds the inputs a hostile tenant can write that cost a
// node the most to enforce (issue 26): one small NetworkPolicy or
// ClusterNetworkPolicy whose compiled form is large, and many small ones
// that are large together. Tests, benchmarks and `go run ./hack/hostile`
// (which writes them as manifests) share it.
//
// Every shape lives in a namespace of its own, "tenant", whose pods run on
// node-1 with addresses in 10.1.0.0/16 and fd00:1::/64, labelled
// hostile=yes and t=<index>, and declare the container ports the shapes'
// named ports name. The shapes' rules admit only tenant pods and addresses
// outside 10.0.0.0/16 (the range of clustertest's pods), so adding a shape
// to a cluster never allows a connection between that cluster's own pods
// (it can only isolate them more).
package hostile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster/clustertest"
)

// Namespace is the tenant's namespace.
const Namespace = "tenant"

// Node is where the tenant's pods run.
const Node = "node-1"

// Shape is one hostile form. The zero value is invalid.
type Shape int

// Shapes. N is Spec's size; each says what it grows.
const (
	ShapeInvalid Shape = iota
	// PeersByNamedPorts: one NetworkPolicy, ingress and egress rules of
	// Spec.N podSelector peers by Spec.M named ports (one nft rule per
	// pair before issue 26).
	PeersByNamedPorts
	// RangeBesidePorts: one NetworkPolicy with a rule of Spec.N ipBlock
	// peers on a port range and Spec.M rules on single ports (the range
	// rule copied into every port's chain before issue 26).
	RangeBesidePorts
	// LongExcepts: one NetworkPolicy with an ipBlock 10.128.0.0/9 and
	// Spec.N /32 excepts (quadratic before issue 26).
	LongExcepts
	// ManyGroups: Spec.N small NetworkPolicies and Spec.N tenant pods on
	// one node, pod i selected by every policy but policy i: N group
	// chains of N-1 policies each, each policy with a rule on a single
	// port and one of Spec.M peers on a port range.
	ManyGroups
	// WidePeers: one NetworkPolicy with Spec.N distinct peers, each
	// selecting every tenant pod (Spec.M pods).
	WidePeers
	// CNPPeersByNamedPorts: one Admin ClusterNetworkPolicy on the tenant
	// namespace with Spec.N pod peers by Spec.M destinationNamedPorts.
	CNPPeersByNamedPorts
	// CNPStaggered: one Admin ClusterNetworkPolicy with Spec.N egress
	// rules, rule i to 10.128.0.0/9's addresses past the i-th /24 on port
	// 1000+2i: ranges that overlap in staggered fashion, on ports that
	// never merge, the worst case of a tier map.
	CNPStaggered
	// CNPManyGroups: Spec.N small ClusterNetworkPolicies, pod i selected
	// by every one but i.
	CNPManyGroups
)

// Shapes lists every shape, for tests that try each.
var Shapes = []Shape{PeersByNamedPorts, RangeBesidePorts, LongExcepts, ManyGroups, WidePeers, CNPPeersByNamedPorts, CNPStaggered, CNPManyGroups}

func (s Shape) String() string {
	switch s {
	case PeersByNamedPorts:
		return "peers-by-named-ports"
	case RangeBesidePorts:
		return "range-beside-ports"
	case LongExcepts:
		return "long-excepts"
	case ManyGroups:
		return "many-groups"
	case WidePeers:
		return "wide-peers"
	case CNPPeersByNamedPorts:
		return "cnp-peers-by-named-ports"
	case CNPStaggered:
		return "cnp-staggered"
	case CNPManyGroups:
		return "cnp-many-groups"
	}
	return fmt.Sprintf("invalid(%d)", int(s))
}

// Spec sizes a shape.
type Spec struct {
	Shape Shape
	// N and M are the shape's sizes (see each Shape).
	N, M int
	// Pods is the number of tenant pods (at least 2); ManyGroups uses N.
	Pods int
	// IPv6 gives tenant pods an IPv6 address too.
	IPv6 bool
}

// PortName is the name tenant pods give container port 1000+i.
func PortName(i int) string { return fmt.Sprintf("h%d", i) }

// Build returns the objects of one shape: the tenant namespace and pods and
// the shape's policies. Add them to a cluster with Merge.
func Build(s Spec) clustertest.Objects {
	pods := max(s.Pods, 2)
	ports := 0
	switch s.Shape {
	case ManyGroups, CNPManyGroups:
		pods = max(s.N, 2)
	case WidePeers:
		pods = max(s.M, 2)
	case PeersByNamedPorts, CNPPeersByNamedPorts:
		ports = s.M
	}
	o := tenant(pods, ports, s.IPv6)
	switch s.Shape {
	case PeersByNamedPorts:
		o.Policies = append(o.Policies, peersByNamedPorts(s.N, s.M))
	case RangeBesidePorts:
		o.Policies = append(o.Policies, rangeBesidePorts(s.N, s.M))
	case LongExcepts:
		o.Policies = append(o.Policies, longExcepts(s.N))
	case ManyGroups:
		for i := range pods {
			o.Policies = append(o.Policies, allButOne(i, s.M))
		}
	case WidePeers:
		o.Policies = append(o.Policies, widePeers(s.N))
	case CNPPeersByNamedPorts:
		o.ClusterPolicies = append(o.ClusterPolicies, cnpPeersByNamedPorts(s.N, s.M))
	case CNPStaggered:
		o.ClusterPolicies = append(o.ClusterPolicies, cnpStaggered(s.N))
	case CNPManyGroups:
		for i := range pods {
			o.ClusterPolicies = append(o.ClusterPolicies, cnpAllButOne(i))
		}
	}
	return o
}

// Merge returns a with b's objects added.
func Merge(a, b clustertest.Objects) clustertest.Objects {
	return clustertest.Objects{
		Namespaces:      append(append([]*corev1.Namespace(nil), a.Namespaces...), b.Namespaces...),
		Pods:            append(append([]*corev1.Pod(nil), a.Pods...), b.Pods...),
		Policies:        append(append([]*networkingv1.NetworkPolicy(nil), a.Policies...), b.Policies...),
		ClusterPolicies: append(append([]*npav1beta1.ClusterNetworkPolicy(nil), a.ClusterPolicies...), b.ClusterPolicies...),
		Nodes:           append(append([]*corev1.Node(nil), a.Nodes...), b.Nodes...),
	}
}

// Random returns a random hostile spec: its shape and sizes drawn so that
// some inputs stay small and some are large (scale multiplies the largest
// sizes; 1 keeps a test fast). Pods stay few (at most 12*scale), so that
// a test can judge every pair of them.
func Random(rng *rand.Rand, scale int) Spec {
	scale = max(scale, 1)
	s := Spec{Shape: Shapes[rng.IntN(len(Shapes))], Pods: 2 + rng.IntN(4), IPv6: rng.IntN(2) == 0}
	big := func(lo, hi int) int { return lo + rng.IntN(hi*scale-lo+1) }
	switch s.Shape {
	case PeersByNamedPorts, CNPPeersByNamedPorts:
		s.N, s.M = big(1, 60), big(1, 40)
	case RangeBesidePorts:
		s.N, s.M = big(1, 200), big(2, 200)
	case LongExcepts:
		s.N = big(1, 3000)
	case ManyGroups:
		s.N, s.M = big(2, 12), rng.IntN(4)
	case CNPManyGroups:
		s.N = big(2, 12)
	case WidePeers:
		s.N, s.M = big(1, 200), big(2, 12)
	case CNPStaggered:
		s.N = big(1, 200)
	}
	return s
}

// PodAddr returns tenant pod i's address of family 4 or 6.
func PodAddr(i, family int) netip.Addr {
	if family == 6 {
		b := netip.MustParseAddr("fd00:1::").As16()
		b[14], b[15] = byte((i+2)>>8), byte(i+2)
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{10, 1, byte((i + 2) >> 8), byte(i + 2)})
}

func tenant(pods, ports int, ipv6 bool) clustertest.Objects {
	var o clustertest.Objects
	o.Namespaces = append(o.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace,
		Labels: map[string]string{corev1.LabelMetadataName: Namespace, "ns": Namespace, "tenant": "yes"}}})
	for i := range pods {
		c := corev1.Container{Name: "c"}
		for j := range ports {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: PortName(j), ContainerPort: int32(1000 + j), Protocol: corev1.ProtocolTCP})
		}
		ips := []corev1.PodIP{{IP: PodAddr(i, 4).String()}}
		if ipv6 {
			ips = append(ips, corev1.PodIP{IP: PodAddr(i, 6).String()})
		}
		o.Pods = append(o.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: fmt.Sprintf("t-%d", i),
				Labels: map[string]string{"hostile": "yes", "t": fmt.Sprint(i)}},
			Spec:   corev1.PodSpec{NodeName: Node, Containers: []corev1.Container{c}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0].IP, PodIPs: ips},
		})
	}
	return o
}

func np(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "yes"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

// tenantPeer selects the tenant pods labelled t=<i>, in any namespace the
// tenant label marks (only the tenant's).
func tenantPeer(i int) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"t": fmt.Sprint(i)}},
	}
}

func peersByNamedPorts(peers, names int) *networkingv1.NetworkPolicy {
	p := np("peers-by-named-ports")
	var from []networkingv1.NetworkPolicyPeer
	for i := range peers {
		from = append(from, tenantPeer(i))
	}
	var ports []networkingv1.NetworkPolicyPort
	for j := range names {
		name := intstr.FromString(PortName(j))
		ports = append(ports, networkingv1.NetworkPolicyPort{Port: &name})
	}
	p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: ports}}
	p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: from, Ports: ports}}
	return p
}

func rangeBesidePorts(blocks, singles int) *networkingv1.NetworkPolicy {
	p := np("range-beside-ports")
	var to []networkingv1.NetworkPolicyPeer
	for i := range blocks {
		to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.%d.%d.0/24", 128+i>>8&0x7f, i&0xff)}})
	}
	lo, end := intstr.FromInt32(20000), int32(30000)
	p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: []networkingv1.NetworkPolicyPort{{Port: &lo, EndPort: &end}}})
	for j := range singles {
		port := intstr.FromInt32(int32(1000 + j))
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{
			To:    []networkingv1.NetworkPolicyPeer{tenantPeer(j)},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
		})
	}
	// The same on ingress, from the blocks.
	for _, r := range p.Spec.Egress {
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.To, Ports: r.Ports})
	}
	return p
}

func longExcepts(n int) *networkingv1.NetworkPolicy {
	p := np("long-excepts")
	b := &networkingv1.IPBlock{CIDR: "10.128.0.0/9"}
	for i := range n {
		// Spread over the /9, /32s: 2^23 addresses apart by a stride.
		a := netip.AddrFrom4([4]byte{10, 128 + byte((i*2654435761)>>16&0x7f), byte(i * 2654435761 >> 8), byte(i * 2654435761)})
		b.Except = append(b.Except, netip.PrefixFrom(a, 32).String())
	}
	peer := networkingv1.NetworkPolicyPeer{IPBlock: b}
	p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{peer}}}
	p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{peer}}}
	return p
}

func allButOne(i, m int) *networkingv1.NetworkPolicy {
	p := np(fmt.Sprintf("group-%d", i))
	p.Spec.PodSelector = metav1.LabelSelector{
		MatchLabels:      map[string]string{"hostile": "yes"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "t", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fmt.Sprint(i)}}},
	}
	port := intstr.FromInt32(int32(1000 + i))
	peer := tenantPeer(i)
	p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{peer}, Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}
	p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{peer}, Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}
	if m > 0 {
		var peers []networkingv1.NetworkPolicyPeer
		for k := range m {
			peers = append(peers, tenantPeer(i+k+1))
		}
		lo, end := intstr.FromInt32(int32(20000+i)), int32(30000+i)
		ports := []networkingv1.NetworkPolicyPort{{Port: &lo, EndPort: &end}}
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	}
	return p
}

func widePeers(n int) *networkingv1.NetworkPolicy {
	p := np("wide-peers")
	var peers []networkingv1.NetworkPolicyPeer
	for i := range n {
		// Distinct selectors, each matching every tenant pod.
		peers = append(peers, networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}},
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hostile": "yes"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "absent", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fmt.Sprint(i)}}}},
		})
	}
	p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peers}}
	p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: peers}}
	return p
}

func cnp(name string) *npav1beta1.ClusterNetworkPolicy {
	c := &npav1beta1.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy.networking.k8s.io/v1beta1", Kind: "ClusterNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
	c.Spec.Tier = npav1beta1.AdminTier
	c.Spec.Priority = 500
	c.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}}
	return c
}

func cnpPeer(i int) *npav1beta1.NamespacedPod {
	return &npav1beta1.NamespacedPod{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}},
		PodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"t": fmt.Sprint(i)}},
	}
}

func cnpPeersByNamedPorts(peers, names int) *npav1beta1.ClusterNetworkPolicy {
	c := cnp("peers-by-named-ports")
	var from []npav1beta1.ClusterNetworkPolicyIngressPeer
	var to []npav1beta1.ClusterNetworkPolicyEgressPeer
	for i := range peers {
		from = append(from, npav1beta1.ClusterNetworkPolicyIngressPeer{Pods: cnpPeer(i)})
		to = append(to, npav1beta1.ClusterNetworkPolicyEgressPeer{Pods: cnpPeer(i)})
	}
	var protos []npav1beta1.ClusterNetworkPolicyProtocol
	for j := range names {
		protos = append(protos, npav1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: PortName(j)})
	}
	c.Spec.Ingress = []npav1beta1.ClusterNetworkPolicyIngressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept, From: from, Protocols: protos}}
	c.Spec.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept, To: to, Protocols: protos}}
	return c
}

func cnpStaggered(n int) *npav1beta1.ClusterNetworkPolicy {
	c := cnp("staggered")
	for i := range n {
		// 10.128.0.0/9 minus its first i+1 /24s, as the CIDRs that cover
		// the rest: each rule's range starts one /24 later.
		var nets []npav1beta1.CIDR
		for _, q := range coverFrom(i+1, 9) {
			nets = append(nets, npav1beta1.CIDR(q.String()))
		}
		c.Spec.Egress = append(c.Spec.Egress, npav1beta1.ClusterNetworkPolicyEgressRule{
			Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
			To:     []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: nets}},
			Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{
				DestinationPort: &npav1beta1.Port{Number: int32(1000 + 2*i)}}}},
		})
	}
	return c
}

// coverFrom returns the fewest CIDRs covering 10.128.0.0/bits from its
// k-th /24 on.
func coverFrom(k, bits int) []netip.Prefix {
	start := uint32(10)<<24 | uint32(128)<<16 | uint32(k)<<8
	end := uint32(10)<<24 | uint32(128)<<16 | (uint32(1)<<(32-bits) - 1)
	var out []netip.Prefix
	for start <= end && start != 0 {
		size := 32
		for size > bits {
			step := uint32(1) << (32 - (size - 1))
			if start%step != 0 || start+step-1 > end {
				break
			}
			size--
		}
		a := netip.AddrFrom4([4]byte{byte(start >> 24), byte(start >> 16), byte(start >> 8), byte(start)})
		out = append(out, netip.PrefixFrom(a, size))
		next := start + uint32(1)<<(32-size)
		if next <= start {
			break
		}
		start = next
	}
	return out
}

func cnpAllButOne(i int) *npav1beta1.ClusterNetworkPolicy {
	c := cnp(fmt.Sprintf("group-%d", i))
	c.Spec.Subject.Namespaces = nil
	c.Spec.Subject.Pods = &npav1beta1.NamespacedPod{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}},
		PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "t", Operator: metav1.LabelSelectorOpNotIn, Values: []string{fmt.Sprint(i)}}}},
	}
	c.Spec.Priority = int32(i % 1000)
	c.Spec.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{
		Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept,
		To:     []npav1beta1.ClusterNetworkPolicyEgressPeer{{Pods: cnpPeer(i)}},
		Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{
			DestinationPort: &npav1beta1.Port{Number: int32(1000 + i)}}}},
	}}
	return c
}
