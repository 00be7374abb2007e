// Package compile turns the cluster's NetworkPolicies, pods and namespaces
// into the nftables state one node needs (a ruleset.Ruleset). It is pure and
// deterministic: no clock, logging, informers or netlink, and its output does
// not depend on map iteration order.
//
// # Shape of the compiled table
//
// One inet table holds IPv4 and IPv6 together. Two static base chains carry
// every decision:
//
//   - postrouting, hook postrouting, priority srcnat-5 (95). Every packet that
//     leaves the node's network stack towards a pod or from a pod passes here,
//     whether the CNI routes it (forward path), bridges it (br_netfilter calls
//     the inet postrouting hook for bridged IP traffic), or IPVS re-injects it
//     after its LOCAL_IN DNAT (output path, where the forward hook never sees
//     it). At 95 the packet already carries kube-proxy's DNAT (iptables and
//     nftables modes rewrite in prerouting/output at -100), so a ClusterIP probe
//     is judged as the pod it lands on, and no SNAT (masquerade at 100) has
//     happened yet, so the source is still the pod's address.
//   - input, hook input, priority 110. Traffic from a local pod to the node
//     itself (a node IP, a hostNetwork pod, node-local DNS) is delivered, not
//     forwarded; it is judged here for egress only. 110 runs after IPVS's
//     LOCAL_IN hooks (98, 99), which take ClusterIP traffic away before it, so
//     that traffic is judged in postrouting on its real destination instead.
//
// Both start with conntrack: established and related packets are accepted
// before any lookup, so only the first packet of a connection is judged and
// a policy change never cuts an established connection. IPv6 neighbour
// discovery is always accepted (the rule sits after the IPv4 dispatch, which
// it cannot concern, so IPv4 packets do not pay for it).
//
// The per-pod work is dispatched by four verdict maps keyed by pod address:
// egress4/egress6 (looked up with the source address) and ingress4/ingress6
// (destination address). A pod has an entry only when it runs on this node and
// some policy isolates it in that direction; the entry jumps to the chain of its
// "policy group", the ordered list of policies isolating it, for the entry's
// address family. Pods isolated by the same policies share one chain per
// family, whose name is a hash of its rules; a family's chain holds only the
// rules that can match that family, so an IPv4 packet never walks IPv6 rules.
// A chain is: invalid conntrack state; the allow rules of the group's policy
// rules, one per (peer, ports) alternative, each one or two set lookups,
// ports first; drop. Egress chains drop invalid packets and end an allowed
// packet with return (the packet must still pass the destination's ingress
// check in the same base chain). Ingress chains end an allowed packet with
// accept; before their drop, and for invalid packets (through a small shared
// chain), they accept traffic whose source address is local to the node
// (kubelet probes, the node's own traffic), which policies never cut. That
// check is a route lookup, so it is made only for packets an ingress chain
// would otherwise drop, not for every packet in the base chain: no packet
// from a local address reaches an egress chain, since local addresses are not
// pod addresses.
//
// All allow rules of a chain share one verdict, so the compiler drops rules
// another covers and orders the rest cheapest miss first (see orderAllows).
// When two or more of them are on single ports, the chain instead looks the
// packet's protocol and port up in a verdict map (gports-…) and goes to a
// chain for that port (ingress-port-…, egress-port-…): the peer lookups of
// the rules on that port, then the rules for any port, then the group's
// end (see portDispatch).
//
// So the per-packet cost is a fixed number of hash lookups plus the rules of
// the policies that select this one pod (with a port dispatch, those on the
// packet's port); it does not grow with the number of pods or policies in
// the cluster.
//
// Peers are named sets of pod addresses, one per distinct peer selector
// (shared by every policy and chain that uses it); ipBlocks are interval sets
// holding the CIDR minus its excepts; ports are inet_proto . inet_service
// sets, plain hash sets unless a range or a protocol-wide entry needs an
// interval set; named ports become sets of
// address . inet_proto . inet_service triples resolved on each destination pod.
// Every set and map but the interval sets is sized (ruleset.SizeSets), so
// the kernel keeps it in its fixed-size hash, the cheaper lookup; the
// Backend keeps a size that still fits and recreates a set that outgrew it.
//
// Denied packets are dropped, not rejected: reject is not allowed in the
// postrouting hook, and a silent drop is what the peers do and what the
// upstream conformance suite expects (it probes with timeouts).
package compile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
)

// Names of the static parts of the table.
const (
	ChainPostrouting = "postrouting"
	ChainInput       = "input"
	MapEgress4       = "egress4"
	MapEgress6       = "egress6"
	MapIngress4      = "ingress4"
	MapIngress6      = "ingress6"

	// PriorityPostrouting is srcnat - 5: after every DNAT, before any SNAT.
	PriorityPostrouting = 95
	// PriorityInput runs after IPVS's LOCAL_IN hooks.
	PriorityInput = 110
)

// maxCommentLen keeps rule and set comments well inside the kernel's userdata
// limit (NFT_USERDATA_MAXLEN, 256 bytes).
const maxCommentLen = 120

