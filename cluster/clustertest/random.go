// Package clustertest owns a seeded generator of random but valid clusters and
// NetworkPolicies, for differential and fuzz tests of the semantics model, the
// compiler and the data path.
//
// Everything is driven by the *rand.Rand passed in, so a seed reproduces a
// cluster exactly. The generator returns the raw API objects as well as the
// converted snapshot, so an independent evaluator can work on the raw form.
package clustertest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

// Options shapes a random cluster. The zero value gives namespaces x, y, z with
// 1-4 pods each on node-1..node-3, IPv4 only, no hostNetwork pods and 0-6
// policies.
type Options struct {
	// Nodes are the node names pods are scheduled on; default node-1..node-3.
	Nodes []string
	// ExtraNamespaces adds namespaces ns-0, ns-1, ... after x, y, z.
	ExtraNamespaces int
	// MaxPodsPerNamespace bounds the pods per namespace (at least 1 each);
	// default 4.
	MaxPodsPerNamespace int
	// MaxPolicies bounds the number of policies; default 6. Use -1 for none.
	MaxPolicies int
	// IPv6 gives every pod an fd00:: address as well (dual stack).
	IPv6 bool
	// HostNetwork adds, with some probability per namespace, a hostNetwork pod
	// holding its node's address.
	HostNetwork bool
	// Unscheduled adds, with some probability per namespace, a pod with no
	// node and no address.
	Unscheduled bool
	// MaxClusterPolicies bounds the ClusterNetworkPolicies (0: none, and
	// no Node objects either).
	MaxClusterPolicies int
}

func (o Options) withDefaults() Options {
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"node-1", "node-2", "node-3"}
	}
	if o.MaxPodsPerNamespace <= 0 {
		o.MaxPodsPerNamespace = 4
	}
	if o.MaxPolicies == 0 {
		o.MaxPolicies = 6
	}
	return o
}

// Address plan. Pods get 10.0.0.2 upwards (and fd00::2 upwards), in creation
// order; node i (0-based) has 10.255.0.(i+1) and fd00:ff::(i+1). ipBlocks are
// drawn around these ranges so that they often split the pods.
var (
	PodPrefix4  = netip.MustParsePrefix("10.0.0.0/24")
	PodPrefix6  = netip.MustParsePrefix("fd00::/120")
	NodePrefix4 = netip.MustParsePrefix("10.255.0.0/24")
	NodePrefix6 = netip.MustParsePrefix("fd00:ff::/120")
)

// NodeIP returns the address of node i (0-based) in family 4 or 6.
func NodeIP(i, family int) netip.Addr {
	base := NodePrefix4.Addr()
	if family == 6 {
		base = NodePrefix6.Addr()
	}
	return addN(base, i+1)
}

func addN(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

// Ports every generated pod may declare: 80 and 81 over TCP, UDP and SCTP,
// named serve-<port>-<proto>. Some pods also name one of them "http", with a
// number that differs between pods, to exercise per-destination resolution.
var (
	PortNumbers = []int32{80, 81}
	PortNames   = func() []string {
		var out []string
		for _, p := range PortNumbers {
			for _, proto := range cluster.Protocols {
				out = append(out, PortName(p, proto))
			}
		}
		return out
	}()
)

// PortName returns "serve-<port>-<proto>", e.g. serve-80-tcp.
func PortName(port int32, proto cluster.Protocol) string {
	return fmt.Sprintf("serve-%d-%s", port, proto.Lower())
}

// Objects are the raw API objects of a random cluster.
type Objects struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies and Nodes are set by RandomObjects when
	// Options.MaxClusterPolicies > 0.
	ClusterPolicies []*npav1beta1.ClusterNetworkPolicy
	Nodes           []*corev1.Node
}

// Random builds a random valid cluster and returns its snapshot and the raw
// policies it was built from. It is RandomObjects followed by
// cluster.NewSnapshot.
func Random(rng *rand.Rand, opts Options) (*cluster.Snapshot, []*networkingv1.NetworkPolicy) {
	objs := RandomObjects(rng, opts)
	return objs.Snapshot(), objs.Policies
}

