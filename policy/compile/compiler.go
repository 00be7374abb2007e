package compile

import (
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
)

// Options tunes what Compile emits besides the policies themselves.
type Options struct {
	// Log chooses the verdicts the table counts and logs (none by default).
	Log LogOptions
	// PodNetwork lists the pod network's CIDRs (the cluster CIDR, or this
	// node's pod CIDRs). When set, a packet from or to an address inside them
	// that no known pod holds is dropped: a pod the API server has not yet
	// reported (its address, its labels) gets no traffic until policyd knows
	// which policies apply to it. Without it, such a pod is unpoliced from the
	// moment its address is live until the next sync commits.
	PodNetwork []netip.Prefix
	// PodNetworkExempt lists ranges inside the pod network that are never
	// a pod's: addresses a CNI gives its nodes that their Node objects do
	// not publish. The pod network's closing leaves them alone, as it
	// does every Node's own and gateway addresses (cluster.Node.IPs and
	// Gateways), which it takes from the Source.
	PodNetworkExempt []netip.Prefix
	// FlowMark, when not zero, is the conntrack mark bit (or bits) the
	// table ORs into every connection to or from a pod of this node when
	// it judges the connection's first packet, and it drops a TCP
	// connection's first packet without SYN (a mid-stream pickup) to or
	// from such a pod. Strict mode (the agent's --cut-established) dumps
	// the marked connections and ends those the table would no longer
	// admit; dropping pickups keeps a cut connection from being revived
	// from its other end.
	FlowMark uint32
	// CutMark, when not zero, is the conntrack mark bit strict mode sets on
	// the connections it cuts without deleting them (UDP, SCTP): the first
	// rule of each base chain drops every packet of such a connection,
	// before the established rule accepts it (ruleset.CutMarkRule).
	CutMark uint32
	// Budget bounds what one object and the node's whole table may cost
	// (budget.go); objects over it are quarantined. The zero Budget
	// bounds nothing.
	Budget Budget
	// Quarantine imposes decisions made elsewhere (the agent's, when the
	// kernel refused a batch an object produced); those of the node
	// compiled apply, besides the budget's.
	Quarantine *quarantine.Set
}

// Names of the sets the pod-network option adds.
const (
	SetPodNetwork4 = "podnet4"
	SetPodNetwork6 = "podnet6"
	SetKnownPods4  = "known4"
	SetKnownPods6  = "known6"
	// The FlowMark option's sets: the addresses of this node's pods.
	SetLocalPods4 = "local4"
	SetLocalPods6 = "local6"
)

// Compiler compiles one node's ruleset again and again, as the agent does on
// every sync, reusing what did not change: the addresses of peer sets
// whose pods did not change (and of the namespaces of a large peer that did
// not), the group chains whose policies did not (memo.go), who owns each
// address, patched for the pods that changed, and the budget's count of what
// did not change (budget.go). Its output is
// exactly what Compile returns for the same input; only the time differs.
// It keeps only what the last compile used. A Compiler is not safe for
// concurrent use.
type Compiler struct {
	Options Options

	// peers caches the elements of peer sets, keyed by peer and family; an
	// entry is valid while the peer's version (Source.PeerVersion) holds and
	// address ownership has not changed.
	peers map[peerFam]*cachedSet
	// parts caches the addresses of the parts of peers (Source.EachPeerPart)
	// by part version and family, for rebuilding a peer set whose version
	// changed from the parts that did not. A part lives while a cached peer
	// set built from it does.
	parts map[partKey]cachedPart
	gen   uint64 // counts compiles: cachedSet.used, chainMemo.used
	// chains keeps the group chains made, by group key (see memo.go).
	chains map[string]*chainMemo
	// patches counts the peer sets patched from the parts that changed
	// (tests check the path is taken).
	patches  int
	conflict string // fingerprint of addresses claimed by several pods
	claims   []Conflict
	// nodeConflict and nodeClaims are the same for Nodes' addresses (see
	// nodeConflicts).
	nodeConflict string
	nodeClaims   []Conflict
	// quarantined are the last compile's quarantine decisions, lastCost
	// its count (budget.go); strippedNP and strippedCNP the stripped forms
	// of the objects quarantined, kept for as long as they are.
	quarantined []quarantine.Decision
	lastCost    Cost
	// selectNP and selectCNP are the objects that select a pod of the
	// node (Objects).
	selectNP  map[*cluster.Policy]bool
	selectCNP map[*cluster.ClusterPolicy]bool
	// shapes and groupCosts are the count's memos (budget.go).
	shapes      map[shapeKey]*policyShape
	groupCosts  map[string]*groupCostMemo
	declared    declaredPods
	counts      uint64   // the counts made (tally.serial)
	sets        setTable // the sets counts refer to
	policyParts map[*cluster.Policy]*policyPart
	groupUses   map[string]*groupUse // by group key (counter.group)
	owned       ownedMemo            // see compiler.ownedByAddr
	owning      ownersMemo           // see Compiler.owners
	strippedNP  map[*cluster.Policy]*cluster.Policy
	strippedCNP map[*cluster.ClusterPolicy]*cluster.ClusterPolicy
}

