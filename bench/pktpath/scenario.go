// Package pktpath owns the packet-path benchmark: between two pod network
// namespaces routed through a node network namespace it measures new TCP
// connections, UDP datagrams that are each a new flow, a one-flow UDP stream
// and an established TCP stream, per second of sender CPU, with no nftables
// table on the node, with conntrack only, with the hand-written floor (the
// least a table that judges the packet can do), with the table policyd
// compiles for a large synthetic cluster (plain, with ClusterNetworkPolicies,
// with logging, and for a curve of cluster sizes), and with the same
// allow-list written as one linear rule per peer address (the iptables style
// the compiled sets replace).
//
// The package has four parts: the scenario (a synthetic cluster plus two
// benchmark pods and the policies that select them, compiled for the node
// that hosts them, the floor and the linear rendering of the destination's
// allow-list), the topology (three network namespaces joined by veth pairs,
// always removed again, and the node's conntrack table), the traffic
// generators, and the interleaved rounds that produce a Report and its
// markdown.
package pktpath

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Names of the benchmark's own objects in the synthetic cluster.
const (
	// ClientNamespace holds the source pod (pod A).
	ClientNamespace = "pdbench-client"
	// ServerNamespace holds the destination pod (pod B).
	ServerNamespace = "pdbench-server"
	// ClientPod and ServerPod are the two benchmark pods.
	ClientPod = "pdbench-client-0"
	ServerPod = "pdbench-server-0"
	// IngressAllowPolicy and EgressAllowPolicy are the policies whose second
	// rule allows the benchmark flow. Their keys sort after the other
	// benchmark policies, so the allowing rule is checked last.
	IngressAllowPolicy = "pdbench-in-3-allow"
	EgressAllowPolicy  = "pdbench-eg-3-allow"
	// AllowRuleIndex is the index of the allowing rule in both policies.
	AllowRuleIndex = 1

	// Port is the UDP and TCP port of the benchmark flow.
	Port = 7000

	// LinearTable is the name of the inet table holding configuration (c).
	LinearTable = "pdbench_linear"
)

// Scenario is a synthetic cluster with the two benchmark pods and their
// policies, and the node they run on.
type Scenario struct {
	// Snapshot is the whole cluster, synthetic part and benchmark part.
	Snapshot *cluster.Snapshot
	// Node is the node both benchmark pods run on; Compile compiles for it.
	Node string
	// Src and Dst are the benchmark pods: Src sends, Dst receives.
	Src, Dst *cluster.Pod
	// SyntheticPods, SyntheticPolicies and Namespaces are the sizes of the
	// synthetic part, as asked for.
	SyntheticPods, SyntheticPolicies, Namespaces int
}