// Snapshot converts the objects. The generator only produces valid objects,
// so a conversion error is a bug in the generator and panics (test helper).
func (o Objects) Snapshot() *cluster.Snapshot {
	s, errs := cluster.NewSnapshot(o.Namespaces, o.Pods, o.Policies)
	errs = append(errs, s.AddClusterPolicies(o.ClusterPolicies, o.Nodes)...)
	if len(errs) > 0 {
		panic(fmt.Sprintf("clustertest generated an invalid object: %v", errs))
	}
	return s
}

// label vocabulary: few keys and values so that selectors match often.
var (
	podLabelKeys    = []string{"app", "tier", "env"}
	labelValues     = []string{"a", "b", ""}
	nsLabelKeys     = []string{"team", "env"}
	namespaceNames  = []string{"x", "y", "z"}
	selectorOps     = []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	podNameAlphabet = "abcdefghij"
)

// RandomObjects builds the raw objects of a random valid cluster.
func RandomObjects(rng *rand.Rand, opts Options) Objects {
	opts = opts.withDefaults()
	var o Objects
	nsNames := append([]string(nil), namespaceNames...)
	for i := range opts.ExtraNamespaces {
		nsNames = append(nsNames, fmt.Sprintf("ns-%d", i))
	}
	podIndex := 0
	for _, ns := range nsNames {
		l := map[string]string{"ns": ns}
		for _, k := range nsLabelKeys {
			if rng.IntN(2) == 0 {
				l[k] = pick(rng, labelValues)
			}
		}
		// The API server sets kubernetes.io/metadata.name; leave it out
		// sometimes to exercise ConvertNamespace's defaulting.
		if rng.IntN(2) == 0 {
			l[corev1.LabelMetadataName] = ns
		}
		o.Namespaces = append(o.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: l}})

		n := 1 + rng.IntN(opts.MaxPodsPerNamespace)
		for i := range n {
			o.Pods = append(o.Pods, randomPod(rng, opts, ns, string(podNameAlphabet[i%len(podNameAlphabet)])+suffix(i), podIndex))
			podIndex++
		}
		if opts.HostNetwork && rng.IntN(3) == 0 {
			node := rng.IntN(len(opts.Nodes))
			p := randomPod(rng, opts, ns, "host", podIndex)
			p.Spec.HostNetwork = true
			p.Spec.NodeName = opts.Nodes[node]
			p.Status.PodIPs = []corev1.PodIP{{IP: NodeIP(node, 4).String()}}
			if opts.IPv6 {
				p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: NodeIP(node, 6).String()})
			}
			p.Status.PodIP = p.Status.PodIPs[0].IP
			o.Pods = append(o.Pods, p)
		}
		if opts.Unscheduled && rng.IntN(3) == 0 {
			p := randomPod(rng, opts, ns, "pending", podIndex)
			p.Spec.NodeName = ""
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
			o.Pods = append(o.Pods, p)
		}
	}
	if opts.MaxPolicies > 0 {
		n := rng.IntN(opts.MaxPolicies + 1)
		for i := range n {
			o.Policies = append(o.Policies, randomPolicy(rng, opts, pick(rng, nsNames), fmt.Sprintf("np-%d", i)))
		}
	}
	if opts.MaxClusterPolicies > 0 {
		o.Nodes = RandomNodes(rng, opts)
		o.ClusterPolicies = RandomClusterPolicies(rng, opts, opts.MaxClusterPolicies)
	}
	return o
}