// Conflict is an address that two or more (non-hostNetwork, non-terminal)
// pods claim, or that a Node claims beside a pod or another Node. An
// address several pods claim is policed as the strictest of them; one a
// pod and Nodes claim is the pod's (no nodes peer matches it); one several
// Nodes claim matches a nodes peer of an Accept or Pass rule only when it
// selects every one of them, of a Deny rule when it selects any.
type Conflict struct {
	Addr netip.Addr
	// Pods are the claimants' keys, sorted.
	Pods []string
	// Nodes are the names of the Nodes whose status.addresses list the
	// address, sorted; set only when a Node is a claimant.
	Nodes []string
}

// Conflicts returns the address conflicts of the last Compile, sorted by
// address: those among pods, then those involving Nodes.
func (c *Compiler) Conflicts() []Conflict {
	if len(c.nodeClaims) == 0 {
		return c.claims
	}
	return append(slices.Clone(c.claims), c.nodeClaims...)
}

// ConflictsFingerprint changes whenever the set of conflicts does.
func (c *Compiler) ConflictsFingerprint() string {
	if c.nodeConflict == "" {
		return c.conflict
	}
	return c.conflict + "|nodes:" + c.nodeConflict
}

// peerFam names a peer set: the peer's key and the family of its addresses.
type peerFam struct {
	key    string // cluster.Peer.Key
	family int
}

type partKey struct {
	version uint64
	family  int
}

type cachedSet struct {
	name    string // of the set: peerSetName
	version uint64 // Source.PeerVersion
	addrs   ruleset.AddrList
	parts   []partKey // what addrs was merged from, when merged
	merged  bool      // addrs is the union of parts
	used    uint64    // the last compile (Compiler.gen) that used it
}

type cachedPart struct {
	addrs ruleset.AddrList
	refs  int // cached peer sets built from it
}

// Compile is Compile with the Compiler's options and cache.
func (c *Compiler) Compile(src Source, node string) (*ruleset.Ruleset, error) {
	c.gen++
	defer c.endCompile()
	return compileWith(src, node, c)
}

// Compile returns the Ruleset that enforces src's policies for the pods of
// node. It fails only on an internal inconsistency; invalid policies have been
// made fail-closed by package cluster already.
func Compile(src Source, node string) (*ruleset.Ruleset, error) {
	return compileWith(src, node, &Compiler{})
}

// owners resolves which pod owns each address: its only (non-hostNetwork)
// holder. An address two or more pods claim has no owner: own maps it to
// nil (it is still a known pod address), and claims lists its claimants in
// key order; it is policed as the strictest of them (see conflictChain).
// The fingerprint names every contested address and its claimants, so it
// changes whenever ownership can.
func owners(pods []*cluster.Pod) (own map[netip.Addr]*cluster.Pod, claims map[netip.Addr][]*cluster.Pod, fingerprint string) {
	own = make(map[netip.Addr]*cluster.Pod, len(pods))
	for _, p := range pods {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			cur, ok := own[a]
			switch {
			case !ok:
				own[a] = p
			case cur != nil:
				own[a] = nil
				claims = addClaim(claims, a, cur, p)
			default:
				claims = addClaim(claims, a, p)
			}
		}
	}
	var contested []string
	for a, cl := range claims {
		sort.Slice(cl, func(i, j int) bool { return cl[i].Key() < cl[j].Key() })
		keys := make([]string, len(cl))
		for i, p := range cl {
			keys[i] = p.Key()
		}
		contested = append(contested, a.String()+"="+strings.Join(keys, "+"))
	}
	sort.Strings(contested)
	return own, claims, strings.Join(contested, ",")
}