// Source is what Compile reads: the cluster state as the selector index keeps
// it (selectors.Index implements it).
type Source interface {
	// Pods returns every pod, sorted by key. A pod value is never
	// modified once a Source has returned it: a change replaces it (the
	// Compiler's count keeps what it counted of each pod value).
	Pods() []*cluster.Pod
	// PoliciesFor returns the policies whose pod selector selects the pod,
	// sorted by key.
	PoliciesFor(namespace, name string) []*cluster.Policy
	// PeerVersion returns a number that changes whenever the pods a
	// PeerPods peer selects may have changed; versions never repeat.
	PeerVersion(peer *cluster.Peer) uint64
	// EachPeerPod calls f for each pod a PeerPods peer selects, without
	// hostNetwork pods, in any order.
	EachPeerPod(peer *cluster.Peer, f func(*cluster.Pod))
	// EachPeerPart calls f for each of the disjoint parts that together
	// hold what EachPeerPod yields, with a version that changes whenever
	// the part's pods may have changed and that no other part ever has;
	// a part's sequence of pods may be walked until the source changes.
	EachPeerPart(peer *cluster.Peer, f func(version uint64, pods iter.Seq[*cluster.Pod]))
	// ClusterPolicies returns every ClusterNetworkPolicy in evaluation
	// order (cluster.SortClusterPolicies).
	ClusterPolicies() []*cluster.ClusterPolicy
	// Nodes returns every node, sorted by name.
	Nodes() []*cluster.Node
	// NamespaceLabels returns the labels selectors see for a namespace.
	NamespaceLabels(name string) labels.Set
}

// newCompiler returns the state of one compile of node.
func newCompiler(src Source, node string, cc *Compiler) *compiler {
	own, claims, contested := cc.owners(src.Pods())
	cc.resetIfOwnershipChanged(contested, claims)
	cc.nodeConflict, cc.nodeClaims = nodeConflicts(src.Nodes(), own, claims)
	return &compiler{
		node:     node,
		cc:       cc,
		own:      own,
		claims:   claims,
		src:      src,
		sets:     map[string]*ruleset.Set{},
		peerSets: map[peerFam]*ruleset.Set{},
		pending:  map[string]*ruleset.Set{},
		chain:    map[string]*ruleset.Chain{},
		maps:     map[string]*ruleset.Set{},
	}
}

func compileWith(src Source, node string, cc *Compiler) (*ruleset.Ruleset, error) {
	pods := src.Pods()
	c := newCompiler(src, node, cc)
	own := c.own
	cc.selectNP, cc.selectCNP = map[*cluster.Policy]bool{}, map[*cluster.ClusterPolicy]bool{}
	// The budget check comes first: what a quarantined object would have
	// cost is never built.
	c.decide()
	defer cc.forgetStripped()
	for fam, names := range map[int][]string{4: {MapEgress4, MapIngress4}, 6: {MapEgress6, MapIngress6}} {
		for _, name := range names {
			c.maps[name] = &ruleset.Set{Name: name, Key: ruleset.AddrKey(fam), Map: true, Comment: "policyd dispatch: pod address to the chain of its policy group"}
		}
	}

	for _, p := range pods {
		if p.NodeName != node || p.HostNetwork || len(p.IPs) == 0 {
			continue
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			for _, ip := range p.IPs {
				if own[ip] != p {
					continue // an address several pods claim: see conflictEntries
				}
				// Every address has one owner and a pod one address per
				// family, so no map or named-port set ever gets a duplicate.
				name, err := c.podChain(d, p, family(ip), false)
				if err != nil {
					return nil, err
				}
				if name == "" {
					continue // nothing isolates or selects the pod for d
				}
				m := c.maps[dispatchMap(d, ip)]
				m.Elements = append(m.Elements, ruleset.Element{Addr: ip, Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: name}})
			}
		}
		c.localPods = append(c.localPods, p)
	}
	if err := c.conflictEntries(); err != nil {
		return nil, err
	}
	c.fillNamedSets(c.egressNamed) // egress named ports need every pod, not only local ones

	if c.logErr != nil {
		return nil, c.logErr
	}
	rs := &ruleset.Ruleset{Deciders: c.deciderMap()}
	if c.limit != nil {
		rs.Limits = []*ruleset.Limit{c.limit}
	}
	for _, s := range c.sets {
		rs.Sets = append(rs.Sets, s)
	}
	for _, m := range c.maps {
		rs.Sets = append(rs.Sets, m)
	}
	for _, ch := range c.chain {
		rs.Chains = append(rs.Chains, ch)
	}
	netSets, netRules, err := podNetworkSets(cc.Options, own, src.Nodes())
	if err != nil {
		return nil, err
	}
	rs.Sets = append(rs.Sets, netSets...)
	markSets, markRules := flowMarkSets(cc.Options, c.localPods, own)
	rs.Sets = append(rs.Sets, markSets...)
	base := baseChains(markRules, netRules)
	if m := cc.Options.CutMark; m != 0 {
		for _, b := range base {
			cut := &ruleset.CutMarkRule{Mark: m, Verdict: ruleset.Verdict{Kind: ruleset.Drop}, Comment: "strict mode: a connection cut by a policy change"}
			b.Rules = append([]ruleset.Rule{cut}, b.Rules...)
		}
	}
	rs.Chains = append(rs.Chains, base...)
	dropUnusedPortSets(rs)
	rs.SizeSets()
	rs.Sort()
	return rs, nil
}

// family returns 4 or 6, the address family of ip.
func family(ip netip.Addr) int {
	if ip.Is4() {
		return 4
	}
	return 6
}

func dispatchMap(d cluster.Direction, ip netip.Addr) string {
	switch {
	case d == cluster.Ingress && ip.Is4():
		return MapIngress4
	case d == cluster.Ingress:
		return MapIngress6
	case ip.Is4():
		return MapEgress4
	}
	return MapEgress6
}

