package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// GatewayPrefix4 holds the addresses HostileIdentities gives Nodes as CNI
// gateway addresses besides pods' and nodes' own: inside PodPrefix4, above
// the pods the generator makes.
var GatewayPrefix4 = netip.MustParsePrefix("10.0.0.192/27")

// HostileIdentities returns a deep copy of o with identity claims added,
// and a description of each, for tests requiring that the model and the
// compiled table agree on them and that they never widen what the rest of
// the cluster allows. o should have Nodes (Options.MaxClusterPolicies > 0).
// Every part is one a Node's kubelet, a CNI, a pods/status writer or a
// careless admin could write:
//
//   - a Node listing an existing pod's address in status.addresses (an
//     existing Node, or a new one labelled like an existing one);
//   - a new Node listing an existing Node's address, with random labels;
//   - CNI gateway annotations on Nodes (Calico's and Cilium's forms), and
//     pod CIDRs, naming unused pod-network addresses, a pod's address or
//     another Node's;
//   - a ClusterNetworkPolicy of either tier whose Deny rule has an invalid
//     peer (a Deny of everything, fail-closed);
//   - a newer pod claiming an existing pod's address, with other labels;
//   - a running pod with an address but no spec.nodeName.
//
// Existing objects only get additions (an address, annotations, pod
// CIDRs); new objects are Nodes, pods and ClusterNetworkPolicies.
func HostileIdentities(rng *rand.Rand, o Objects) (Objects, []string) {
	out := Objects{}
	for _, ns := range o.Namespaces {
		out.Namespaces = append(out.Namespaces, ns.DeepCopy())
	}
	for _, p := range o.Pods {
		out.Pods = append(out.Pods, p.DeepCopy())
	}
	for _, np := range o.Policies {
		out.Policies = append(out.Policies, np.DeepCopy())
	}
	for _, c := range o.ClusterPolicies {
		out.ClusterPolicies = append(out.ClusterPolicies, c.DeepCopy())
	}
	for _, n := range o.Nodes {
		out.Nodes = append(out.Nodes, n.DeepCopy())
	}
	var what []string
	var addressed []*corev1.Pod
	for _, p := range out.Pods {
		if !p.Spec.HostNetwork && p.Spec.NodeName != "" && len(p.Status.PodIPs) > 0 {
			addressed = append(addressed, p)
		}
	}
	if len(out.Nodes) == 0 || len(addressed) == 0 {
		return out, what
	}
	nodeNames := make([]string, len(out.Nodes))
	for i, n := range out.Nodes {
		nodeNames[i] = n.Name
	}
	newNode := func(name string, addrs ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"node": pick(rng, nodeNames), "zone": pick(rng, []string{"a", "b"})}}}
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		out.Nodes = append(out.Nodes, n)
		return n
	}

	// A Node claims a pod's address.
	for i := range 1 + rng.IntN(2) {
		victim := pick(rng, addressed)
		ip := pick(rng, victim.Status.PodIPs).IP
		if rng.IntN(2) == 0 {
			n := pick(rng, out.Nodes)
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
			what = append(what, fmt.Sprintf("node %s lists pod %s/%s's address %s", n.Name, victim.Namespace, victim.Name, ip))
		} else {
			n := newNode(fmt.Sprintf("claimant-%d", i), ip)
			what = append(what, fmt.Sprintf("new node %s %v lists pod %s/%s's address %s", n.Name, n.Labels, victim.Namespace, victim.Name, ip))
		}
	}
	// Two Nodes list one address.
	for i := range rng.IntN(3) {
		orig := pick(rng, o.Nodes)
		a := orig.Status.Addresses[0].Address
		n := newNode(fmt.Sprintf("twin-%d", i), a)
		what = append(what, fmt.Sprintf("new node %s %v lists node %s's address %s", n.Name, n.Labels, orig.Name, a))
	}
	// CNI gateway annotations and pod CIDRs.
	keys := []string{"projectcalico.org/IPv4VXLANTunnelAddr", "projectcalico.org/IPv4IPIPTunnelAddr", "network.cilium.io/ipv4-cilium-host", "io.cilium.network.ipv4-health-ip", "projectcalico.org/IPv6VXLANTunnelAddr"}
	for i, n := range out.Nodes {
		if rng.IntN(2) == 0 {
			continue
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		var a string
		switch rng.IntN(4) {
		case 0:
			a = pick(rng, pick(rng, addressed).Status.PodIPs).IP
		case 1:
			a = pick(rng, o.Nodes).Status.Addresses[0].Address
		default:
			a = addN(GatewayPrefix4.Addr(), rng.IntN(32)).String()
		}
		k := pick(rng, keys)
		n.Annotations[k] = a
		if rng.IntN(3) == 0 && len(n.Spec.PodCIDRs) == 0 {
			// A pod CIDR inside the pod range: its network and first
			// addresses are gateways, and may be pods' addresses.
			c := netip.PrefixFrom(addN(PodPrefix4.Addr(), 64*(i%4)), 26).String()
			n.Spec.PodCIDR, n.Spec.PodCIDRs = c, []string{c}
			what = append(what, fmt.Sprintf("node %s pod CIDR %s", n.Name, c))
		}
		what = append(what, fmt.Sprintf("node %s %s=%s", n.Name, k, a))
	}
	// A fail-closed ClusterNetworkPolicy: a Deny rule with an invalid peer
	// denies everything in its direction.
	if rng.IntN(2) == 0 {
		bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"a"}}}}
		c := &npav1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "broken"}}
		c.Spec.Tier = pick(rng, []npav1beta1.Tier{npav1beta1.AdminTier, npav1beta1.BaselineTier})
		c.Spec.Priority = pick(rng, []int32{0, 10, 1000})
		c.Spec.Subject.Namespaces = randomNamespaceSelector(rng, []string{"ns", corev1.LabelMetadataName})
		deny := npav1beta1.ClusterNetworkPolicyRuleActionDeny
		if rng.IntN(2) == 0 {
			c.Spec.Ingress = []npav1beta1.ClusterNetworkPolicyIngressRule{{Action: deny, From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: bad}}}}
		} else {
			c.Spec.Egress = []npav1beta1.ClusterNetworkPolicyEgressRule{{Action: deny, To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Pods: &npav1beta1.NamespacedPod{PodSelector: *bad}}}}}
		}
		out.ClusterPolicies = append(out.ClusterPolicies, c)
		what = append(what, fmt.Sprintf("invalid %s CNP %s denying everything (%v)", c.Spec.Tier, c.Name, c.Spec.Subject.Namespaces))
	}
	// A newer pod claiming an existing pod's address, with other labels:
	// a claim must not lift a Deny or Pass of the victim.
	if rng.IntN(2) == 0 {
		victim := pick(rng, addressed)
		intruder := randomPod(rng, Options{Nodes: nodeNames}, pick(rng, namespaceNames), "intruder", 170)
		intruder.Spec.NodeName = pick(rng, nodeNames)
		intruder.Status.PodIPs, intruder.Status.PodIP = victim.Status.PodIPs, victim.Status.PodIP
		intruder.CreationTimestamp = metav1.NewTime(metav1.Now().Add(1))
		out.Pods = append(out.Pods, intruder)
		what = append(what, fmt.Sprintf("pod %s/intruder %v claims %s/%s's addresses %v", intruder.Namespace, intruder.Labels, victim.Namespace, victim.Name, victim.Status.PodIPs))
	}
	// A pod with an address and no node.
	if rng.IntN(2) == 0 {
		ghost := randomPod(rng, Options{Nodes: nodeNames}, pick(rng, namespaceNames), "ghost", 150)
		ghost.Spec.NodeName = ""
		if rng.IntN(2) == 0 {
			ghost.Status.PodIPs = pick(rng, addressed).Status.PodIPs
			ghost.Status.PodIP = ghost.Status.PodIPs[0].IP
		}
		ghost.CreationTimestamp = metav1.NewTime(metav1.Now().Add(1))
		out.Pods = append(out.Pods, ghost)
		what = append(what, fmt.Sprintf("pod %s/ghost with addresses %v and no node", ghost.Namespace, ghost.Status.PodIPs))
	}
	return out, what
}