// NewScenario builds the synthetic cluster (selectorstest.Synthetic) and adds
// the benchmark pods and policies on top:
//
//   - Src (pdbench-client/pdbench-client-0) and Dst
//     (pdbench-server/pdbench-server-0) run on the synthetic node that holds
//     the most pods, at addresses no synthetic pod uses;
//   - three ingress policies select Dst: one allowing the platform team's
//     namespaces on TCP 9090, one allowing every frontend pod of the cluster on
//     TCP 8080 (Src is a frontend pod: its source address matches, the port
//     does not), and pdbench-in-3-allow, whose rule 0 allows an ipBlock and
//     whose rule 1 allows Src on TCP and UDP Port;
//   - three egress policies select Src, built the same way: DNS to CoreDNS,
//     every backend pod (Dst is one) on TCP 8080 and 9000, and
//     pdbench-eg-3-allow, whose rule 1 allows Dst on TCP and UDP Port.
//
// So in the policies' own order the allowing rule is never the first one in
// either direction. Both groups hold several rules on single ports, so their
// chains dispatch on the port (policy/compile's port dispatch), and the flow's
// port goes straight to the chain holding the allowing rule.
func NewScenario(pods, policies, namespaces int, seed int64) (*Scenario, error) {
	if pods < 1 || policies < 0 || namespaces < 2 {
		return nil, fmt.Errorf("scenario: need pods >= 1, policies >= 0 and namespaces >= 2, got %d, %d, %d", pods, policies, namespaces)
	}
	snap := selectorstest.Synthetic(pods, policies, namespaces, seed)
	sc := &Scenario{Snapshot: snap, Node: busiestNode(snap), SyntheticPods: pods, SyntheticPolicies: policies, Namespaces: namespaces}

	src, dst, err := freeAddrs(snap)
	if err != nil {
		return nil, err
	}
	sc.Src = &cluster.Pod{
		Namespace: ClientNamespace, Name: ClientPod, NodeName: sc.Node,
		Labels: labels.Set{"app": "pdbench-client", "tier": "frontend", "team": "bench"},
		IPs:    []netip.Addr{src},
	}
	sc.Dst = &cluster.Pod{
		Namespace: ServerNamespace, Name: ServerPod, NodeName: sc.Node,
		Labels: labels.Set{"app": "pdbench-server", "tier": "backend", "team": "bench"},
		IPs:    []netip.Addr{dst},
		Ports:  []cluster.ContainerPort{{Name: "bench-udp", Port: Port, Protocol: cluster.ProtocolUDP}, {Name: "bench-tcp", Port: Port, Protocol: cluster.ProtocolTCP}},
	}
	for _, name := range []string{ClientNamespace, ServerNamespace} {
		if _, ok := snap.Namespaces[name]; ok {
			return nil, fmt.Errorf("scenario: synthetic cluster already has namespace %s", name)
		}
		snap.Namespaces[name] = cluster.ConvertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "bench"}}})
	}
	snap.Pods = append(snap.Pods, sc.Src, sc.Dst)
	for _, np := range benchPolicies() {
		p, errs := cluster.ConvertPolicy(np)
		if len(errs) > 0 {
			return nil, fmt.Errorf("scenario: benchmark policy %s/%s: %v", np.Namespace, np.Name, errs)
		}
		snap.Policies = append(snap.Policies, p)
	}
	snap.Sort()
	return sc, nil
}

// busiestNode returns the node that runs the most non-hostNetwork pods
// (the smallest name on a tie), or "pdbench-node" for a cluster without pods.
func busiestNode(s *cluster.Snapshot) string {
	count := map[string]int{}
	for _, p := range s.Pods {
		if p.NodeName != "" && !p.HostNetwork {
			count[p.NodeName]++
		}
	}
	best, n := "pdbench-node", 0
	for node, c := range count {
		if c > n || (c == n && node < best) {
			best, n = node, c
		}
	}
	return best
}

// benchAddrBase is where the benchmark pods' addresses are looked for:
// outside the synthetic generator's 10.1-10.200 ipBlocks, and away from
// gatewayA and gatewayB.
var benchAddrBase = netip.MustParseAddr("10.250.0.10")

// Gateway addresses of the node side of the two veth pairs.
var (
	gatewayA = netip.MustParseAddr("10.250.255.1")
	gatewayB = netip.MustParseAddr("10.250.255.2")
)

// freeAddrs returns two addresses that no pod of s holds.
func freeAddrs(s *cluster.Snapshot) (src, dst netip.Addr, err error) {
	used := map[netip.Addr]bool{gatewayA: true, gatewayB: true}
	for _, p := range s.Pods {
		for _, a := range p.IPs {
			used[a] = true
		}
	}
	var got []netip.Addr
	for a := benchAddrBase; len(got) < 2 && a.As4()[1] == benchAddrBase.As4()[1]; a = a.Next() {
		if !used[a] && a.As4()[3] != 0 && a.As4()[3] != 255 {
			got = append(got, a)
		}
	}
	if len(got) < 2 {
		return src, dst, fmt.Errorf("scenario: no free addresses in 10.250.0.0/16 for the benchmark pods")
	}
	return got[0], got[1], nil
}

