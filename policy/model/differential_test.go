package model

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
)

var (
	diffSeed     = flag.Uint64("diff.seed", 0, "first seed of TestDifferential (0: derive from the clock and print it)")
	diffClusters = flag.Int("diff.clusters", 3000, "random clusters TestDifferential checks (a tenth with -short)")
)

// ---------------------------------------------------------------------------
// The naive evaluator. It is written from the NetworkPolicy v1 API text alone
// and works on the raw API objects: it shares no code with Evaluate or with
// cluster.ConvertPolicy (not even the label selector library or netip).
// ---------------------------------------------------------------------------

// naiveEndpoint is one end of a packet for the naive evaluator.
type naiveEndpoint struct {
	pod  *corev1.Pod // nil when the address is not a pod
	ip   net.IP
	node bool // source is the destination pod's node
}

type naiveCluster struct {
	namespaces map[string]*corev1.Namespace
	policies   []*networkingv1.NetworkPolicy
	cnps       []*npav1beta1.ClusterNetworkPolicy
	nodes      []*corev1.Node
}

// allowed: "traffic is allowed if it is allowed by the egress policy of the
// source pod AND the ingress policy of the destination pod".
func (c naiveCluster) allowed(src, dst naiveEndpoint, proto string, port int32) (egress, ingress bool) {
	// "A pod cannot block access to itself."
	if !src.node && src.pod != nil && dst.pod != nil && !src.pod.Spec.HostNetwork &&
		src.pod.Namespace == dst.pod.Namespace && src.pod.Name == dst.pod.Name {
		return true, true
	}
	// Node-originated traffic is not pod egress, and the kubelet must reach
	// the pods on its node: both pass.
	egress = src.node || c.direction(networkingv1.PolicyTypeEgress, src, dst, dst, proto, port)
	ingress = src.node || c.direction(networkingv1.PolicyTypeIngress, dst, src, dst, proto, port)
	return egress, ingress
}

// direction judges one side. self is the pod whose policies apply, other the
// far end, dst the destination (for named ports).
func (c naiveCluster) direction(typ networkingv1.PolicyType, self, other, dst naiveEndpoint, proto string, port int32) bool {
	if self.pod == nil || self.pod.Spec.HostNetwork {
		return true // only pods are subject to policy; hostNetwork pods are not
	}
	// ClusterNetworkPolicy: "Policy tiers are evaluated in the following
	// order: Admin tier, NetworkPolicy tier, Baseline tier"; "If a given
	// connection wasn't allowed or denied by any of the tiers, ... all pods
	// can communicate with each other."
	if verdict, decided := c.naiveTier(npav1beta1.AdminTier, typ, self, other, dst, proto, port); decided {
		return verdict
	}
	isolated, allowed := c.naiveV1(typ, self, other, dst, proto, port)
	if isolated {
		// "v1.NetworkPolicy always makes a final decision for selected pods."
		return allowed
	}
	if verdict, decided := c.naiveTier(npav1beta1.BaselineTier, typ, self, other, dst, proto, port); decided {
		return verdict
	}
	return true
}