func suffix(i int) string {
	if i < len(podNameAlphabet) {
		return ""
	}
	return fmt.Sprint(i / len(podNameAlphabet))
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func randomPod(rng *rand.Rand, opts Options, ns, name string, index int) *corev1.Pod {
	l := map[string]string{"pod": name}
	for _, k := range podLabelKeys {
		if rng.IntN(2) == 0 {
			l[k] = pick(rng, labelValues)
		}
	}
	var ports []corev1.ContainerPort
	for _, port := range PortNumbers {
		for _, proto := range cluster.Protocols {
			if rng.IntN(4) == 0 {
				continue // not every pod declares every port
			}
			ports = append(ports, corev1.ContainerPort{Name: PortName(port, proto), ContainerPort: port, Protocol: corev1.Protocol(proto.String())})
		}
	}
	if rng.IntN(3) == 0 {
		port := pick(rng, PortNumbers)
		ports = append(ports, corev1.ContainerPort{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	// Split the ports over one or two containers; leave TCP implicit sometimes.
	c1 := corev1.Container{Name: "c1"}
	c2 := corev1.Container{Name: "c2"}
	for _, p := range ports {
		if p.Protocol == corev1.ProtocolTCP && rng.IntN(2) == 0 {
			p.Protocol = ""
		}
		if rng.IntN(2) == 0 {
			c1.Ports = append(c1.Ports, p)
		} else {
			c2.Ports = append(c2.Ports, p)
		}
	}
	ip4 := addN(PodPrefix4.Addr(), index+2)
	status := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip4.String(), PodIPs: []corev1.PodIP{{IP: ip4.String()}}}
	if opts.IPv6 {
		status.PodIPs = append(status.PodIPs, corev1.PodIP{IP: addN(PodPrefix6.Addr(), index+2).String()})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: corev1.PodSpec{
			NodeName:   pick(rng, opts.Nodes),
			Containers: []corev1.Container{c1, c2},
		},
		Status: status,
	}
}

// randomSelector returns a label selector over keys: empty, matchLabels,
// matchExpressions with every operator, or both.
func randomSelector(rng *rand.Rand, keys []string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch rng.IntN(4) {
	case 0: // {} selects everything
		return s
	case 1:
		s.MatchLabels = randomMatchLabels(rng, keys)
	case 2:
		s.MatchExpressions = randomExpressions(rng, keys)
	default:
		s.MatchLabels = randomMatchLabels(rng, keys)
		s.MatchExpressions = randomExpressions(rng, keys)
	}
	return s
}

func randomMatchLabels(rng *rand.Rand, keys []string) map[string]string {
	m := map[string]string{}
	for range 1 + rng.IntN(2) {
		m[pick(rng, keys)] = pick(rng, labelValues)
	}
	return m
}

func randomExpressions(rng *rand.Rand, keys []string) []metav1.LabelSelectorRequirement {
	var out []metav1.LabelSelectorRequirement
	for range 1 + rng.IntN(2) {
		r := metav1.LabelSelectorRequirement{Key: pick(rng, keys), Operator: pick(rng, selectorOps)}
		if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + rng.IntN(2) {
				r.Values = append(r.Values, pick(rng, labelValues))
			}
		}
		out = append(out, r)
	}
	return out
}

func randomPolicy(rng *rand.Rand, opts Options, ns, name string) *networkingv1.NetworkPolicy {
	podKeys := append([]string{"pod"}, podLabelKeys...)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *randomSelector(rng, podKeys)
	switch rng.IntN(5) {
	case 0: // absent: Ingress, plus Egress when egress rules exist
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	default:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
	}
	nIn, nEg := ruleCount(rng), ruleCount(rng)
	if nIn >= 0 {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
		for range nIn {
			peers, ports := randomPeers(rng, opts, podKeys), randomPorts(rng)
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
		}
	}
	if nEg >= 0 {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
		for range nEg {
			peers, ports := randomPeers(rng, opts, podKeys), randomPorts(rng)
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
		}
	}
	return np
}

// ruleCount returns -1 (absent list), 0 (empty list) or 1..3 rules.
func ruleCount(rng *rand.Rand) int {
	switch rng.IntN(6) {
	case 0:
		return -1
	case 1:
		return 0
	}
	return 1 + rng.IntN(3)
}

// randomPeers returns nil (absent), an empty list, or 1..3 peers.
func randomPeers(rng *rand.Rand, opts Options, podKeys []string) []networkingv1.NetworkPolicyPeer {
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return []networkingv1.NetworkPolicyPeer{}
	}
	nsKeys := append([]string{"ns", corev1.LabelMetadataName}, nsLabelKeys...)
	out := []networkingv1.NetworkPolicyPeer{}
	for range 1 + rng.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch rng.IntN(4) {
		case 0:
			p.PodSelector = randomSelector(rng, podKeys)
		case 1:
			p.NamespaceSelector = randomNamespaceSelector(rng, nsKeys)
		case 2:
			p.PodSelector = randomSelector(rng, podKeys)
			p.NamespaceSelector = randomNamespaceSelector(rng, nsKeys)
		default:
			p.IPBlock = randomIPBlock(rng, opts)
		}
		out = append(out, p)
	}
	return out
}