// baseChains returns the static skeleton. It never depends on the cluster;
// first rules (the flow-mark option's) go right after the established rule,
// which only a connection's first packet passes; extra rules (the
// pod-network option's) go at the end of their hook's chain, where only
// packets no pod chain has accepted or dropped arrive.
func baseChains(first, extra map[ruleset.Hook][]ruleset.Rule) []*ruleset.Chain {
	ct := &ruleset.CtRule{States: ruleset.CtEstablished | ruleset.CtRelated, Verdict: ruleset.Verdict{Kind: ruleset.Accept}, Comment: "only the first packet of a connection is judged"}
	nd := &ruleset.NDRule{Verdict: ruleset.Verdict{Kind: ruleset.Accept}, Comment: "IPv6 neighbour discovery is never policed"}
	dispatch := func(fam int, f ruleset.Field, m string) *ruleset.DispatchRule {
		return &ruleset.DispatchRule{Family: fam, Field: f, Map: m}
	}
	return []*ruleset.Chain{
		{
			Name: ChainPostrouting,
			Base: &ruleset.Base{Hook: ruleset.HookPostrouting, Priority: PriorityPostrouting, Policy: ruleset.Accept},
			Rules: append(append(append([]ruleset.Rule{ct}, first[ruleset.HookPostrouting]...),
				dispatch(4, ruleset.Saddr, MapEgress4),
				dispatch(4, ruleset.Daddr, MapIngress4),
				nd,
				dispatch(6, ruleset.Saddr, MapEgress6),
				dispatch(6, ruleset.Daddr, MapIngress6),
			), extra[ruleset.HookPostrouting]...),
		},
		{
			Name: ChainInput,
			Base: &ruleset.Base{Hook: ruleset.HookInput, Priority: PriorityInput, Policy: ruleset.Accept},
			Rules: append(append(append([]ruleset.Rule{ct}, first[ruleset.HookInput]...),
				dispatch(4, ruleset.Saddr, MapEgress4),
				nd,
				dispatch(6, ruleset.Saddr, MapEgress6),
			), extra[ruleset.HookInput]...),
		},
	}
}

type compiler struct {
	node     string
	cc       *Compiler
	own      map[netip.Addr]*cluster.Pod
	claims   map[netip.Addr][]*cluster.Pod // addresses several pods claim
	selected map[podDir]podSelection       // per pod and direction, see rawSelection
	// strip holds the objects quarantined on the node (budget.go);
	// strippedSel the selections with them stripped.
	strip       map[quarantine.Object]quarantine.Decision
	strippedSel map[podDir]podSelection
	src         Source
	sets        map[string]*ruleset.Set
	peerSets    map[peerFam]*ruleset.Set // the peer sets in sets, by peer key and family
	// pending holds port sets no rule refers to yet (usePortSet).
	pending   map[string]*ruleset.Set
	chain     map[string]*ruleset.Chain
	maps      map[string]*ruleset.Set
	localPods []*cluster.Pod
	// groups caches chain names by direction and policy list.
	groups map[string]string
	// named lists the named-port sets by key; egressNamed those used in egress
	// rules, whose destinations may be any pod of the cluster.
	named       map[namedKey]string
	namedPorts  map[namedKey][]namedPort
	egressNamed []namedKey
	// deciders maps the ids of the log chains made so far to their
	// deciders; logErr is a collision among them (see logged).
	deciders map[string]decider.Decider
	logErr   error
	// limit is the limit object the log rules share (see logLimit).
	limit *ruleset.Limit
	// rec records what the group chain being built registers (see memo.go).
	rec *chainMemo
	// portMatches keeps what portMatch made of each rule's ports.
	portMatches map[portsKey]portsMatched
}

// namedPort is one named port entry of a rule: a name and a protocol.
type namedPort struct {
	name  string
	proto cluster.Protocol
}

// namedKey names a named-port set: the canonical list of a rule's named
// port entries (namedList) and an address family. One set serves every
// rule with the same entries, whatever its peers, so a rule of many peers
// and many named ports is one rule per peer, not one per (peer, name).
type namedKey struct {
	ports  string
	family int
}

// namedList returns the canonical form of sorted, distinct named entries:
// "name/PROTO" joined by commas (a port name holds no comma).
func namedList(named []namedPort) string {
	var b strings.Builder
	for i, n := range named {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n.name + "/" + n.proto.String())
	}
	return b.String()
}