// naiveTier: "Policies with lower priority values have higher precedence";
// within a policy "a rule that appears at the top ... would take the
// highest precedence". Accept and Deny decide; Pass "skips all further
// ClusterNetworkPolicy rules in the current tier". Equal priorities: the
// API leaves the order open; policyd documents name order, as here.
func (c naiveCluster) naiveTier(tier npav1beta1.Tier, typ networkingv1.PolicyType, self, other, dst naiveEndpoint, proto string, port int32) (allowed, decided bool) {
	var in []*npav1beta1.ClusterNetworkPolicy
	for _, p := range c.cnps {
		if p.Spec.Tier == tier {
			in = append(in, p)
		}
	}
	for i := 1; i < len(in); i++ { // insertion sort by (priority, name)
		for j := i; j > 0 && (in[j].Spec.Priority < in[j-1].Spec.Priority || in[j].Spec.Priority == in[j-1].Spec.Priority && in[j].Name < in[j-1].Name); j-- {
			in[j], in[j-1] = in[j-1], in[j]
		}
	}
	for _, p := range in {
		if !c.naiveSubject(p, self) {
			continue
		}
		type rule struct {
			action    npav1beta1.ClusterNetworkPolicyRuleAction
			peers     []npav1beta1.ClusterNetworkPolicyEgressPeer
			protocols []npav1beta1.ClusterNetworkPolicyProtocol
		}
		var rules []rule
		if typ == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				var peers []npav1beta1.ClusterNetworkPolicyEgressPeer
				for _, f := range r.From {
					peers = append(peers, npav1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
				}
				rules = append(rules, rule{r.Action, peers, r.Protocols})
			}
		} else {
			for _, r := range p.Spec.Egress {
				rules = append(rules, rule{r.Action, r.To, r.Protocols})
			}
		}
		for _, r := range rules {
			if !c.naiveCNPPeers(r.peers, other) || !naiveProtocols(r.protocols, dst, proto, port) {
				continue
			}
			switch r.action {
			case npav1beta1.ClusterNetworkPolicyRuleActionAccept:
				return true, true
			case npav1beta1.ClusterNetworkPolicyRuleActionDeny:
				return false, true
			}
			// Pass: in the Admin tier on to NetworkPolicies; in the
			// Baseline tier on to the default, which allows.
			return true, tier == npav1beta1.BaselineTier
		}
	}
	return false, false
}

// naiveSubject: "Namespaces is used to select pods via namespace
// selectors"; "Pods ... via namespace AND pod selectors"; "host-networked
// pods are not included in subject selection".
func (c naiveCluster) naiveSubject(p *npav1beta1.ClusterNetworkPolicy, self naiveEndpoint) bool {
	if self.pod == nil || self.pod.Spec.HostNetwork {
		return false
	}
	nsl := c.namespaceLabels(self.pod.Namespace)
	if s := p.Spec.Subject.Namespaces; s != nil {
		return naiveSelects(s, nsl)
	}
	if s := p.Spec.Subject.Pods; s != nil {
		return naiveSelects(&s.NamespaceSelector, nsl) && naiveSelects(&s.PodSelector, self.pod.Labels)
	}
	return false
}

// naiveCNPPeers: "If any element matches ... the specified action is
// applied."
func (c naiveCluster) naiveCNPPeers(peers []npav1beta1.ClusterNetworkPolicyEgressPeer, ep naiveEndpoint) bool {
	for _, p := range peers {
		isPod := ep.pod != nil && !ep.pod.Spec.HostNetwork
		switch {
		case p.Namespaces != nil:
			if isPod && naiveSelects(p.Namespaces, c.namespaceLabels(ep.pod.Namespace)) {
				return true
			}
		case p.Pods != nil:
			if isPod && naiveSelects(&p.Pods.NamespaceSelector, c.namespaceLabels(ep.pod.Namespace)) && naiveSelects(&p.Pods.PodSelector, ep.pod.Labels) {
				return true
			}
		case len(p.Networks) > 0:
			// "cluster-internal traffic will be checked against the rule as well"
			for _, cidr := range p.Networks {
				if _, n, err := net.ParseCIDR(string(cidr)); err == nil && naiveContains(n, ep.ip) {
					return true
				}
			}
		case p.Nodes != nil:
			// "It selects the nodeIPs ... present in the node.Status.Addresses"
			for _, n := range c.nodes {
				if !naiveSelects(p.Nodes, n.Labels) {
					continue
				}
				for _, a := range n.Status.Addresses {
					if (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) && net.ParseIP(a.Address).Equal(ep.ip) {
						return true
					}
				}
			}
		}
	}
	return false
}