// owners is owners(pods), kept with the pods it was made from and patched
// on the next compile for the pod values only the old or the new list
// holds, when none of them holds an address two pods claim or claims one
// another pod holds (then the claims stay the same). The result must not
// be modified; it is the Compiler's until its next compile.
func (c *Compiler) owners(pods []*cluster.Pod) (own map[netip.Addr]*cluster.Pod, claims map[netip.Addr][]*cluster.Pod, fingerprint string) {
	m := &c.owning
	if m.own != nil {
		if gone, came, ok := podChanges(m.pods, pods); ok && m.patch(gone, came) {
			m.pods = append(m.pods[:0], pods...)
			return m.own, m.claims, m.fingerprint
		}
	}
	m.own, m.claims, m.fingerprint = owners(pods)
	m.pods = append(m.pods[:0], pods...)
	return m.own, m.claims, m.fingerprint
}

// ownersMemo is the Compiler's owners: its result and the pods it is of.
type ownersMemo struct {
	pods        []*cluster.Pod
	own         map[netip.Addr]*cluster.Pod
	claims      map[netip.Addr][]*cluster.Pod
	fingerprint string
}

// patch takes out the addresses of the pods of gone and puts in those of
// came. It reports false, leaving own to be made again, when one of them
// holds an address that is contested or (for came) held already.
func (m *ownersMemo) patch(gone, came []*cluster.Pod) bool {
	for _, p := range gone {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if m.own[a] != p {
				return false
			}
			delete(m.own, a)
		}
	}
	for _, p := range came {
		if p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if _, held := m.own[a]; held {
				return false
			}
			m.own[a] = p
		}
	}
	return true
}

func addClaim(claims map[netip.Addr][]*cluster.Pod, a netip.Addr, pods ...*cluster.Pod) map[netip.Addr][]*cluster.Pod {
	if claims == nil {
		claims = map[netip.Addr][]*cluster.Pod{}
	}
	claims[a] = append(claims[a], pods...)
	return claims
}

// cachedPeer returns the name and the addresses of the peer set of family
// fam of peer (the addresses of that family of the pods peer selects),
// reusing the last result while the peer's version holds.
//
// An address several pods claim is in the set only when the peer selects
// every claimant.
func (c *Compiler) cachedPeer(src Source, peer *cluster.Peer, fam int, own map[netip.Addr]*cluster.Pod, claims map[netip.Addr][]*cluster.Pod) *cachedSet {
	k := peerFam{peer.Key, fam}
	version := src.PeerVersion(peer)
	e := c.peers[k]
	if e != nil && e.version == version {
		e.used = c.gen
		return e
	}
	next := &cachedSet{version: version, used: c.gen}
	if e != nil {
		next.name = e.name
	} else {
		next.name = peerSetName(peer, fam)
	}
	if len(claims) == 0 {
		var parts []peerPart
		src.EachPeerPart(peer, func(version uint64, pods iter.Seq[*cluster.Pod]) {
			parts = append(parts, peerPart{version, pods})
		})
		switch {
		case len(parts) < minCachedParts:
			next.addrs = partAddrs(fam, parts...)
		case e != nil && !e.merged:
			// Too small to keep parts for last time: rebuilt whole, and
			// its parts cached if it has grown.
			next.addrs = partAddrs(fam, parts...)
			if worthParts(next.addrs, len(parts)) {
				next.parts, next.merged = c.takeParts(parts, fam), true
			}
		default:
			keys := c.takeParts(parts, fam)
			next.addrs = c.mergeParts(e, keys, fam)
			if worthParts(next.addrs, len(keys)) {
				next.parts, next.merged = keys, true
			} else {
				c.release(keys) // parts too small to be worth their keep
			}
		}
	} else {
		next.addrs = peerAddrs(src, peer, fam, own, claims)
	}
	if e != nil {
		c.release(e.parts) // after takeParts took the parts it shares with e
	}
	if c.peers == nil {
		c.peers = map[peerFam]*cachedSet{}
	}
	c.peers[k] = next
	return next
}

// peerSetName is the name of the set of addresses of family fam of the pods
// peer selects.
func peerSetName(peer *cluster.Peer, fam int) string {
	return fmt.Sprintf("peer%d-%s", fam, shortHash(peer.Key))
}

// minCachedParts is the fewest parts a peer set needs for its parts to be
// cached (and the set patched when some change): a peer of fewer parts,
// the common case of a peer in its policy's own namespace, is rebuilt
// whole, which costs no more than patching it and keeps no second copy of
// its addresses.
const minCachedParts = 4