// groupChain returns the name of the chain enforcing direction d on the
// addresses of family fam of pods isolated by exactly the policies in group,
// creating it on first use. The chain holds only rules that can match a
// packet of that family: the dispatch maps are per family, so a packet never
// walks the other family's rules.
//
// chained (ingress only) builds the variant a conflict chain calls: it ends
// an allowed packet with return instead of accept, so that the next
// claimant's chain is asked too.
func (c *compiler) groupChain(d cluster.Direction, group []*cluster.Policy, fam int, chained ...bool) (string, error) {
	ret := len(chained) > 0 && chained[0] && d == cluster.Ingress
	var gk strings.Builder
	fmt.Fprintf(&gk, "%s/%d/%v", d, fam, ret)
	for _, p := range group {
		gk.WriteString("|" + p.Key())
	}
	if c.groups == nil {
		c.groups = map[string]string{}
	}
	if name, ok := c.groups[gk.String()]; ok {
		return name, nil
	}
	if m := c.cc.memoFor(gk.String(), group); m != nil {
		c.replay(m)
		c.groups[gk.String()] = m.name
		return m.name, nil
	}
	c.rec = &chainMemo{policies: slices.Clone(group)}
	defer func() { c.rec = nil }()

	allow := ruleset.Verdict{Kind: ruleset.Accept}
	peerField := ruleset.Saddr
	if d == cluster.Egress || ret {
		allow = ruleset.Verdict{Kind: ruleset.Return}
	}
	if d == cluster.Egress {
		peerField = ruleset.Daddr
	}
	var allows []*ruleset.AllowRule
	seen := map[ruleset.AllowRule]bool{}
	add := func(r *ruleset.AllowRule) {
		// Rules that differ only in their comment are one rule: the first
		// (the first policy rule admitting the packet) is kept.
		k := *r
		k.Comment = ""
		if seen[k] {
			return
		}
		seen[k] = true
		allows = append(allows, r)
	}
	for _, pol := range group {
		for ri, rule := range pol.Rules(d) {
			comment := truncate(fmt.Sprintf("%s %s[%d]", pol.Key(), d, ri))
			allow := c.logged(allow, decider.Decider{Kind: decider.KindNetworkPolicy, Direction: d.String(), Policies: []string{pol.Key()}, Rule: decider.Index(ri)})
			portSet, named, ok := c.portMatch(rule)
			if !ok {
				continue // every port entry was invalid: the rule matches nothing
			}
			type peerMatch struct {
				family int
				set    string
			}
			var peers []peerMatch
			if rule.AllPeers {
				peers = append(peers, peerMatch{})
			}
			for i := range rule.Peers {
				peer := &rule.Peers[i]
				switch peer.Kind {
				case cluster.PeerPods:
					peers = append(peers, peerMatch{fam, c.peerSet(peer, fam)})
				case cluster.PeerIPBlock:
					if family(peer.CIDR.Addr()) == fam {
						peers = append(peers, peerMatch{fam, c.blockSet(peer, fam)})
					}
				default:
					return "", fmt.Errorf("policy %s %s[%d]: peer of unknown kind %d", pol.Key(), d, ri, peer.Kind)
				}
			}
			var namedSets []string
			if len(peers) > 0 {
				namedSets = c.namedSets(named, fam, d, len(peers)) // once a rule, not once a peer
			}
			for _, pm := range peers {
				if portSet != "" || len(named) == 0 {
					c.usePortSet(portSet)
					add(&ruleset.AllowRule{Family: pm.family, PeerField: peerField, PeerSet: pm.set, PortSet: portSet, Verdict: allow, Comment: comment})
				}
				for _, ns := range namedSets {
					add(&ruleset.AllowRule{Family: fam, PeerField: peerField, PeerSet: pm.set, NamedPortSet: ns, Verdict: allow, Comment: comment})
				}
			}
		}
	}
	invalid := c.invalidVerdict(d)
	ordered := c.orderAllows(allows)
	for i, r := range ordered {
		ordered[i] = c.literalPort(r)
	}
	var tail []ruleset.Rule
	if d == cluster.Ingress {
		nt := nodeTraffic()
		if ret {
			nt = &ruleset.FibLocalRule{Verdict: allow, Comment: "traffic from the node itself, e.g. kubelet probes"}
		}
		tail = append(tail, nt)
	}
	deny := c.logged(ruleset.Verdict{Kind: ruleset.Drop}, decider.Decider{Kind: decider.KindNetworkPolicy, Direction: d.String(), Policies: policyKeys(group)})
	tail = append(tail, &ruleset.VerdictRule{Verdict: deny})
	rules := append([]ruleset.Rule{&ruleset.CtRule{States: ruleset.CtInvalid, Verdict: invalid}}, c.portDispatch(d, ordered, tail)...)

	name := c.addChain(d.String()+"-"+chainHash(rules), rules)
	if c.logErr == nil {
		c.rec.name = name
		c.cc.keepMemo(gk.String(), c.rec)
	}
	c.groups[gk.String()] = name
	return name, nil
}

// orderAllows drops the allow rules another rule of the chain makes
// redundant and orders the rest cheapest miss first. Every allow rule of a
// chain has the same verdict and a packet is allowed when any matches, so
// neither changes what the chain allows; both change how many rules and set
// probes the packets that are not allowed (or allowed late) pay for:
//
//   - a rule matching every packet of the family makes all others redundant;
//   - a rule with only a port set (any peer) covers every rule with that port
//     set, a rule with only a peer set (every port) every rule with that peer
//     set, a rule with only a named-port set every rule with that set;
//   - rules that need no address probe come first (one probe of a small set
//     decides them), then rules that probe a small port hash set before their
//     peer, then those whose port set is an interval set, then peer-only
//     rules (a probe of a large set for every packet), then named-port rules
//     (a probe of a large set, often two). Within a class, policy order.
//
// Both rest on every rule sharing one verdict. With allowed logging they do
// not: each policy rule goes to its own decider's log chain, and the first
// matching rule is the one logged. Then the written order is kept (the
// group's policies by key, their rules by index: the order in which explain
// names the first rule that admits a packet), and only the rules after one
// that matches every packet, which no packet reaches, are dropped.
func (c *compiler) orderAllows(in []*ruleset.AllowRule) []*ruleset.AllowRule {
	for _, r := range in {
		if r.Verdict != in[0].Verdict {
			for i, r := range in {
				if r.PeerSet == "" && r.PortSet == "" && r.NamedPortSet == "" {
					return in[:i+1]
				}
			}
			return in
		}
	}
	portOnly, peerOnly, namedOnly := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range in {
		switch {
		case r.PeerSet == "" && r.PortSet == "" && r.NamedPortSet == "":
			return []*ruleset.AllowRule{r}
		case r.PeerSet == "" && r.NamedPortSet == "":
			portOnly[r.PortSet] = true
		case r.PortSet == "" && r.NamedPortSet == "":
			peerOnly[r.PeerSet] = true
		case r.PeerSet == "" && r.PortSet == "":
			namedOnly[r.NamedPortSet] = true
		}
	}
	class := func(r *ruleset.AllowRule) int {
		switch {
		case r.PeerSet == "" && r.NamedPortSet == "":
			return 0
		case r.NamedPortSet != "":
			return 4
		case r.PortSet == "":
			return 3
		case c.sets[r.PortSet].Interval:
			return 2
		}
		return 1
	}
	var out []*ruleset.AllowRule
	for _, r := range in {
		covered := class(r) != 0 && r.PortSet != "" && portOnly[r.PortSet] ||
			r.PeerSet != "" && (r.PortSet != "" || r.NamedPortSet != "") && peerOnly[r.PeerSet] ||
			r.PeerSet != "" && r.NamedPortSet != "" && namedOnly[r.NamedPortSet]
		if !covered {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return class(out[i]) < class(out[j]) })
	return out
}