func randomNamespaceSelector(rng *rand.Rand, keys []string) *metav1.LabelSelector {
	if rng.IntN(3) == 0 {
		// The common idiom: select one namespace by name.
		return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: pick(rng, namespaceNames)}}
	}
	s := randomSelector(rng, keys)
	// Values for ns and the name label are namespace names, not the
	// generic vocabulary; rewrite them so those selectors can match.
	// Sorted keys: ranging over the map would consume the rng in a random
	// order and break reproducibility.
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		if k == "ns" || k == corev1.LabelMetadataName {
			s.MatchLabels[k] = pick(rng, namespaceNames)
		}
	}
	for i, r := range s.MatchExpressions {
		if r.Key == "ns" || r.Key == corev1.LabelMetadataName {
			for j := range r.Values {
				s.MatchExpressions[i].Values[j] = pick(rng, namespaceNames)
			}
		}
	}
	return s
}

// randomIPBlock draws a CIDR around the pod or node ranges (or a catch-all)
// with 0-2 excepts strictly inside it.
func randomIPBlock(rng *rand.Rand, opts Options) *networkingv1.IPBlock {
	family := 4
	if opts.IPv6 && rng.IntN(2) == 0 {
		family = 6
	}
	bits := 32
	var base netip.Addr
	switch rng.IntN(4) {
	case 0:
		base = NodePrefix4.Addr()
		if family == 6 {
			base = NodePrefix6.Addr()
		}
	default:
		base = PodPrefix4.Addr()
		if family == 6 {
			base = PodPrefix6.Addr()
		}
	}
	if family == 6 {
		bits = 128
	}
	// Host part: a random address among the first 32 of the range.
	addr := addN(base, rng.IntN(32))
	var plen int
	switch rng.IntN(6) {
	case 0:
		plen = 0 // everything of this family
	case 1:
		plen = bits - 24 // e.g. 10.0.0.0/8: pods and nodes
	default:
		plen = bits - rng.IntN(7) // /26 .. /32
	}
	cidr := netip.PrefixFrom(addr, plen).Masked()
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	if plen < bits {
		for range rng.IntN(3) {
			el := plen + 1 + rng.IntN(bits-plen)
			el = max(el, bits-6) // keep excepts small enough to hit single pods
			exAddr := addN(base, rng.IntN(32))
			if !cidr.Contains(exAddr) {
				exAddr = cidr.Addr()
			}
			ex := netip.PrefixFrom(exAddr, el).Masked()
			b.Except = append(b.Except, ex.String())
		}
	}
	return b
}

// randomPorts returns nil (absent), an empty list, or 1..3 entries: numeric,
// named, a range, or a protocol alone, with explicit or defaulted protocol.
func randomPorts(rng *rand.Rand) []networkingv1.NetworkPolicyPort {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return []networkingv1.NetworkPolicyPort{}
	}
	out := []networkingv1.NetworkPolicyPort{}
	for range 1 + rng.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		if rng.IntN(4) != 0 {
			proto := corev1.Protocol(pick(rng, cluster.Protocols).String())
			p.Protocol = &proto
		}
		switch rng.IntN(6) {
		case 0: // protocol only: every port
		case 1, 2:
			v := intstr.FromInt32(pick(rng, []int32{79, 80, 81, 82}))
			p.Port = &v
		case 3:
			v := intstr.FromString(pick(rng, append([]string{"http", "serve-99-tcp"}, PortNames...)))
			p.Port = &v
		default:
			start := pick(rng, []int32{1, 79, 80, 81})
			end := start + int32(rng.IntN(3))
			if rng.IntN(5) == 0 {
				end = 65535
			}
			v := intstr.FromInt32(start)
			p.Port, p.EndPort = &v, &end
		}
		out = append(out, p)
	}
	return out
}