// minPartAddrs is the fewest addresses a part of a peer set must hold on
// average for the set's parts to stay cached: each cached part costs about
// 70 bytes besides its addresses, and a peer of many small parts (a few
// pods in each of hundreds of namespaces) is cheap to rebuild whole. At
// 50,000 pods this keeps about 40% of the parts (and 75% of the addresses
// that parts hold), about 5 MB less.
const minPartAddrs = 16

// worthParts reports whether a peer set of addrs in n parts keeps its
// parts cached (minPartAddrs).
func worthParts(addrs ruleset.AddrList, n int) bool { return addrs.Len() >= minPartAddrs*n }

// peerPart is one part of the pods a peer selects (Source.EachPeerPart).
type peerPart struct {
	version uint64
	pods    iter.Seq[*cluster.Pod]
}

// partAddrs returns the addresses of family fam of the pods of parts, which
// own their addresses when no address is contested.
func partAddrs(fam int, parts ...peerPart) ruleset.AddrList {
	var addrs []netip.Addr
	for _, part := range parts {
		for p := range part.pods {
			if ip, ok := p.IP(fam); ok {
				addrs = append(addrs, ip)
			}
		}
	}
	l, _ := ruleset.PackAddrs(fam, addrs) // p.IP(fam) is of family fam
	return l
}

// takeParts returns the keys of parts for family fam, each with one more
// reference, caching the addresses of the parts not cached yet.
func (c *Compiler) takeParts(parts []peerPart, fam int) []partKey {
	if c.parts == nil {
		c.parts = map[partKey]cachedPart{}
	}
	keys := make([]partKey, 0, len(parts))
	for _, part := range parts {
		k := partKey{part.version, fam}
		cp, ok := c.parts[k]
		if !ok {
			cp.addrs = partAddrs(fam, part)
		}
		cp.refs++
		c.parts[k] = cp
		keys = append(keys, k)
	}
	return keys
}

// mergeParts returns the union of the addresses of parts. When most parts
// are those of prev, a set merged from its own parts, it patches prev's
// addresses (out with the parts gone, in with the new ones) instead of
// merging every part again.
func (c *Compiler) mergeParts(prev *cachedSet, parts []partKey, fam int) ruleset.AddrList {
	lists := func(keys []partKey) []ruleset.AddrList {
		out := make([]ruleset.AddrList, 0, len(keys))
		for _, k := range keys {
			if l := c.parts[k].addrs; l.Len() > 0 {
				out = append(out, l)
			}
		}
		return out
	}
	if prev != nil && prev.merged {
		had := make(map[partKey]bool, len(prev.parts))
		for _, k := range prev.parts {
			had[k] = true
		}
		var added []partKey
		for _, k := range parts {
			if had[k] {
				delete(had, k)
			} else {
				added = append(added, k)
			}
		}
		if 2*(len(added)+len(had)) <= len(parts) {
			gone := slices.Collect(maps.Keys(had))
			remove, _ := ruleset.MergeAddrs(fam, lists(gone))
			add, _ := ruleset.MergeAddrs(fam, lists(added))
			patched, _ := ruleset.PatchAddrs(prev.addrs, remove, add) // every list is of family fam
			c.patches++
			return patched
		}
	}
	merged, _ := ruleset.MergeAddrs(fam, lists(parts)) // every list is of family fam
	return merged
}

// release drops a reference to each of parts, and the parts left without.
func (c *Compiler) release(parts []partKey) {
	for _, k := range parts {
		if cp, ok := c.parts[k]; ok {
			if cp.refs--; cp.refs <= 0 {
				delete(c.parts, k)
			} else {
				c.parts[k] = cp
			}
		}
	}
}

// endCompile forgets the group chains and peer sets the compile just
// finished did not use (their policies or peers are gone, or no local pod
// needs them now), and the parts only those sets held.
func (c *Compiler) endCompile() {
	for k, m := range c.chains {
		if m.used != c.gen {
			delete(c.chains, k)
		}
	}
	for k, e := range c.peers {
		if e.used != c.gen {
			c.release(e.parts)
			delete(c.peers, k)
		}
	}
}