func benchPolicies() []*networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(n)
		return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
	}
	sel := func(kv ...string) *metav1.LabelSelector {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &metav1.LabelSelector{MatchLabels: m}
	}
	benchPorts := []networkingv1.NetworkPolicyPort{port(tcp, Port), port(udp, Port)}
	ingress := func(name string, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ServerNamespace, Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", "pdbench-server"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     rules,
			},
		}
	}
	egress := func(name string, rules ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ClientNamespace, Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", "pdbench-client"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      rules,
			},
		}
	}
	block := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.249.0.0/16"}}
	return []*networkingv1.NetworkPolicy{
		ingress("pdbench-in-1-monitoring", networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "platform")}},
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, 9090)},
		}),
		ingress("pdbench-in-2-frontends", networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel("tier", "frontend")}},
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, 8080)},
		}),
		ingress(IngressAllowPolicy,
			networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{block}},
			networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(corev1.LabelMetadataName, ClientNamespace), PodSelector: sel("app", "pdbench-client")}},
				Ports: benchPorts,
			}),
		egress("pdbench-eg-1-dns", networkingv1.NetworkPolicyEgressRule{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(corev1.LabelMetadataName, "kube-system"), PodSelector: sel("k8s-app", "kube-dns")}},
			Ports: []networkingv1.NetworkPolicyPort{port(udp, 53), port(tcp, 53)},
		}),
		egress("pdbench-eg-2-backends", networkingv1.NetworkPolicyEgressRule{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel("tier", "backend")}},
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, 8080), port(tcp, 9000)},
		}),
		egress(EgressAllowPolicy,
			networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{block}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 443)}},
			networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(corev1.LabelMetadataName, ServerNamespace), PodSelector: sel("app", "pdbench-server")}},
				Ports: benchPorts,
			}),
	}
}

// Compile compiles the scenario's cluster for its node, through the selector
// index as the agent does.
func (sc *Scenario) Compile() (*ruleset.Ruleset, error) {
	return sc.CompileWith(compile.Options{}, 0)
}

// CompileWith compiles the scenario's node with a compile.Compiler holding
// opts, after adding clusterPolicies Admin and as many Baseline
// ClusterNetworkPolicies (Scenario.ClusterPolicies; 0 adds none).
func (sc *Scenario) CompileWith(opts compile.Options, clusterPolicies int) (*ruleset.Ruleset, error) {
	ix := selectors.FromSnapshot(sc.Snapshot)
	if clusterPolicies > 0 {
		cps, err := sc.convertClusterPolicies(clusterPolicies)
		if err != nil {
			return nil, err
		}
		for _, cp := range cps {
			ix.UpsertClusterPolicy(cp)
		}
	}
	c := &compile.Compiler{Options: opts}
	rs, err := c.Compile(ix, sc.Node)
	if err != nil {
		return nil, fmt.Errorf("scenario: compile for node %s: %w", sc.Node, err)
	}
	return rs, nil
}

// Stats are the sizes of a compiled ruleset.
type Stats struct {
	// Sets and Maps count named sets and verdict maps; Elements counts the
	// elements of both.
	Sets, Maps, Elements int
	// Chains counts regular chains; Rules counts the rules of every chain.
	Chains, Rules int
	// DispatchEntries counts the entries of the dispatch maps (one per local
	// pod address and direction in which some policy isolates the pod).
	DispatchEntries int
}

// RulesetStats counts the parts of rs.
func RulesetStats(rs *ruleset.Ruleset) Stats {
	var st Stats
	for _, s := range rs.Sets {
		if s.Map {
			st.Maps++
			st.DispatchEntries += s.Len()
		} else {
			st.Sets++
		}
		st.Elements += s.Len()
	}
	for _, c := range rs.Chains {
		if c.Base == nil {
			st.Chains++
		}
		st.Rules += len(c.Rules)
	}
	return st
}

// GroupChain returns the chain that the dispatch map of direction d sends the
// address addr to, or an error when addr has no entry.
func GroupChain(rs *ruleset.Ruleset, d cluster.Direction, addr netip.Addr) (*ruleset.Chain, error) {
	mapName := compile.MapIngress4
	if d == cluster.Egress {
		mapName = compile.MapEgress4
	}
	if addr.Is6() {
		mapName = mapName[:len(mapName)-1] + "6"
	}
	m := rs.Set(mapName)
	if m == nil {
		return nil, fmt.Errorf("ruleset has no map %s", mapName)
	}
	for _, e := range m.Elems() {
		if e.Addr == addr {
			if e.Verdict.Kind != ruleset.Jump {
				return nil, fmt.Errorf("map %s: entry %s is %s, not a jump", mapName, addr, e.Verdict)
			}
			c := rs.Chain(e.Verdict.Chain)
			if c == nil {
				return nil, fmt.Errorf("map %s: entry %s jumps to missing chain %s", mapName, addr, e.Verdict.Chain)
			}
			return c, nil
		}
	}
	return nil, fmt.Errorf("map %s has no entry for %s", mapName, addr)
}