// Hostile returns a deep copy of o with hostile and invalid parts added, and
// a description of each, for tests requiring that such input never widens
// what the rest of the cluster allows. Every part is one an API client
// could write (pods/status writers included) or a manifest could hold:
//
//   - a new running pod claiming an existing pod's address (newer, on any
//     node, sometimes written IPv4-mapped as ::ffff:a.b.c.d, sometimes a
//     third claimant), with other labels and ports;
//   - a hostNetwork pod claiming an existing pod's address;
//   - container ports outside 1-65535 or with a lowercase protocol, and a
//     pod listing one address twice, or besides its own an address with an
//     IPv6 zone (fd00::9%eth0), or its IPv4 address in hex IPv4-mapped
//     form (::ffff:a00:9);
//   - invalid policy parts: a peer with a bad selector, a bad CIDR, an
//     IPv4-mapped prefix (hex or dotted) or one with a zone, an except
//     outside its cidr or in mapped form, an empty peer; port entries with
//     a lowercase protocol, a port or endPort outside 1-65535, endPort below
//     port, endPort with a named port; an invalid podSelector; an unknown
//     policyType.
//
// Only additions are made to existing objects (never a valid part removed),
// and new objects are pods, so "the same input without the hostile part" is
// o itself with the new pods left out.
func Hostile(rng *rand.Rand, o Objects) (Objects, []string) {
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
	var what []string
	var addressed []*corev1.Pod
	for _, p := range out.Pods {
		if !p.Spec.HostNetwork && len(p.Status.PodIPs) > 0 {
			addressed = append(addressed, p)
		}
	}
	newer := metav1.NewTime(metav1.Now().Add(1))
	for i := range 1 + rng.IntN(3) {
		if len(addressed) == 0 {
			break
		}
		victim := pick(rng, addressed)
		intruder := randomPod(rng, Options{Nodes: []string{"node-1", "node-2", "node-3"}}, victim.Namespace, fmt.Sprintf("intruder%d", i), 200+i)
		intruder.Namespace = pick(rng, namespaceNames)
		intruder.CreationTimestamp = newer
		ips := []corev1.PodIP{}
		for _, ip := range victim.Status.PodIPs {
			a := netip.MustParseAddr(ip.IP)
			if a.Is4() && rng.IntN(3) == 0 {
				ips = append(ips, corev1.PodIP{IP: netip.AddrFrom16(a.As16()).String()}) // ::ffff:a.b.c.d
				continue
			}
			ips = append(ips, ip)
		}
		if len(ips) > 1 && rng.IntN(3) == 0 {
			ips = ips[1:] // only the IPv6 address conflicts
		}
		intruder.Status.PodIPs, intruder.Status.PodIP = ips, ips[0].IP
		kind := "pod"
		if rng.IntN(4) == 0 {
			intruder.Spec.HostNetwork = true
			kind = "hostNetwork pod"
		}
		out.Pods = append(out.Pods, intruder)
		what = append(what, fmt.Sprintf("%s %s/%s claims %s's addresses %v", kind, intruder.Namespace, intruder.Name, victim.Name, ips))
	}
	for _, p := range out.Pods {
		if rng.IntN(4) != 0 || len(p.Spec.Containers) == 0 {
			continue
		}
		c := &p.Spec.Containers[0]
		bad := pick(rng, []corev1.ContainerPort{
			{Name: "http", ContainerPort: 70000},
			{Name: PortName(80, cluster.ProtocolTCP), ContainerPort: -65535},
			{Name: "http", ContainerPort: 80, Protocol: "tcp"},
			{Name: "serve-99-tcp", ContainerPort: 0},
		})
		c.Ports = append(c.Ports, bad)
		what = append(what, fmt.Sprintf("pod %s/%s port %+v", p.Namespace, p.Name, bad))
		if len(p.Status.PodIPs) > 0 && rng.IntN(2) == 0 {
			p.Status.PodIPs = append(p.Status.PodIPs, p.Status.PodIPs[0])
		}
	}
	for _, p := range out.Pods {
		if rng.IntN(5) != 0 || p.Spec.HostNetwork || len(p.Status.PodIPs) == 0 {
			continue
		}
		// An address no API server writes, after the pod's own: one with
		// an IPv6 zone (refused), or the pod's IPv4 address again in hex
		// IPv4-mapped form (the same address).
		extra := "fd00::9%eth0"
		if a := netip.MustParseAddr(p.Status.PodIPs[0].IP); a.Is4() && rng.IntN(2) == 0 {
			b := a.As4()
			extra = fmt.Sprintf("::ffff:%x:%x", uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3]))
		}
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: extra})
		what = append(what, fmt.Sprintf("pod %s/%s also lists address %s", p.Namespace, p.Name, extra))
	}
	for _, np := range out.Policies {
		if rng.IntN(2) == 0 {
			continue
		}
		what = append(what, fmt.Sprintf("policy %s/%s: %s", np.Namespace, np.Name, spoilPolicy(rng, &np.Spec)))
	}
	return out, what
}