// peerAddrs returns the addresses of family fam of the pods peer selects,
// with contested addresses in claims: each is in the list only when peer
// selects every one of its claimants.
func peerAddrs(src Source, peer *cluster.Peer, fam int, own map[netip.Addr]*cluster.Pod, claims map[netip.Addr][]*cluster.Pod) ruleset.AddrList {
	var addrs []netip.Addr
	var selected map[netip.Addr]int // claimants of a contested address the peer selects
	src.EachPeerPod(peer, func(p *cluster.Pod) {
		ip, ok := p.IP(fam)
		if !ok {
			return
		}
		if own[ip] == p {
			addrs = append(addrs, ip)
			return
		}
		if cl := claims[ip]; len(cl) > 1 {
			if selected == nil {
				selected = map[netip.Addr]int{}
			}
			selected[ip]++
			if selected[ip] == len(cl) {
				addrs = append(addrs, ip)
			}
		}
	})
	slices.SortFunc(addrs, netip.Addr.Compare)
	list, _ := ruleset.PackAddrs(fam, addrs) // p.IP(fam) is of family fam
	return list
}

// resetIfOwnershipChanged drops the cache when the contested addresses
// changed: a cached set may hold an address whose owner is now another pod.
func (c *Compiler) resetIfOwnershipChanged(fingerprint string, claims map[netip.Addr][]*cluster.Pod) {
	if fingerprint == c.conflict {
		return
	}
	c.peers, c.parts = nil, nil
	c.conflict = fingerprint
	c.claims = nil
	for _, a := range slices.SortedFunc(maps.Keys(claims), netip.Addr.Compare) {
		cf := Conflict{Addr: a}
		for _, p := range claims[a] {
			cf.Pods = append(cf.Pods, p.Key())
		}
		c.claims = append(c.claims, cf)
	}
}

// podNetworkSets returns the sets and base-chain rules of Options.PodNetwork:
// the pod network as interval sets, and every address in it that is known
// not to be an unknown pod's: every pod address, every Node's own and
// gateway addresses (the source CNIs give a node's traffic to pods on other
// nodes: flannel.1, tunl0, vxlan.calico, cilium_host...; see
// cluster.GatewayAnnotations). Options.PodNetworkExempt is cut out of the
// pod network. Without the nodes' addresses, the API server's call to a
// webhook pod on another node would be dropped as coming from a pod
// policyd does not know yet.
func podNetworkSets(opts Options, own map[netip.Addr]*cluster.Pod, nodes []*cluster.Node) ([]*ruleset.Set, map[ruleset.Hook][]ruleset.Rule, error) {
	if len(opts.PodNetwork) == 0 {
		return nil, nil, nil
	}
	net4 := &ruleset.Set{Name: SetPodNetwork4, Key: ruleset.KeyIPv4, Interval: true, Comment: "the pod network"}
	net6 := &ruleset.Set{Name: SetPodNetwork6, Key: ruleset.KeyIPv6, Interval: true, Comment: "the pod network"}
	known4 := &ruleset.Set{Name: SetKnownPods4, Key: ruleset.KeyIPv4, Comment: "every pod address policyd knows"}
	known6 := &ruleset.Set{Name: SetKnownPods6, Key: ruleset.KeyIPv6, Comment: "every pod address policyd knows"}
	var prefixes []netip.Prefix
	for _, p := range opts.PodNetwork {
		prefixes = append(prefixes, p.Masked())
	}
	sort.Slice(prefixes, func(i, j int) bool { return prefixes[i].Addr().Less(prefixes[j].Addr()) })
	var exempt []netip.Prefix
	for _, p := range opts.PodNetworkExempt {
		exempt = append(exempt, p.Masked())
	}
	for i, p := range prefixes {
		if i > 0 && prefixes[i-1].Overlaps(p) {
			return nil, nil, fmt.Errorf("pod network CIDRs %s and %s overlap", prefixes[i-1], p)
		}
		s := net6
		if p.Addr().Is4() {
			s = net4
		}
		for _, r := range subtractRanges(p, exempt) {
			s.Elements = append(s.Elements, ruleset.Element{Addr: r[0], AddrEnd: r[1]})
		}
	}
	add := func(a netip.Addr) {
		if a.Is4() {
			known4.Elements = append(known4.Elements, ruleset.Element{Addr: a})
		} else {
			known6.Elements = append(known6.Elements, ruleset.Element{Addr: a})
		}
	}
	for a := range own {
		add(a)
	}
	seen := map[netip.Addr]bool{}
	for _, n := range nodes {
		for _, list := range [][]netip.Addr{n.IPs, n.Gateways} {
			for _, a := range list {
				if _, held := own[a]; held || seen[a] {
					continue // a pod's address is the pod's
				}
				seen[a] = true
				add(a)
			}
		}
	}
	drop := ruleset.Verdict{Kind: ruleset.Drop}
	unknown := func(fam int, f ruleset.Field) ruleset.Rule {
		cidr, known := SetPodNetwork4, SetKnownPods4
		if fam == 6 {
			cidr, known = SetPodNetwork6, SetKnownPods6
		}
		return &ruleset.UnknownAddrRule{Family: fam, Field: f, CIDRSet: cidr, KnownSet: known, Verdict: drop,
			Comment: "a pod policyd does not know yet"}
	}
	// The node's own addresses can lie inside the pod network (a bridge
	// CNI's gateway is the first address of the node's pod CIDR, and the
	// node's traffic to its pods, kubelet's probes among it, comes from
	// there): what the node sends is never an unknown pod's, whether or
	// not its Node object says so.
	node := &ruleset.FibLocalRule{Verdict: ruleset.Verdict{Kind: ruleset.Accept}, Comment: "the node's own addresses are no pod's"}
	rules := map[ruleset.Hook][]ruleset.Rule{
		ruleset.HookPostrouting: {node, unknown(4, ruleset.Saddr), unknown(6, ruleset.Saddr), unknown(4, ruleset.Daddr), unknown(6, ruleset.Daddr)},
		ruleset.HookInput:       {node, unknown(4, ruleset.Saddr), unknown(6, ruleset.Saddr)},
	}
	return []*ruleset.Set{net4, net6, known4, known6}, rules, nil
}