// naiveProtocols: "If unspecified, protocol-specific attributes will not be
// used to match traffic."
func naiveProtocols(ps []npav1beta1.ClusterNetworkPolicyProtocol, dst naiveEndpoint, proto string, port int32) bool {
	if len(ps) == 0 {
		return true
	}
	portOK := func(p *npav1beta1.Port) bool {
		switch {
		case p == nil:
			return true
		case p.Range != nil:
			return port >= p.Range.Start && port <= p.Range.End
		}
		return port == p.Number
	}
	for _, p := range ps {
		switch {
		case p.TCP != nil:
			if proto == "TCP" && portOK(p.TCP.DestinationPort) {
				return true
			}
		case p.UDP != nil:
			if proto == "UDP" && portOK(p.UDP.DestinationPort) {
				return true
			}
		case p.SCTP != nil:
			if proto == "SCTP" && portOK(p.SCTP.DestinationPort) {
				return true
			}
		case p.DestinationNamedPort != "":
			if dst.pod == nil || dst.pod.Spec.HostNetwork {
				continue
			}
			for _, ctr := range dst.pod.Spec.Containers {
				for _, cp := range ctr.Ports {
					cpp := string(cp.Protocol)
					if cpp == "" {
						cpp = "TCP"
					}
					if cp.Name == p.DestinationNamedPort && cpp == proto && cp.ContainerPort == port {
						return true
					}
				}
			}
		}
	}
	return false
}

// naiveV1 reports whether NetworkPolicies isolate self for typ and, if so,
// whether they allow the packet.
func (c naiveCluster) naiveV1(typ networkingv1.PolicyType, self, other, dst naiveEndpoint, proto string, port int32) (bool, bool) {
	isolated, allowed := false, false
	for _, np := range c.policies {
		// A policy applies to pods in its own namespace selected by podSelector...
		if np.Namespace != self.pod.Namespace || !naiveSelects(&np.Spec.PodSelector, self.pod.Labels) {
			continue
		}
		// ...for the policy types it lists; without policyTypes, Ingress always
		// and Egress when it has egress rules.
		if !naiveHasType(np, typ) {
			continue
		}
		isolated = true
		if typ == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if c.peersMatch(np, r.From, other) && naivePortsMatch(r.Ports, dst, proto, port) {
					allowed = true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if c.peersMatch(np, r.To, other) && naivePortsMatch(r.Ports, dst, proto, port) {
					allowed = true
				}
			}
		}
	}
	return isolated, allowed
}

func naiveHasType(np *networkingv1.NetworkPolicy, typ networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return typ == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		if t == typ {
			return true
		}
	}
	return false
}

// peersMatch: "If this field is empty or missing, this rule matches all
// sources (destinations). If it is present and contains at least one item,
// this rule allows traffic only if the traffic matches at least one item."
func (c naiveCluster) peersMatch(np *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, ep naiveEndpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if naiveInBlock(p.IPBlock, ep.ip) {
				return true
			}
			continue
		}
		if ep.pod == nil || ep.pod.Spec.HostNetwork {
			continue // selectors select pods only
		}
		nsOK := false
		if p.NamespaceSelector == nil {
			nsOK = ep.pod.Namespace == np.Namespace // the policy's own namespace
		} else {
			nsOK = naiveSelects(p.NamespaceSelector, c.namespaceLabels(ep.pod.Namespace))
		}
		if nsOK && (p.PodSelector == nil || naiveSelects(p.PodSelector, ep.pod.Labels)) {
			return true
		}
	}
	return false
}

func (c naiveCluster) namespaceLabels(name string) map[string]string {
	out := map[string]string{"kubernetes.io/metadata.name": name}
	if ns := c.namespaces[name]; ns != nil {
		for k, v := range ns.Labels {
			out[k] = v
		}
		out["kubernetes.io/metadata.name"] = name
	}
	return out
}

func naiveInBlock(b *networkingv1.IPBlock, ip net.IP) bool {
	_, cidr, err := net.ParseCIDR(b.CIDR)
	if err != nil || ip == nil || !naiveContains(cidr, ip) {
		return false
	}
	for _, e := range b.Except {
		_, ex, err := net.ParseCIDR(e)
		if err == nil && naiveContains(ex, ip) {
			return false
		}
	}
	return true
}