// spoilPolicy adds one invalid part to spec and says which.
func spoilPolicy(rng *rand.Rand, spec *networkingv1.NetworkPolicySpec) string {
	badSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"a"}}}}
	lower := corev1.Protocol("tcp")
	big := intstr.FromInt32(70000)
	p81, p79 := intstr.FromInt32(81), int32(79)
	named := intstr.FromString("http")
	end := int32(90)
	peers := []networkingv1.NetworkPolicyPeer{
		{PodSelector: badSel},
		{NamespaceSelector: badSel},
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/25", Except: []string{"10.0.1.0/26"}}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "::ffff:a00:0/104"}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "::ffff:10.0.0.0/104"}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::%eth0/64"}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"::ffff:a00:0/120"}}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/24", "10.0.0.0%eth0/25"}}},
		{},
	}
	bigEnd := int32(70000)
	ports := []networkingv1.NetworkPolicyPort{
		{Protocol: &lower, Port: &p81},
		{Port: &big},
		{Port: &p81, EndPort: &bigEnd},
		{Port: &p81, EndPort: &p79},
		{Port: &named, EndPort: &end},
	}
	addTo := func(ingress bool, peer *networkingv1.NetworkPolicyPeer, port *networkingv1.NetworkPolicyPort) {
		if ingress && len(spec.Ingress) > 0 {
			r := &spec.Ingress[rng.IntN(len(spec.Ingress))]
			if peer != nil {
				r.From = append(r.From, *peer)
			} else {
				r.Ports = append(r.Ports, *port)
			}
			return
		}
		if !ingress && len(spec.Egress) > 0 {
			r := &spec.Egress[rng.IntN(len(spec.Egress))]
			if peer != nil {
				r.To = append(r.To, *peer)
			} else {
				r.Ports = append(r.Ports, *port)
			}
			return
		}
		// No rule to add to: a new rule holding only the invalid part.
		var rule networkingv1.NetworkPolicyIngressRule
		if peer != nil {
			rule.From = []networkingv1.NetworkPolicyPeer{*peer}
		} else {
			rule.Ports = []networkingv1.NetworkPolicyPort{*port}
		}
		if ingress {
			spec.Ingress = append(spec.Ingress, rule)
		} else {
			spec.Egress = append(spec.Egress, networkingv1.NetworkPolicyEgressRule{To: rule.From, Ports: rule.Ports})
		}
	}
	switch rng.IntN(4) {
	case 0:
		peer := pick(rng, peers)
		ingress := rng.IntN(2) == 0
		addTo(ingress, &peer, nil)
		return fmt.Sprintf("invalid peer %+v (ingress %v)", peer, ingress)
	case 1:
		port := pick(rng, ports)
		ingress := rng.IntN(2) == 0
		addTo(ingress, nil, &port)
		return fmt.Sprintf("invalid port %+v (ingress %v)", port, ingress)
	case 2:
		spec.PodSelector = *badSel
		return "invalid podSelector"
	}
	spec.PolicyTypes = append(spec.PolicyTypes, "Sideways")
	return "unknown policyType"
}