// nodeTraffic accepts packets whose source address is local to the node:
// traffic the node itself sends to a pod, such as kubelet probes.
func nodeTraffic() ruleset.Rule {
	return &ruleset.FibLocalRule{Verdict: ruleset.Verdict{Kind: ruleset.Accept}, Comment: "traffic from the node itself, e.g. kubelet probes"}
}

// invalidChain returns the chain ingress chains jump to with a packet in
// conntrack state invalid, creating it on first use: node traffic is
// accepted (as at the end of the ingress chain), anything else dropped. Its
// name is a hash of its rules, like a group chain's.
func (c *compiler) invalidChain() string {
	drop := c.logged(ruleset.Verdict{Kind: ruleset.Drop}, decider.Decider{Kind: decider.KindCtInvalid, Direction: cluster.Ingress.String()})
	rules := []ruleset.Rule{nodeTraffic(), &ruleset.VerdictRule{Verdict: drop}}
	return c.addChain("invalid-"+chainHash(rules), rules)
}

// chainHash returns the short content hash that names a regular chain.
func chainHash(rules []ruleset.Rule) string {
	h := sha256.New()
	for _, r := range rules {
		h.Write([]byte(ruleset.RuleText(r) + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// portMatch returns the port set for the numeric entries of rule ("" when the
// rule allows every port or has only named entries) and its named entries.
// ok is false when the rule lists ports but none is valid: it matches nothing.
//
// Entries that are all single ports make a plain hash set (dports-…), whose
// lookup is a hash probe; only a range or a protocol-wide entry makes an
// interval set (ports-…), which the kernel keeps in its slower pipapo
// backend. The prefixes differ so that a set never changes flags under one
// name (the kernel cannot change a set's flags; that would force a rebuild).
func (c *compiler) portMatch(rule cluster.Rule) (set string, named []namedPort, ok bool) {
	if rule.AllPorts {
		return "", nil, true
	}
	if len(rule.Ports) == 0 {
		return "", nil, false
	}
	// The count and the build ask for each rule's ports: matched once.
	k := portsKey{&rule.Ports[0], len(rule.Ports)}
	m, done := c.portMatches[k]
	if !done {
		m.set, m.named, m.ok = c.matchPorts(rule.Ports)
		if c.portMatches == nil {
			c.portMatches = map[portsKey]portsMatched{}
		}
		c.portMatches[k] = m
	}
	if m.set == nil {
		return "", m.named, m.ok
	}
	if _, exists := c.sets[m.set.Name]; !exists {
		c.pending[m.set.Name] = m.set
	}
	return m.set.Name, m.named, m.ok
}

// portsKey names a rule's ports by their place in its policy, which no
// other value has while the Source holds the policy (a compile).
type portsKey struct {
	first *cluster.Port
	n     int
}

// portsMatched is what portMatch made of a rule's ports: the set of its
// numbered ports (nil without), its named ports.
type portsMatched struct {
	set   *ruleset.Set
	named []namedPort
	ok    bool
}

// matchPorts makes the port set and the named entries of ports (portMatch).
func (c *compiler) matchPorts(ports []cluster.Port) (set *ruleset.Set, named []namedPort, ok bool) {
	var elems []ruleset.Element
	interval := false
	for _, pt := range ports {
		switch {
		case pt.Protocol == cluster.ProtocolInvalid:
			continue
		case pt.Name != "":
			named = append(named, namedPort{name: pt.Name, proto: pt.Protocol})
		case pt.Port == 0:
			elems = append(elems, ruleset.Element{Proto: uint8(pt.Protocol), Port: 0, PortEnd: 65535})
			interval = true
		default:
			elems = append(elems, ruleset.Element{Proto: uint8(pt.Protocol), Port: uint16(pt.Port), PortEnd: uint16(pt.EndPort)})
			interval = interval || pt.EndPort != pt.Port
		}
	}
	sort.Slice(named, func(i, j int) bool {
		if named[i].name != named[j].name {
			return named[i].name < named[j].name
		}
		return named[i].proto < named[j].proto
	})
	named = slices.Compact(named)
	if len(elems) == 0 {
		return nil, named, len(named) > 0
	}
	prefix := "dports-"
	if interval {
		elems = mergePortRanges(elems)
		prefix = "ports-"
	} else {
		// Single ports: sort, then drop repeats.
		sort.Slice(elems, func(i, j int) bool { return elems[i].Less(elems[j]) })
		elems = slices.Compact(elems)
	}
	s := &ruleset.Set{Key: ruleset.KeyProtoPort, Interval: interval, Elements: elems}
	keys := make([]string, len(elems))
	for i, e := range elems {
		keys[i] = s.ElementKey(e)
	}
	// The hash covers the keys each followed by a comma, as it always has:
	// a new name would make every node rebuild its port sets on upgrade.
	s.Name = prefix + shortHash(strings.Join(keys, ",")+",")
	s.Comment = truncate(strings.Join(keys, ","))
	return s, named, true
}

// literalPort returns r with its port set written as a literal port when
// the set holds one protocol and port: two comparisons instead of a hash
// lookup on every packet the rule sees. The set stays in c.sets until
// dropUnusedPortSets finds no rule naming it.
func (c *compiler) literalPort(r *ruleset.AllowRule) *ruleset.AllowRule {
	s := c.sets[r.PortSet]
	if r.PortSet == "" || s == nil || s.Interval || s.Len() != 1 {
		return r
	}
	e := s.At(0)
	if e.PortEnd != e.Port && e.PortEnd != 0 {
		return r
	}
	lit := *r
	lit.PortSet, lit.Proto, lit.Port = "", e.Proto, e.Port
	return &lit
}

// dropUnusedPortSets removes the port sets no rule of the ruleset names
// (every rule that used them got a literal port).
func dropUnusedPortSets(rs *ruleset.Ruleset) {
	used := map[string]bool{}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			for _, n := range r.SetRefs() {
				used[n] = true
			}
		}
	}
	rs.Sets = slices.DeleteFunc(rs.Sets, func(s *ruleset.Set) bool { return s.Key == ruleset.KeyProtoPort && !used[s.Name] })
}

// usePortSet moves a port set portMatch made into the ruleset: only once a
// rule refers to it, so that a rule that ends up emitting nothing (every
// peer invalid, or only peers of the other family) leaves no unused set.
func (c *compiler) usePortSet(name string) {
	if s, ok := c.pending[name]; ok {
		c.sets[name] = s
		delete(c.pending, name)
	}
	if s, ok := c.sets[name]; ok && c.rec != nil {
		c.rec.sets = append(c.rec.sets, s)
	}
}

// mergePortRanges sorts elements and merges overlapping or adjacent ranges of
// one protocol: the kernel rejects overlapping intervals.
func mergePortRanges(in []ruleset.Element) []ruleset.Element {
	sort.Slice(in, func(i, j int) bool { return in[i].Less(in[j]) })
	var out []ruleset.Element
	for _, e := range in {
		if n := len(out); n > 0 && out[n-1].Proto == e.Proto && uint32(e.Port) <= uint32(out[n-1].PortEnd)+1 {
			if e.PortEnd > out[n-1].PortEnd {
				out[n-1].PortEnd = e.PortEnd
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// peerSet returns the set of addresses of family fam that a pod peer selects.
func (c *compiler) peerSet(peer *cluster.Peer, fam int) string {
	if c.rec != nil {
		c.rec.peers = append(c.rec.peers, peerUse{peer, fam})
	}
	k := peerFam{peer.Key, fam}
	if s, ok := c.peerSets[k]; ok {
		return s.Name
	}
	e := c.cc.cachedPeer(c.src, peer, fam, c.own, c.claims)
	s := &ruleset.Set{Name: e.name, Key: ruleset.AddrKey(fam), Comment: truncate(peer.Key), Addrs: e.addrs}
	c.sets[s.Name] = s
	c.peerSets[k] = s
	return s.Name
}

// podPeerAddrs returns the (cached) addresses of family fam of the pods a
// pods peer selects: what its peer set holds.
func (c *compiler) podPeerAddrs(peer *cluster.Peer, fam int) ruleset.AddrList {
	if s, ok := c.peerSets[peerFam{peer.Key, fam}]; ok {
		return s.Addrs
	}
	return c.cc.cachedPeer(c.src, peer, fam, c.own, c.claims).addrs
}

// blockSet returns the interval set holding an ipBlock's CIDR minus excepts.
func (c *compiler) blockSet(peer *cluster.Peer, fam int) string {
	name := fmt.Sprintf("cidr%d-%s", fam, shortHash(peer.Key))
	s, ok := c.sets[name]
	if !ok {
		s = &ruleset.Set{Name: name, Key: ruleset.AddrKey(fam), Interval: true, Comment: truncate(peer.Key)}
		for _, r := range subtractPrefixes(peer.CIDR, peer.Except) {
			s.Elements = append(s.Elements, ruleset.Element{Addr: r[0], AddrEnd: r[1]})
		}
		c.sets[name] = s
	}
	if c.rec != nil {
		c.rec.sets = append(c.rec.sets, s)
	}
	return name
}

// subtractPrefixes returns the inclusive address ranges of cidr minus excepts,
// sorted and disjoint. Excepts are inside cidr (checked by package cluster);
// they may overlap or nest. One sort and one sweep: n log n in the number of
// excepts (a tenant can write tens of thousands).
func subtractPrefixes(cidr netip.Prefix, excepts []netip.Prefix) [][2]netip.Addr {
	lo, hi := cidr.Masked().Addr(), ruleset.LastAddr(cidr)
	ex := make([][2]netip.Addr, 0, len(excepts))
	for _, e := range excepts {
		if !e.Addr().IsValid() || e.Addr().Is4() != lo.Is4() {
			continue
		}
		ex = append(ex, [2]netip.Addr{e.Masked().Addr(), ruleset.LastAddr(e)})
	}
	slices.SortFunc(ex, func(a, b [2]netip.Addr) int { return a[0].Compare(b[0]) })
	var out [][2]netip.Addr
	next := lo // the first address not yet emitted or excluded
	for _, e := range ex {
		if e[1].Less(next) {
			continue // inside what an earlier except removed
		}
		if hi.Less(e[0]) {
			break
		}
		if next.Less(e[0]) {
			out = append(out, [2]netip.Addr{next, e[0].Prev()})
		}
		if !e[1].Less(hi) {
			return out // the except reaches the end of cidr
		}
		next = e[1].Next()
	}
	return append(out, [2]netip.Addr{next, hi})
}

// maxNamedRules is the most allow rules a rule's named ports may make, one
// per (peer, named port), each with a named-port set of one name (shared
// by every rule naming it). A rule of more peers by more named ports gets
// one set of all its names instead, and one rule per peer: its rules then
// grow with its peers plus its names, not with their product (thousands of
// each made millions of rules).
const maxNamedRules = 16

// namedSets returns the named-port sets a rule of peers peers and the named
// entries named uses (none without named entries): one set per entry, or
// one of them all (maxNamedRules).
func (c *compiler) namedSets(named []namedPort, fam int, d cluster.Direction, peers int) []string {
	if len(named) == 0 {
		return nil
	}
	if len(named) == 1 || peers*len(named) > maxNamedRules {
		return []string{c.namedSet(named, fam, d)}
	}
	out := make([]string, len(named))
	for i := range named {
		out[i] = c.namedSet(named[i:i+1], fam, d)
	}
	return out
}

// namedSet returns the set of (address . protocol . port) triples that the
// named entries of one rule resolve to, for family fam, creating it empty;
// fillNamedSets fills it once every use is known. A set of one entry keeps
// the name it always had.
func (c *compiler) namedSet(named []namedPort, fam int, d cluster.Direction) string {
	k := namedKey{ports: namedList(named), family: fam}
	if c.rec != nil {
		c.rec.named = append(c.rec.named, namedUse{k, named, d})
	}
	if c.named == nil {
		c.named = map[namedKey]string{}
		c.namedPorts = map[namedKey][]namedPort{}
	}
	name, ok := c.named[k]
	if !ok {
		name = fmt.Sprintf("named%d-%s", fam, shortHash(k.ports))
		c.named[k] = name
		c.namedPorts[k] = named
		what := make([]string, len(named))
		for i, n := range named {
			what[i] = n.proto.String() + "/" + n.name
		}
		c.sets[name] = &ruleset.Set{Name: name, Key: ruleset.AddrProtoPortKey(fam), Comment: truncate("named port " + strings.Join(what, ", "))}
	}
	if d == cluster.Egress {
		c.egressNamed = append(c.egressNamed, k)
	}
	return name
}

// resolveNamed appends to out the protocol and port each of named resolves
// to on p, sorted and without repeats.
func resolveNamed(out []portPoint, p *cluster.Pod, named []namedPort) []portPoint {
	start := len(out)
	for _, n := range named {
		if port, ok := p.ResolvePort(n.name, n.proto); ok {
			out = append(out, portPoint{uint8(n.proto), uint16(port)})
		}
	}
	pts := out[start:]
	if len(pts) > 1 {
		slices.SortFunc(pts, comparePoints)
		out = out[:start+len(slices.Compact(pts))]
	}
	return out
}

// fillNamedSets resolves every named-port set on the pods that declare the
// ports. Sets used only for ingress need only this node's pods (the
// destination is always local); sets used for egress need every pod.
func (c *compiler) fillNamedSets(egress []namedKey) {
	wide := map[namedKey]bool{}
	for _, k := range egress {
		wide[k] = true
	}
	var byAddr map[int][]ownedAddr
	var pts []portPoint
	for k, name := range c.named {
		s := c.sets[name]
		named := c.namedPorts[k]
		add := func(addr netip.Addr, pts []portPoint) {
			for _, pt := range pts {
				s.Elements = append(s.Elements, ruleset.Element{Addr: addr, Proto: pt.proto, Port: pt.port, PortEnd: pt.port})
			}
		}
		if wide[k] {
			// Every pod: walked in address order, so that the elements come
			// out sorted (Ruleset.Sort then leaves them as they are).
			if byAddr == nil {
				byAddr = c.ownedByAddr()
			}
			for _, o := range byAddr[k.family] {
				pts = resolveNamed(pts[:0], o.pod, named)
				add(o.addr, pts)
			}
		} else {
			for _, p := range c.localPods {
				if p.HostNetwork {
					continue
				}
				if ip, ok := p.IP(k.family); ok && c.own[ip] == p {
					pts = resolveNamed(pts[:0], p, named)
					add(ip, pts)
				}
			}
		}
		// An address several pods claim resolves a name only when every
		// claimant resolves it to the same port. Ingress-only sets need it
		// only where a claimant is local.
		for _, ip := range slices.SortedFunc(maps.Keys(c.claims), netip.Addr.Compare) {
			cl := c.claims[ip]
			if family(ip) != k.family || (!wide[k] && !c.hasLocal(cl)) {
				continue
			}
			pts = pts[:0]
			for _, n := range named {
				port, ok := cl[0].ResolvePort(n.name, n.proto)
				for _, p := range cl[1:] {
					other, found := p.ResolvePort(n.name, n.proto)
					ok = ok && found && other == port
				}
				if ok {
					pts = append(pts, portPoint{uint8(n.proto), uint16(port)})
				}
			}
			slices.SortFunc(pts, comparePoints)
			add(ip, slices.Compact(pts))
		}
	}
}

// ownedByAddr returns ownedByAddr(c.own), kept in the Compiler with the
// pods it was made from and patched on the next compile for the pods that
// changed, while the addresses several pods claim stay the same: then an
// address changes owner only with the pods that hold it.
func (c *compiler) ownedByAddr() map[int][]ownedAddr {
	m := &c.cc.owned
	pods := c.src.Pods()
	if m.lists != nil && m.conflict == c.cc.conflict {
		if gone, came, ok := podChanges(m.pods, pods); ok && m.patch(gone, came, c.own) {
			m.pods = append(m.pods[:0], pods...)
			return m.lists
		}
	}
	m.lists, m.conflict = ownedByAddr(c.own), c.cc.conflict
	m.pods = append(m.pods[:0], pods...)
	return m.lists
}

// ownedMemo is the Compiler's ownedByAddr: the lists, the pods and the
// contested addresses' fingerprint they were made for.
type ownedMemo struct {
	pods     []*cluster.Pod
	conflict string
	lists    map[int][]ownedAddr
}

// patch takes out the addresses the pods of gone owned and puts in those
// the pods of came own now; it reports false (the lists are then to be
// made again) if it finds them inconsistent.
func (m *ownedMemo) patch(gone, came []*cluster.Pod, own map[netip.Addr]*cluster.Pod) bool {
	find := func(a netip.Addr) (int, bool) {
		return slices.BinarySearchFunc(m.lists[family(a)], a, func(o ownedAddr, a netip.Addr) int { return o.addr.Compare(a) })
	}
	for _, p := range gone {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if i, ok := find(a); ok && m.lists[family(a)][i].pod == p {
				m.lists[family(a)] = slices.Delete(m.lists[family(a)], i, i+1)
			}
		}
	}
	for _, p := range came {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if own[a] != p {
				continue
			}
			i, ok := find(a)
			if ok {
				return false // another pod's still: not what the claims say
			}
			m.lists[family(a)] = slices.Insert(m.lists[family(a)], i, ownedAddr{a, p})
		}
	}
	return true
}

// ownedAddr is an address and the pod that owns it.
type ownedAddr struct {
	addr netip.Addr
	pod  *cluster.Pod
}

// ownedByAddr returns the addresses that have an owner, by family, sorted.
// IPv4 addresses are sorted as integers (the address above the position of
// its entry), several times faster than comparing netip.Addrs.
func ownedByAddr(own map[netip.Addr]*cluster.Pod) map[int][]ownedAddr {
	var v4 []ownedAddr
	var keys []uint64
	var v6 []ownedAddr
	for a, p := range own {
		switch {
		case p == nil:
		case a.Is4():
			b := a.As4()
			keys = append(keys, uint64(binary.BigEndian.Uint32(b[:]))<<32|uint64(len(v4)))
			v4 = append(v4, ownedAddr{a, p})
		default:
			v6 = append(v6, ownedAddr{a, p})
		}
	}
	slices.Sort(keys)
	sorted4 := make([]ownedAddr, len(v4))
	for i, k := range keys {
		sorted4[i] = v4[uint32(k)]
	}
	slices.SortFunc(v6, func(x, y ownedAddr) int { return x.addr.Compare(y.addr) })
	return map[int][]ownedAddr{4: sorted4, 6: v6}
}

// hasLocal reports whether one of pods runs on the node being compiled.
func (c *compiler) hasLocal(pods []*cluster.Pod) bool {
	return slices.ContainsFunc(pods, func(p *cluster.Pod) bool { return p.NodeName == c.node })
}

// conflictEntries dispatches the addresses several pods claim, on every node
// where one of the claimants runs, to a chain that asks each claimant's
// group chain in turn: the packet passes only if every claimant's policies
// allow it (the strictest of them), so a pod taking another's address never
// lifts its isolation. A claimant no policy isolates in a direction allows
// everything there and is skipped; if none is isolated, the address has no
// entry. The model (policy/model) judges such an address the same way.
func (c *compiler) conflictEntries() error {
	for _, ip := range slices.SortedFunc(maps.Keys(c.claims), netip.Addr.Compare) {
		cl := c.claims[ip]
		if !c.hasLocal(cl) {
			continue
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			var rules []ruleset.Rule
			var who []string
			for _, p := range cl {
				name, err := c.podChain(d, p, family(ip), true)
				if err != nil {
					return err
				}
				if name == "" {
					continue
				}
				who = append(who, p.Key())
				rules = append(rules, &ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: name}, Comment: truncate(p.Key())})
			}
			if len(rules) == 0 {
				continue
			}
			final := ruleset.Verdict{Kind: ruleset.Return}
			if d == cluster.Ingress {
				final = ruleset.Verdict{Kind: ruleset.Accept}
			}
			rules = append(rules, &ruleset.VerdictRule{Verdict: final, Comment: truncate("address claimed by " + strings.Join(who, ", ") + ": allowed by each")})
			name := d.String() + "-claims-" + chainHash(rules)
			if _, ok := c.chain[name]; !ok {
				c.chain[name] = &ruleset.Chain{Name: name, Rules: rules}
			}
			m := c.maps[dispatchMap(d, ip)]
			m.Elements = append(m.Elements, ruleset.Element{Addr: ip, Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: name}})
		}
	}
	return nil
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:16]
}

func truncate(s string) string {
	if len(s) <= maxCommentLen {
		return s
	}
	return s[:maxCommentLen-3] + "..."
}