// naiveContains is net.IPNet.Contains without IPv4-in-IPv6 mixing: an IPv4
// block never holds an IPv6 address and the other way round.
func naiveContains(n *net.IPNet, ip net.IP) bool {
	if (n.IP.To4() != nil) != (ip.To4() != nil) {
		return false
	}
	return n.Contains(ip)
}

// naivePortsMatch: an empty or missing ports list matches all ports; an entry
// matches on protocol (default TCP) and port (number, name on the destination
// pod, or number range to endPort); no port means every port.
func naivePortsMatch(ports []networkingv1.NetworkPolicyPort, dst naiveEndpoint, proto string, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := "TCP"
		if p.Protocol != nil {
			pp = string(*p.Protocol)
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			if dst.pod == nil || dst.pod.Spec.HostNetwork {
				continue
			}
			for _, ctr := range dst.pod.Spec.Containers {
				for _, cp := range ctr.Ports {
					cpp := string(cp.Protocol)
					if cpp == "" {
						cpp = "TCP"
					}
					if cp.Name == p.Port.StrVal && cpp == proto && cp.ContainerPort == port {
						return true
					}
				}
			}
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port >= p.Port.IntVal && port <= end {
			return true
		}
	}
	return false
}

// naiveSelects implements a LabelSelector from its definition: every
// matchLabels pair present and equal, every expression true.
func naiveSelects(sel *metav1.LabelSelector, l map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if got, ok := l[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range sel.MatchExpressions {
		v, has := l[r.Key]
		in := false
		for _, x := range r.Values {
			if has && x == v {
				in = true
			}
		}
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			if !in {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if in {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !has {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Random packets, built for both evaluators from one description.
// ---------------------------------------------------------------------------

// endpointChoice describes one end of a random packet.
type endpointChoice struct {
	pod  string // pod key, or ""
	ip   netip.Addr
	node bool
}

func (e endpointChoice) String() string {
	s := e.ip.String()
	if e.pod != "" {
		s = e.pod + "@" + s
	}
	if e.node {
		s = "node:" + s
	}
	return s
}

type packetChoice struct {
	src, dst endpointChoice
	proto    cluster.Protocol
	port     int32
}

func (p packetChoice) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", p.src, p.dst, p.proto, p.port)
}

func randomAddr(rng *rand.Rand, v6 bool) netip.Addr {
	prefixes := []netip.Prefix{clustertest.PodPrefix4, clustertest.NodePrefix4, netip.MustParsePrefix("192.0.2.0/24")}
	if v6 {
		prefixes = []netip.Prefix{clustertest.PodPrefix6, clustertest.NodePrefix6, netip.MustParsePrefix("2001:db8::/120")}
	}
	a := prefixes[rng.IntN(len(prefixes))].Addr()
	for range rng.IntN(40) {
		a = a.Next()
	}
	return a
}

func randomEndpoint(rng *rand.Rand, s *cluster.Snapshot, v6 bool) endpointChoice {
	if len(s.Pods) > 0 && rng.IntN(4) != 0 {
		p := s.Pods[rng.IntN(len(s.Pods))]
		fam := 4
		if v6 {
			fam = 6
		}
		if a, ok := p.IP(fam); ok {
			return endpointChoice{pod: p.Key(), ip: a}
		}
	}
	a := randomAddr(rng, v6)
	ep := endpointChoice{ip: a}
	if p := s.PodByIP(a); p != nil {
		ep.pod = p.Key()
	}
	return ep
}

func randomPacket(rng *rand.Rand, s *cluster.Snapshot, v6 bool) packetChoice {
	pc := packetChoice{
		src:   randomEndpoint(rng, s, v6),
		dst:   randomEndpoint(rng, s, v6),
		proto: cluster.Protocols[rng.IntN(len(cluster.Protocols))],
		port:  []int32{79, 80, 81, 82, 53, 1, 65535}[rng.IntN(7)],
	}
	if rng.IntN(8) == 0 {
		// Node traffic: from the destination pod's node address.
		pc.src = endpointChoice{ip: randomAddr(rng, v6), node: true}
	}
	return pc
}

func (p packetChoice) model(s *cluster.Snapshot) Packet {
	ep := func(e endpointChoice) Endpoint {
		out := Endpoint{IP: e.ip, Node: e.node}
		if e.pod != "" {
			out.Pod = s.Pod(e.pod)
		}
		return out
	}
	return Packet{Src: ep(p.src), Dst: ep(p.dst), Protocol: p.proto, Port: p.port}
}

func (p packetChoice) naive(objs clustertest.Objects) (src, dst naiveEndpoint) {
	ep := func(e endpointChoice) naiveEndpoint {
		out := naiveEndpoint{ip: net.ParseIP(e.ip.String()), node: e.node}
		for _, pod := range objs.Pods {
			if pod.Namespace+"/"+pod.Name == e.pod {
				out.pod = pod
			}
		}
		return out
	}
	return ep(p.src), ep(p.dst)
}

func naiveFor(objs clustertest.Objects) naiveCluster {
	c := naiveCluster{namespaces: map[string]*corev1.Namespace{}, policies: objs.Policies, cnps: objs.ClusterPolicies, nodes: objs.Nodes}
	for _, ns := range objs.Namespaces {
		c.namespaces[ns.Name] = ns
	}
	return c
}

// compare evaluates one packet both ways and returns a description of any
// disagreement ("" when they agree).
func compare(objs clustertest.Objects, s *cluster.Snapshot, pc packetChoice) string {
	d := Evaluate(s, pc.model(s))
	src, dst := pc.naive(objs)
	eg, in := naiveFor(objs).allowed(src, dst, pc.proto.String(), pc.port)
	if d.Egress.Allowed == eg && d.Ingress.Allowed == in && d.Allowed == (eg && in) {
		return ""
	}
	return fmt.Sprintf("model egress=%v ingress=%v (%s | %s), naive egress=%v ingress=%v",
		d.Egress.Allowed, d.Ingress.Allowed, d.Egress.Reason, d.Ingress.Reason, eg, in)
}

// shrink removes policies, rules, peers and ports while the disagreement
// persists, and returns the smallest policy set found.
func shrink(objs clustertest.Objects, pc packetChoice) clustertest.Objects {
	fails := func(o clustertest.Objects) bool {
		s, errs := cluster.NewSnapshot(o.Namespaces, o.Pods, o.Policies)
		errs = append(errs, s.AddClusterPolicies(o.ClusterPolicies, o.Nodes)...)
		return len(errs) == 0 && compare(o, s, pc) != ""
	}
	cur := objs
	cur.Policies = clonePolicies(objs.Policies)
	for changed := true; changed; {
		changed = false
		for _, cand := range shrinkCandidates(cur.Policies) {
			next := cur
			next.Policies = cand
			if fails(next) {
				cur, changed = next, true
				break
			}
		}
	}
	return cur
}

func clonePolicies(ps []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
	out := make([]*networkingv1.NetworkPolicy, len(ps))
	for i, p := range ps {
		out[i] = p.DeepCopy()
	}
	return out
}

// shrinkCandidates lists policy sets one step smaller than ps.
func shrinkCandidates(ps []*networkingv1.NetworkPolicy) [][]*networkingv1.NetworkPolicy {
	var out [][]*networkingv1.NetworkPolicy
	for i := range ps {
		c := clonePolicies(ps)
		out = append(out, append(c[:i], c[i+1:]...))
	}
	edit := func(i int, f func(*networkingv1.NetworkPolicySpec) bool) {
		c := clonePolicies(ps)
		if f(&c[i].Spec) {
			out = append(out, c)
		}
	}
	for i, p := range ps {
		for r := range p.Spec.Ingress {
			edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
				s.Ingress = append(s.Ingress[:r], s.Ingress[r+1:]...)
				return true
			})
			for j := range p.Spec.Ingress[r].From {
				edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
					s.Ingress[r].From = append(s.Ingress[r].From[:j], s.Ingress[r].From[j+1:]...)
					return len(s.Ingress[r].From) > 0 // dropping the last peer widens the rule: a different policy
				})
			}
			for j := range p.Spec.Ingress[r].Ports {
				edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
					s.Ingress[r].Ports = append(s.Ingress[r].Ports[:j], s.Ingress[r].Ports[j+1:]...)
					return len(s.Ingress[r].Ports) > 0
				})
			}
		}
		for r := range p.Spec.Egress {
			edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
				s.Egress = append(s.Egress[:r], s.Egress[r+1:]...)
				return true
			})
			for j := range p.Spec.Egress[r].To {
				edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
					s.Egress[r].To = append(s.Egress[r].To[:j], s.Egress[r].To[j+1:]...)
					return len(s.Egress[r].To) > 0
				})
			}
			for j := range p.Spec.Egress[r].Ports {
				edit(i, func(s *networkingv1.NetworkPolicySpec) bool {
					s.Egress[r].Ports = append(s.Egress[r].Ports[:j], s.Egress[r].Ports[j+1:]...)
					return len(s.Egress[r].Ports) > 0
				})
			}
		}
	}
	return out
}