// PortChain returns the chain the port dispatch of group chain c sends
// protocol proto, port port to, and the map entry that does, or nil when c
// has no port dispatch or its map no entry for that port.
func PortChain(rs *ruleset.Ruleset, c *ruleset.Chain, proto uint8, port uint16) (*ruleset.Chain, string) {
	for _, r := range c.Rules {
		pd, ok := r.(*ruleset.PortDispatchRule)
		if !ok {
			continue
		}
		m := rs.Set(pd.Map)
		if m == nil {
			return nil, ""
		}
		for _, e := range m.Elems() {
			if e.Proto == proto && e.Port == port {
				return rs.Chain(e.Verdict.Chain), m.ElementKey(e)
			}
		}
	}
	return nil, ""
}

// PortedAllow is an allow rule of a group chain and the ports it holds for:
// Ports is nil for a rule of the chain itself (its own port test says), and
// for a rule reached through the chain's port dispatch lists the map's
// entries ("udp . 7000") whose chains hold it.
type PortedAllow struct {
	Rule  *ruleset.AllowRule
	Ports []string
}

// GroupAllows returns the allow rules of group chain c with their ports, in
// the order a packet can meet them: where c dispatches on the port, the
// rules the map's chains hold for their ports, each once, then c's own.
func GroupAllows(rs *ruleset.Ruleset, c *ruleset.Chain) ([]PortedAllow, error) {
	key := func(r *ruleset.AllowRule) string { return r.Text() + "#" + r.Comment }
	own := map[string]bool{}
	for _, r := range c.Rules {
		if ar, ok := r.(*ruleset.AllowRule); ok {
			own[key(ar)] = true
		}
	}
	var out []PortedAllow
	for _, r := range c.Rules {
		//sealed:partial only allow rules and the port maps leading to them hold what a group allows
		switch r := r.(type) {
		case *ruleset.AllowRule:
			out = append(out, PortedAllow{Rule: r})
		case *ruleset.PortDispatchRule:
			m := rs.Set(r.Map)
			if m == nil {
				return nil, fmt.Errorf("chain %s: missing port dispatch map %s", c.Name, r.Map)
			}
			at := map[string]int{}
			for _, e := range m.Elems() {
				pc := rs.Chain(e.Verdict.Chain)
				if pc == nil {
					return nil, fmt.Errorf("chain %s: map %s sends %s to missing chain %s", c.Name, r.Map, m.ElementKey(e), e.Verdict.Chain)
				}
				for _, pr := range pc.Rules {
					ar, ok := pr.(*ruleset.AllowRule)
					if !ok || own[key(ar)] {
						continue
					}
					i, seen := at[key(ar)]
					if !seen {
						i = len(out)
						at[key(ar)] = i
						out = append(out, PortedAllow{Rule: ar})
					}
					out[i].Ports = append(out[i].Ports, m.ElementKey(e))
				}
			}
		}
	}
	return out, nil
}

// Linear is configuration (c): the destination's ingress allow-list as one
// rule per allowed peer address.
type Linear struct {
	// Text is `nft -f` input creating table inet LinearTable.
	Text string
	// Rules counts the per-peer accept rules (not the conntrack and drop
	// rules around them).
	Rules int
}