// Services returns a Service per namespace selecting pods by one label,
// with an EndpointSlice listing the addresses of the pods it selects on TCP
// port 80, and, when hostile, the forms an EndpointSlice writer can give
// it: a targetRef naming another pod (of any namespace), a stale endpoint
// naming a pod that has finished while another pod holds its address, an
// endpoint at an address no pod holds, and a Service whose backend is a
// pod that calls it (a hairpin). It returns the objects (new terminal pods
// included) and a description of each hostile part.
func Services(rng *rand.Rand, o Objects, hostile bool) ([]*corev1.Service, []*discoveryv1.EndpointSlice, []*corev1.Pod, []string) {
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	var extra []*corev1.Pod
	var what []string
	var running []*corev1.Pod
	for _, p := range o.Pods {
		if !p.Spec.HostNetwork && p.Spec.NodeName != "" && len(p.Status.PodIPs) > 0 && p.Status.Phase == corev1.PodRunning {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil, nil, nil, nil
	}
	name, port, proto := "http", int32(80), corev1.ProtocolTCP
	for i, ns := range o.Namespaces {
		sel := map[string]string{"pod": pick(rng, []string{"a", "b", "c"})}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "svc"},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.0.%d", 10+i), Selector: sel,
				Ports: []corev1.ServicePort{{Name: name, Port: 8080, Protocol: proto, TargetPort: intstr.FromInt32(port)}}}}
		sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "svc-1", Labels: map[string]string{discoveryv1.LabelServiceName: "svc"}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}}
		for _, p := range running {
			if p.Namespace != ns.Name || p.Labels["pod"] != sel["pod"] {
				continue
			}
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.Status.PodIPs[0].IP},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}})
		}
		if hostile {
			switch rng.IntN(4) {
			case 0:
				v := pick(rng, running)
				e := discoveryv1.Endpoint{Addresses: []string{pick(rng, running).Status.PodIPs[0].IP},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: v.Namespace, Name: v.Name}}
				sl.Endpoints = append(sl.Endpoints, e)
				what = append(what, fmt.Sprintf("slice %s/svc-1: %s named %s/%s", ns.Name, e.Addresses[0], v.Namespace, v.Name))
			case 1:
				holder := pick(rng, running)
				old := randomPod(rng, Options{Nodes: []string{holder.Spec.NodeName}}, ns.Name, fmt.Sprintf("old%d", i), 160+i)
				old.Labels["pod"] = sel["pod"]
				old.Spec.NodeName = holder.Spec.NodeName
				old.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, PodIPs: holder.Status.PodIPs, PodIP: holder.Status.PodIP}
				extra = append(extra, old)
				sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{holder.Status.PodIPs[0].IP},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns.Name, Name: old.Name}})
				what = append(what, fmt.Sprintf("slice %s/svc-1: stale %s/%s at %s, now %s/%s's", ns.Name, ns.Name, old.Name, holder.Status.PodIP, holder.Namespace, holder.Name))
			case 2:
				a := addN(GatewayPrefix4.Addr(), rng.IntN(32)).String()
				sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns.Name, Name: pick(rng, running).Name}})
				what = append(what, fmt.Sprintf("slice %s/svc-1: %s, no pod's", ns.Name, a))
			}
		}
		svcs = append(svcs, svc)
		slices = append(slices, sl)
	}
	return svcs, slices, extra, what
}