// describe prints what a person needs to reproduce a disagreement: the packet,
// the two pods' labels and ports, namespace labels and the policies as JSON.
func describe(objs clustertest.Objects, pc packetChoice) string {
	var b strings.Builder
	fmt.Fprintf(&b, "packet: %s\n", pc)
	for _, ns := range objs.Namespaces {
		fmt.Fprintf(&b, "namespace %s labels %v\n", ns.Name, ns.Labels)
	}
	for _, p := range objs.Pods {
		key := p.Namespace + "/" + p.Name
		if key != pc.src.pod && key != pc.dst.pod {
			continue
		}
		var ports []string
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				ports = append(ports, fmt.Sprintf("%s=%s/%d", cp.Name, cp.Protocol, cp.ContainerPort))
			}
		}
		fmt.Fprintf(&b, "pod %s labels %v hostNetwork=%v ips=%v ports=%v\n", key, p.Labels, p.Spec.HostNetwork, p.Status.PodIPs, ports)
	}
	for _, np := range objs.Policies {
		j, _ := json.Marshal(np.Spec)
		fmt.Fprintf(&b, "policy %s/%s: %s\n", np.Namespace, np.Name, j)
	}
	return b.String()
}

// TestDifferential checks Evaluate against the naive evaluator over thousands
// of random clusters. On a disagreement it prints the seed and a shrunk
// reproduction.
func TestDifferential(t *testing.T) {
	t.Parallel()
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *diffClusters
	if testing.Short() {
		n /= 10
	}
	t.Logf("base seed %d (rerun with -diff.seed=%d), %d clusters", seed, seed, n)
	failures, packets := 0, 0
	for i := range n {
		cseed := seed + uint64(i)
		rng := rand.New(rand.NewPCG(cseed, 0x5eed))
		opts := clustertest.Options{
			IPv6:            rng.IntN(2) == 0,
			HostNetwork:     rng.IntN(2) == 0,
			Unscheduled:     rng.IntN(4) == 0,
			ExtraNamespaces: rng.IntN(2),
			MaxPolicies:     1 + rng.IntN(8),
		}
		if i%2 == 1 {
			opts.MaxClusterPolicies = 1 + rng.IntN(6)
		}
		objs := clustertest.RandomObjects(rng, opts)
		s := objs.Snapshot()
		for range 40 {
			pc := randomPacket(rng, s, opts.IPv6 && rng.IntN(2) == 0)
			packets++
			d := Evaluate(s, pc.model(s))
			checkInvariants(t, d)
			if msg := compare(objs, s, pc); msg != "" {
				failures++
				small := shrink(objs, pc)
				t.Errorf("seed %d (-diff.seed=%d -diff.clusters=1): %s\n%s", cseed, cseed, msg, describe(small, pc))
				if failures >= 3 {
					t.Fatalf("stopping after %d disagreements", failures)
				}
				break
			}
		}
	}
	t.Logf("%d packets over %d clusters agree", packets, n)
}