// LinearAllowList renders the IPv4 ingress allow-list that rs applies to dst
// in the iptables style: a table inet LinearTable whose postrouting chain
// (hook postrouting, the compiled table's priority) accepts established and
// related packets, then has one rule per allowed peer address or ipBlock range
//
//	ip saddr <peer> ip daddr <dst> meta l4proto . th dport { <ports> } accept
//
// (no port match when some rule allows that peer every port), with src's rule
// placed last, then drops everything else sent to dst. The allow-list is read
// from dst's ingress chain in rs, so it is exactly what the compiled table
// allows, set lookups unrolled.
func LinearAllowList(rs *ruleset.Ruleset, src, dst netip.Addr) (*Linear, error) {
	chain, err := GroupChain(rs, cluster.Ingress, dst)
	if err != nil {
		return nil, fmt.Errorf("linear allow-list for %s: %w", dst, err)
	}
	type peerPorts struct {
		all   bool
		ports map[string]bool
	}
	peers := map[string]*peerPorts{}
	var order []string
	note := func(peer string, all bool, ports []string) {
		pp, ok := peers[peer]
		if !ok {
			pp = &peerPorts{ports: map[string]bool{}}
			peers[peer] = pp
			order = append(order, peer)
		}
		pp.all = pp.all || all
		for _, p := range ports {
			pp.ports[p] = true
		}
	}
	allows, err := GroupAllows(rs, chain)
	if err != nil {
		return nil, fmt.Errorf("linear allow-list for %s: %w", dst, err)
	}
	for i, pa := range allows {
		ar := pa.Rule
		if ar.Family == 6 {
			continue
		}
		ports := pa.Ports
		all := ar.PortSet == "" && ar.Proto == 0 && ar.NamedPortSet == "" && ports == nil
		if ar.Proto != 0 {
			ports = append(ports, ruleset.ProtoText(ar.Proto)+" . "+fmt.Sprint(ar.Port))
		}
		if ar.PortSet != "" {
			s := rs.Set(ar.PortSet)
			if s == nil {
				return nil, fmt.Errorf("chain %s rule %d: missing port set %s", chain.Name, i, ar.PortSet)
			}
			for _, e := range s.Elems() {
				ports = append(ports, s.ElementKey(e))
			}
		}
		if ar.NamedPortSet != "" {
			s := rs.Set(ar.NamedPortSet)
			if s == nil {
				return nil, fmt.Errorf("chain %s rule %d: missing named-port set %s", chain.Name, i, ar.NamedPortSet)
			}
			for _, e := range s.Elems() {
				if e.Addr == dst {
					ports = append(ports, ruleset.ProtoText(e.Proto)+" . "+fmt.Sprint(e.Port))
				}
			}
			if len(ports) == 0 && ar.PortSet == "" {
				continue // the named port does not resolve on dst: the rule allows nothing
			}
		}
		if ar.PeerSet == "" {
			note("", all, ports)
			continue
		}
		s := rs.Set(ar.PeerSet)
		if s == nil {
			return nil, fmt.Errorf("chain %s rule %d: missing peer set %s", chain.Name, i, ar.PeerSet)
		}
		for _, e := range s.Elems() {
			note(s.ElementKey(e), all, ports)
		}
	}
	srcKey := src.String()
	if _, ok := peers[srcKey]; !ok {
		return nil, fmt.Errorf("linear allow-list: %s's ingress chain %s does not allow %s", dst, chain.Name, src)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if (order[i] == srcKey) != (order[j] == srcKey) {
			return order[j] == srcKey
		}
		return false
	})

	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n\tchain postrouting {\n\t\ttype filter hook postrouting priority %d; policy accept;\n", LinearTable, compile.PriorityPostrouting)
	b.WriteString("\t\tct state established,related accept\n")
	for _, peer := range order {
		pp := peers[peer]
		b.WriteString("\t\t")
		if peer != "" {
			fmt.Fprintf(&b, "ip saddr %s ", peer)
		}
		fmt.Fprintf(&b, "ip daddr %s ", dst)
		if !pp.all {
			ports := make([]string, 0, len(pp.ports))
			for p := range pp.ports {
				ports = append(ports, p)
			}
			sort.Strings(ports)
			fmt.Fprintf(&b, "meta l4proto . th dport { %s } ", strings.Join(ports, ", "))
		}
		b.WriteString("accept\n")
	}
	fmt.Fprintf(&b, "\t\tip daddr %s drop\n\t}\n}\n", dst)
	return &Linear{Text: b.String(), Rules: len(order)}, nil
}