// subtractRanges returns the inclusive address ranges of p minus every
// prefix of cut (of any family, overlapping or not), sorted and disjoint.
func subtractRanges(p netip.Prefix, cut []netip.Prefix) [][2]netip.Addr {
	var inside []netip.Prefix
	for _, c := range cut {
		switch {
		case c.Addr().BitLen() != p.Addr().BitLen() || !c.Overlaps(p):
		case c.Bits() <= p.Bits():
			return nil // cut covers p
		default:
			inside = append(inside, c)
		}
	}
	return subtractPrefixes(p, inside)
}

// flowMarkSets returns the sets and the rules (for right after the
// established rule of each base chain) of Options.FlowMark.
func flowMarkSets(opts Options, local []*cluster.Pod, own map[netip.Addr]*cluster.Pod) ([]*ruleset.Set, map[ruleset.Hook][]ruleset.Rule) {
	if opts.FlowMark == 0 {
		return nil, nil
	}
	l4 := &ruleset.Set{Name: SetLocalPods4, Key: ruleset.KeyIPv4, Comment: "the pods of this node"}
	l6 := &ruleset.Set{Name: SetLocalPods6, Key: ruleset.KeyIPv6, Comment: "the pods of this node"}
	seen := map[netip.Addr]bool{}
	for _, p := range local {
		for _, a := range p.IPs {
			if _, known := own[a]; !known || seen[a] {
				continue
			}
			seen[a] = true
			if a.Is4() {
				l4.Elements = append(l4.Elements, ruleset.Element{Addr: a})
			} else {
				l6.Elements = append(l6.Elements, ruleset.Element{Addr: a})
			}
		}
	}
	set := func(fam int) string {
		if fam == 4 {
			return SetLocalPods4
		}
		return SetLocalPods6
	}
	rules := func(fields ...ruleset.Field) []ruleset.Rule {
		var out []ruleset.Rule
		for _, fam := range []int{4, 6} {
			for _, f := range fields {
				out = append(out, &ruleset.CtMarkRule{Family: fam, Field: f, Set: set(fam), Mark: opts.FlowMark, Comment: "strict mode: a flow of this node's pods"})
			}
		}
		for _, fam := range []int{4, 6} {
			for _, f := range fields {
				out = append(out, &ruleset.TCPPickupRule{Family: fam, Field: f, Set: set(fam), Verdict: ruleset.Verdict{Kind: ruleset.Drop}, Comment: "strict mode: no mid-stream pickup"})
			}
		}
		return out
	}
	return []*ruleset.Set{l4, l6}, map[ruleset.Hook][]ruleset.Rule{
		ruleset.HookPostrouting: rules(ruleset.Saddr, ruleset.Daddr),
		ruleset.HookInput:       rules(ruleset.Saddr),
	}
}
