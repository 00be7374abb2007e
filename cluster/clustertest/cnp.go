package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// RandomNodes returns a Node object for each of nodes (default node-1..3),
// labelled node=<name> and zone a or b, with node i's addresses (NodeIP)
// as InternalIP (and, with IPv6, the IPv6 one too).
func RandomNodes(rng *rand.Rand, opts Options) []*corev1.Node {
	opts = opts.withDefaults()
	var out []*corev1.Node
	for i, name := range opts.Nodes {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"node": name, "zone": pick(rng, []string{"a", "b"})}}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: NodeIP(i, 4).String()}, {Type: corev1.NodeHostName, Address: name}}
		if opts.IPv6 {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: NodeIP(i, 6).String()})
		}
		out = append(out, n)
	}
	return out
}

// RandomClusterPolicies returns up to max valid ClusterNetworkPolicies over
// the generator's label vocabulary: both tiers, priorities drawn from a
// small range (so that some are equal), Accept, Deny and Pass rules with
// namespaces, pods, networks and nodes peers and every protocol form,
// destinationNamedPort included.
func RandomClusterPolicies(rng *rand.Rand, opts Options, max int) []*npav1beta1.ClusterNetworkPolicy {
	opts = opts.withDefaults()
	var out []*npav1beta1.ClusterNetworkPolicy
	for i := range rng.IntN(max + 1) {
		out = append(out, randomClusterPolicy(rng, opts, fmt.Sprintf("cnp-%d", i)))
	}
	return out
}

func randomClusterPolicy(rng *rand.Rand, opts Options, name string) *npav1beta1.ClusterNetworkPolicy {
	podKeys := append([]string{"pod"}, podLabelKeys...)
	nsKeys := append([]string{"ns", corev1.LabelMetadataName}, nsLabelKeys...)
	c := &npav1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.Tier = pick(rng, []npav1beta1.Tier{npav1beta1.AdminTier, npav1beta1.BaselineTier})
	c.Spec.Priority = pick(rng, []int32{0, 5, 10, 10, 50, 1000})
	if rng.IntN(2) == 0 {
		c.Spec.Subject.Namespaces = randomNamespaceSelector(rng, nsKeys)
	} else {
		c.Spec.Subject.Pods = &npav1beta1.NamespacedPod{NamespaceSelector: *randomNamespaceSelector(rng, nsKeys), PodSelector: *randomSelector(rng, podKeys)}
	}
	action := func() npav1beta1.ClusterNetworkPolicyRuleAction {
		return pick(rng, []npav1beta1.ClusterNetworkPolicyRuleAction{
			npav1beta1.ClusterNetworkPolicyRuleActionAccept, npav1beta1.ClusterNetworkPolicyRuleActionDeny, npav1beta1.ClusterNetworkPolicyRuleActionPass,
		})
	}
	podPeer := func() (*metav1.LabelSelector, *npav1beta1.NamespacedPod) {
		if rng.IntN(2) == 0 {
			return randomNamespaceSelector(rng, nsKeys), nil
		}
		return nil, &npav1beta1.NamespacedPod{NamespaceSelector: *randomNamespaceSelector(rng, nsKeys), PodSelector: *randomSelector(rng, podKeys)}
	}
	for range rng.IntN(4) {
		r := npav1beta1.ClusterNetworkPolicyIngressRule{Action: action(), Name: pick(rng, []string{"", "rule"})}
		for range 1 + rng.IntN(2) {
			ns, pods := podPeer()
			r.From = append(r.From, npav1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: ns, Pods: pods})
		}
		r.Protocols = randomProtocols(rng, true)
		c.Spec.Ingress = append(c.Spec.Ingress, r)
	}
	for range rng.IntN(4) {
		r := npav1beta1.ClusterNetworkPolicyEgressRule{Action: action()}
		named := rng.IntN(5) == 0
		for range 1 + rng.IntN(2) {
			var p npav1beta1.ClusterNetworkPolicyEgressPeer
			switch k := rng.IntN(4); {
			case k < 2 || named:
				p.Namespaces, p.Pods = podPeer()
			case k == 2:
				for range 1 + rng.IntN(2) {
					b := randomIPBlock(rng, opts)
					p.Networks = append(p.Networks, npav1beta1.CIDR(netip.MustParsePrefix(b.CIDR).Masked().String()))
				}
			default:
				sel := &metav1.LabelSelector{}
				switch rng.IntN(3) {
				case 0:
					sel.MatchLabels = map[string]string{"node": pick(rng, opts.Nodes)}
				case 1:
					sel.MatchLabels = map[string]string{"zone": pick(rng, []string{"a", "b"})}
				}
				p.Nodes = sel
			}
			r.To = append(r.To, p)
		}
		r.Protocols = randomProtocols(rng, named)
		c.Spec.Egress = append(c.Spec.Egress, r)
	}
	return c
}

// randomProtocols returns nil (every protocol) or 1-3 entries; a named port
// only when named is true (the API forbids it beside networks and nodes).
func randomProtocols(rng *rand.Rand, named bool) []npav1beta1.ClusterNetworkPolicyProtocol {
	if rng.IntN(3) == 0 {
		return nil
	}
	var out []npav1beta1.ClusterNetworkPolicyProtocol
	for range 1 + rng.IntN(3) {
		var p npav1beta1.ClusterNetworkPolicyProtocol
		var port *npav1beta1.Port
		switch rng.IntN(3) {
		case 0:
		case 1:
			port = &npav1beta1.Port{Number: pick(rng, []int32{79, 80, 81})}
		default:
			start := pick(rng, []int32{1, 79, 80})
			port = &npav1beta1.Port{Range: &npav1beta1.PortRange{Start: start, End: start + 1 + int32(rng.IntN(2))}}
		}
		switch rng.IntN(4) {
		case 0:
			p.TCP = &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}
		case 1:
			p.UDP = &npav1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}
		case 2:
			p.SCTP = &npav1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}
		default:
			if named {
				p.DestinationNamedPort = pick(rng, append([]string{"http"}, PortNames...))
			} else {
				p.TCP = &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}
			}
		}
		out = append(out, p)
	}
	return out
}