// ClusterPolicies returns n Admin and n Baseline ClusterNetworkPolicies for
// the scenario: every fifth of each tier selects both benchmark pods (their
// namespaces carry team=bench), the others the synthetic namespaces in
// turn. The ones selecting the benchmark pods hold rules the benchmark flow
// must walk and miss (a Deny from another namespace on another port, an
// egress Deny to another network), and the last Admin one a Pass for the
// benchmark flow, so the packet goes on to its NetworkPolicies, which allow
// it; the Baseline tier is never reached, since NetworkPolicies isolate
// both pods. Converting them is the caller's part.
func (sc *Scenario) ClusterPolicies(n int) []*npav1beta1.ClusterNetworkPolicy {
	var nss []string
	for name := range sc.Snapshot.Namespaces {
		if name != ClientNamespace && name != ServerNamespace {
			nss = append(nss, name)
		}
	}
	slices.Sort(nss)
	bench := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "bench"}}
	var out []*npav1beta1.ClusterNetworkPolicy
	for _, tier := range []npav1beta1.Tier{npav1beta1.AdminTier, npav1beta1.BaselineTier} {
		for i := range n {
			subject := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: nss[i%len(nss)]}}
			if i%5 == 0 {
				subject = bench
			}
			other := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: nss[(i+1)%len(nss)]}}
			c := &npav1beta1.ClusterNetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pdbench-%s-%03d", strings.ToLower(string(tier)), i)},
				Spec: npav1beta1.ClusterNetworkPolicySpec{
					Tier: tier, Priority: int32(i),
					Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: subject},
					Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{
						Name: "deny-other", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
						From:      []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: other}},
						Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: int32(7000 + i)}}}},
					}},
					Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{{
						Name: "deny-net", Action: npav1beta1.ClusterNetworkPolicyRuleActionDeny,
						To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []npav1beta1.CIDR{npav1beta1.CIDR(fmt.Sprintf("192.168.%d.0/24", i%256))}}},
					}},
				},
			}
			out = append(out, c)
		}
	}
	pass := []npav1beta1.ClusterNetworkPolicyProtocol{
		{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: Port}}},
		{UDP: &npav1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &npav1beta1.Port{Number: Port}}},
	}
	out = append(out, &npav1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pdbench-admin-pass"},
		Spec: npav1beta1.ClusterNetworkPolicySpec{
			Tier: npav1beta1.AdminTier, Priority: 1000,
			Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: bench},
			Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{{Name: "pass-bench", Action: npav1beta1.ClusterNetworkPolicyRuleActionPass,
				From: []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: bench}}, Protocols: pass}},
			Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{{Name: "pass-bench", Action: npav1beta1.ClusterNetworkPolicyRuleActionPass,
				To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Namespaces: bench}}, Protocols: pass}},
		},
	})
	return out
}

// CompileWithClusterPolicies compiles the scenario's node with n Admin and
// n Baseline ClusterNetworkPolicies (ClusterPolicies) added.
func (sc *Scenario) CompileWithClusterPolicies(n int) (*ruleset.Ruleset, error) {
	return sc.CompileWith(compile.Options{}, n)
}

func (sc *Scenario) convertClusterPolicies(n int) ([]*cluster.ClusterPolicy, error) {
	var out []*cluster.ClusterPolicy
	for _, c := range sc.ClusterPolicies(n) {
		cp, errs := cluster.ConvertClusterPolicy(c)
		if len(errs) > 0 {
			return nil, fmt.Errorf("scenario: cluster network policy %s: %v", c.Name, errs)
		}
		out = append(out, cp)
	}
	return out, nil
}

// Selection counts the policies of each kind that select one benchmark pod.
type Selection struct {
	// NetworkPolicies counts the NetworkPolicies that select the pod and
	// isolate it in the direction the benchmark flow leaves (pod A) or
	// enters (pod B) it.
	NetworkPolicies int
	// Admin and Baseline count the ClusterNetworkPolicies of each tier
	// whose subject is the pod.
	Admin, Baseline int
}

// Selections returns the Selection of pod A (egress) and pod B (ingress)
// with n Admin and n Baseline ClusterNetworkPolicies added
// (Scenario.ClusterPolicies).
func (sc *Scenario) Selections(n int) (src, dst Selection, err error) {
	var cps []*cluster.ClusterPolicy
	if n > 0 {
		if cps, err = sc.convertClusterPolicies(n); err != nil {
			return src, dst, err
		}
	}
	ix := selectors.FromSnapshot(sc.Snapshot)
	count := func(p *cluster.Pod, d cluster.Direction) Selection {
		var s Selection
		for _, pol := range sc.Snapshot.Policies {
			if pol.Namespace == p.Namespace && pol.PodSelector.Matches(p.Labels) && pol.Isolates(d) {
				s.NetworkPolicies++
			}
		}
		nsLabels := ix.NamespaceLabels(p.Namespace)
		for _, cp := range cps {
			if !cp.SelectsPod(p, nsLabels) {
				continue
			}
			switch cp.Tier {
			case cluster.TierAdmin:
				s.Admin++
			case cluster.TierBaseline:
				s.Baseline++
			}
		}
		return s
	}
	return count(sc.Src, cluster.Egress), count(sc.Dst, cluster.Ingress), nil
}

// FloorTable is the name of the inet table holding configuration (f).
const FloorTable = "pdbench_floor"

// FloorText is configuration (f), the floor: the cheapest table that still
// judges the benchmark flow's packet in both directions, written by hand. In
// the compiled table's hook and priority it accepts established and related
// packets, then dispatches on the source address with one verdict map (pod A
// to its egress chain) and on the destination address with another (pod B to
// its ingress chain); each chain makes one lookup of the packet's peer,
// protocol and port in a concatenated set holding exactly the benchmark flow
// (pod B or pod A, TCP and UDP Port) and drops what is not in it. Its sets
// and maps are sized, as the compiler sizes its own (ruleset.SizeFor), so
// they get the kernel's fixed-size hash, the cheaper lookup. So a judged
// packet costs one conntrack lookup, two map lookups, two set lookups and two
// jumps: what any table that tells allowed peers and ports from the rest
// must at least do.
func FloorText(src, dst netip.Addr) string { return floorText(src, dst, dst, src) }

// floorText renders the floor for pods src and dst with egressPeer the one
// peer src may send to and ingressPeer the one dst may receive from.
func floorText(src, dst, egressPeer, ingressPeer netip.Addr) string {
	var b strings.Builder
	set := func(name string, peer netip.Addr) {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tsize %d\n\t\telements = { %s . tcp . %d, %s . udp . %d }\n\t}\n", name, ruleset.MinSetSize, peer, Port, peer, Port)
	}
	fmt.Fprintf(&b, "table inet %s {\n", FloorTable)
	set("egress_allow", egressPeer)
	set("ingress_allow", ingressPeer)
	fmt.Fprintf(&b, "\tchain egress_pod {\n\t\tip daddr . meta l4proto . th dport @egress_allow return\n\t\tdrop\n\t}\n")
	fmt.Fprintf(&b, "\tchain ingress_pod {\n\t\tip saddr . meta l4proto . th dport @ingress_allow accept\n\t\tdrop\n\t}\n")
	fmt.Fprintf(&b, "\tmap egress4 {\n\t\ttype ipv4_addr : verdict\n\t\tsize %d\n\t\telements = { %s : jump egress_pod }\n\t}\n", ruleset.MinSetSize, src)
	fmt.Fprintf(&b, "\tmap ingress4 {\n\t\ttype ipv4_addr : verdict\n\t\tsize %d\n\t\telements = { %s : jump ingress_pod }\n\t}\n", ruleset.MinSetSize, dst)
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype filter hook postrouting priority %d; policy accept;\n", compile.PriorityPostrouting)
	b.WriteString("\t\tct state established,related accept\n\t\tip saddr vmap @egress4\n\t\tip daddr vmap @ingress4\n\t}\n}\n")
	return b.String()
}

// FloorRules is the number of rules a judged packet of the benchmark flow
// meets in the floor: the conntrack rule, the egress dispatch, the egress
// lookup, the ingress dispatch and the ingress lookup.
const FloorRules = 5
