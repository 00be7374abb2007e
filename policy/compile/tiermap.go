package compile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/ruleset"
)

// Tier maps: a run of ClusterNetworkPolicy rules as one lookup.
//
// A tier chain evaluates its rules in order, first match wins, with
// different verdicts (accept, drop, goto the next tier, goto a log chain).
// Written one allow-rule shape per peer, a packet walks every rule of every
// ClusterNetworkPolicy that selects its pod before the one that decides:
// the cost grows with the policies. So consecutive rules that can be
// expressed as boxes of (address range, protocol, port range) are compiled
// into one interval verdict map, looked up once:
//
//	ip saddr . meta l4proto . th dport vmap @tmap4-…   (rules with ports)
//	ip saddr vmap @tmap4-…                             (rules without)
//
// A map keyed by address alone whose ipBlocks hold at most three prefix
// lengths is instead one exact map per length, looked up masked, longest
// first (prefixTierMaps): hashed lookups, not the kernel's interval search.
//
// The map's elements are disjoint: compile resolves the rules' order
// itself, giving each piece of the key space the verdict of the first rule
// that covers it. A rule that matches every protocol cannot go into a
// ported map (ICMP has no port), and one with named ports resolves them on
// the destination pod, which a shared chain cannot know, so such rules, and
// the rules forced to match everything, stay single rules and split the
// runs around them, as do rules whose peers are too large to copy (see
// maxTierRuleBoxes). A run that would be one rule anyway stays a rule.
//
// The map is named after what defines its contents (the rules, peers and
// ports, not the addresses the peers hold), so a pod that joins a peer is
// an element add, like for a peer set.

// tierClass says how a tier rule can be laid out.
type tierClass uint8

const (
	// tierPlain rules stay allow-rule shapes.
	tierPlain tierClass = iota
	// tierPorts rules go into a map keyed by address, protocol and port.
	tierPorts
	// tierAllPorts rules (every protocol and port) go into a map keyed by
	// address.
	tierAllPorts
)

// tierEntry is one rule of a tier chain before it is laid out.
type tierEntry struct {
	cp      *cluster.ClusterPolicy
	index   int
	rule    *cluster.ClusterRule
	verdict ruleset.Verdict
	comment string
	class   tierClass
	portSet string
	named   []namedPort
	// disputed entries follow a Deny or Pass rule's own, with its peers'
	// disputed addresses (disputedAddrs) and a drop verdict.
	disputed bool
	// boxes is the number of boxes the entry puts in a tier map.
	boxes int
}

// tierBox is a piece of the key space: addresses [lo, hi] and, in a ported
// map, one protocol and ports [plo, phi].
type tierBox struct {
	lo, hi   netip.Addr
	proto    uint8
	plo, phi uint16
	order    int // the entry's position: lower wins
}

// Bounds on what a tier map copies. A peer set is shared by every chain
// that names it; a tier map holds its own copy of its rules' addresses,
// times their ports, and every pod that joins a peer is an element add in
// each map that copies it. So a rule whose peers hold more than
// maxTierRuleBoxes boxes (a Pass from every namespace, say) stays a single
// rule on its shared set, and a run stops growing at maxTierMapBoxes.
const (
	maxTierRuleBoxes = 1024
	maxTierMapBoxes  = 4096
)

// layoutTier turns the entries of a tier chain into its rules.
func (c *compiler) layoutTier(d cluster.Direction, fam int, peerField ruleset.Field, entries []tierEntry) ([]ruleset.Rule, error) {
	for i := range entries {
		e := &entries[i]
		if e.class == tierPlain {
			continue
		}
		n, err := c.boxCount(e, fam)
		if err != nil {
			return nil, err
		}
		if n > maxTierRuleBoxes {
			e.class = tierPlain
		}
		e.boxes = n
	}
	var out []ruleset.Rule
	for i := 0; i < len(entries); {
		j, boxes := i+1, entries[i].boxes
		for j < len(entries) && entries[i].class != tierPlain && entries[j].class == entries[i].class && boxes+entries[j].boxes <= maxTierMapBoxes {
			boxes += entries[j].boxes
			j++
		}
		run := entries[i:j]
		i = j
		if run[0].class == tierPlain || c.plainCount(run, fam) < 2 {
			for k := range run {
				rules, err := c.plainTierRules(d, &run[k], fam, peerField)
				if err != nil {
					return nil, err
				}
				out = append(out, rules...)
			}
			continue
		}
		rules, ok, err := c.tierMap(d, fam, peerField, run)
		if err != nil {
			return nil, err
		}
		if !ok {
			// Too dense for a map (see denseBoxes): single rules, whose
			// number grows with the rules' peers, not their overlaps.
			for k := range run {
				rules, err := c.plainTierRules(d, &run[k], fam, peerField)
				if err != nil {
					return nil, err
				}
				out = append(out, rules...)
			}
			continue
		}
		out = append(out, rules...)
	}
	return out, nil
}

// boxCount is the number of boxes entry e puts in a tier map of family fam.
func (c *compiler) boxCount(e *tierEntry, fam int) (int, error) {
	ports := 1
	if e.class == tierPorts {
		ports = len(c.portElements(e.portSet))
	}
	n := 0
	for i := range e.rule.Peers {
		peer := &e.rule.Peers[i]
		if peer.Kind == cluster.PeerPods && !e.disputed {
			// Counted without unpacking the (cached) address list.
			n += c.podPeerAddrs(peer, fam).Len() * ports
			continue
		}
		ranges, err := c.peerRanges(peer, fam, e.disputed)
		if err != nil {
			return 0, fmt.Errorf("clusternetworkpolicy %s: %w", e.cp.Name, err)
		}
		n += len(ranges) * ports
	}
	return n, nil
}

// plainCount is the number of allow rules run would take as single rules.
func (c *compiler) plainCount(run []tierEntry, fam int) int {
	n := 0
	for _, e := range run {
		for _, p := range e.rule.Peers {
			if p.Kind != cluster.PeerIPBlock || family(p.CIDR.Addr()) == fam {
				n++
			}
		}
	}
	return n
}

// plainTierRules returns the allow-rule shapes of one tier rule: one per
// (peer, port form), in written order.
func (c *compiler) plainTierRules(d cluster.Direction, e *tierEntry, fam int, peerField ruleset.Field) ([]ruleset.Rule, error) {
	if e.rule.MatchAll {
		return []ruleset.Rule{&ruleset.AllowRule{Family: fam, Verdict: e.verdict, Comment: e.comment}}, nil
	}
	var out []ruleset.Rule
	add := func(peerSet, namedSet string) {
		if namedSet == "" {
			c.usePortSet(e.portSet)
			out = append(out, c.literalPort(&ruleset.AllowRule{Family: fam, PeerField: peerField, PeerSet: peerSet, PortSet: e.portSet, Verdict: e.verdict, Comment: e.comment}))
			return
		}
		out = append(out, &ruleset.AllowRule{Family: fam, PeerField: peerField, PeerSet: peerSet, NamedPortSet: namedSet, Verdict: e.verdict, Comment: e.comment})
	}
	var namedSets []string
	if len(e.named) > 0 {
		n := 0
		for _, p := range e.rule.Peers {
			if p.Kind != cluster.PeerIPBlock || family(p.CIDR.Addr()) == fam {
				n++
			}
		}
		if n > 0 {
			namedSets = c.namedSets(e.named, fam, d, n) // once a rule, not once a peer
		}
	}
	for i := range e.rule.Peers {
		peer := &e.rule.Peers[i]
		var set string
		switch peer.Kind {
		case cluster.PeerPods:
			set = c.peerSet(peer, fam)
		case cluster.PeerIPBlock:
			if family(peer.CIDR.Addr()) != fam {
				continue
			}
			set = c.blockSet(peer, fam)
		case cluster.PeerNodes:
			set = c.nodeSet(peer, fam)
		default:
			return nil, fmt.Errorf("clusternetworkpolicy %s %s[%d]: peer of unknown kind %d", e.cp.Name, d, e.index, peer.Kind)
		}
		if !e.disputed {
			if e.portSet != "" || len(e.named) == 0 {
				add(set, "")
			}
			for _, ns := range namedSets {
				add(set, ns)
			}
			continue
		}
		// The rule's disputed matches (see disputedAddrs): a peer's
		// disputed addresses on any of its ports, and its addresses and
		// disputed ones on the ports some claimant of the destination
		// resolves a name to; what its own entry matches is left out.
		disputed := c.disputedSet(peer, fam)
		if disputed != "" && (e.portSet != "" || len(e.named) == 0) {
			add(disputed, "")
		}
		if disputed != "" {
			for _, ns := range namedSets {
				add(disputed, ns)
			}
		}
		for _, np := range e.named {
			if anyNamed := c.disputedNamedSet(np, fam); anyNamed != "" {
				add(set, anyNamed)
				if disputed != "" {
					add(disputed, anyNamed)
				}
			}
		}
	}
	return out, nil
}

// tierMap returns the dispatch rules of a run of entries of one class,
// creating their maps on first use: one rule, or for an address-keyed run
// with ipBlocks one masked lookup per prefix length (prefixLengths). ok is
// false when the run's boxes overlap too densely for a map (denseBoxes):
// its rules are then laid out one by one.
func (c *compiler) tierMap(d cluster.Direction, fam int, peerField ruleset.Field, run []tierEntry) (_ []ruleset.Rule, ok bool, _ error) {
	ported := run[0].class == tierPorts
	exact := c.exactRun(run)
	var lens []int
	if !ported && !exact {
		lens = prefixLengths(run, fam)
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%s|%d|%v|%v|%v", d, fam, ported, exact, lens)
	var names []string
	for _, e := range run {
		fmt.Fprintf(&key, "|%s|%s|%s", e.comment, e.verdict, e.portSet)
		for _, p := range e.rule.Peers {
			key.WriteString("|" + p.Key)
		}
		names = append(names, fmt.Sprintf("%s %s[%d]", e.cp.Name, d, e.index))
	}
	name := fmt.Sprintf("tmap%d-%s", fam, shortHash(key.String()))
	comment := truncate(fmt.Sprintf("%s cnp rules %s", run[0].cp.Tier, strings.Join(names, ", ")))
	if lens != nil {
		rules, err := c.prefixTierMaps(d, fam, peerField, run, lens, name, comment)
		return rules, err == nil && rules != nil, err
	}
	rule := &ruleset.DispatchRule{Family: fam, Field: peerField, Map: name, Ports: ported, Comment: comment}
	if _, ok := c.maps[name]; ok {
		return []ruleset.Rule{rule}, true, nil
	}
	var boxes []tierBox
	verdicts := make([]ruleset.Verdict, len(run))
	for order, e := range run {
		verdicts[order] = e.verdict
		var ports []ruleset.Element
		if ported {
			ports = c.portElements(e.portSet)
		}
		for i := range e.rule.Peers {
			ranges, err := c.peerRanges(&e.rule.Peers[i], fam, e.disputed)
			if err != nil {
				return nil, false, fmt.Errorf("clusternetworkpolicy %s %s[%d]: %w", e.cp.Name, d, e.index, err)
			}
			for _, r := range ranges {
				if !ported {
					boxes = append(boxes, tierBox{lo: r[0], hi: r[1], order: order})
					continue
				}
				for _, p := range ports {
					boxes = append(boxes, tierBox{lo: r[0], hi: r[1], proto: p.Proto, plo: p.Port, phi: max(p.PortEnd, p.Port), order: order})
				}
			}
		}
	}
	if !exact && denseBoxes(boxes) {
		return nil, false, nil
	}
	m := &ruleset.Set{Name: name, Map: true, Interval: !exact, Key: ruleset.AddrKey(fam), Comment: comment}
	if ported {
		m.Key = ruleset.KeyIPv4ProtoPort
		if fam == 6 {
			m.Key = ruleset.KeyIPv6ProtoPort
		}
	}
	switch {
	case exact:
		m.Elements = firstMatchPoints(boxes, verdicts)
	case ported:
		m.Elements = firstMatchPorts(boxes, verdicts)
	default:
		m.Elements = firstMatchAddrs(boxes, verdicts)
	}
	if len(m.Elements) > maxElementsPerBox*len(boxes) {
		return nil, false, nil
	}
	c.maps[name] = m
	return []ruleset.Rule{rule}, true, nil
}

// maxElementsPerBox bounds a tier map's elements by its boxes (the
// budget's count relies on it): a run whose map would hold more is laid
// out as single rules. A map of points holds at most one element a box,
// one of ranges at most two (the ranges its boxes' bounds cut the
// addresses into) unless ports cut them further.
const maxElementsPerBox = 2

// maxActivePerBox bounds how densely a tier map's boxes may overlap: the
// sum, over the address ranges over which the covering boxes do not change,
// of the number of covering boxes, per box. A map's elements are at most
// twice that sum plus three per range (each range's ports are cut into at
// most two pieces a box and one more per protocol), and the work of
// building it grows with it. Rules whose ranges start one after another
// and all reach the end (an ipBlock minus a growing head, rule by rule)
// overlap quadratically: such a run is laid out as single rules instead.
const maxActivePerBox = 4

// denseBoxes reports whether boxes overlap more densely than
// maxActivePerBox allows. One sort and one sweep over the range bounds.
func denseBoxes(boxes []tierBox) bool {
	type event struct {
		at    netip.Addr
		delta int
	}
	events := make([]event, 0, 2*len(boxes))
	for _, b := range boxes {
		events = append(events, event{b.lo, 1})
		if n := b.hi.Next(); n.IsValid() {
			events = append(events, event{n, -1})
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	sum, active := 0, 0
	for i := 0; i < len(events); {
		at := events[i].at
		for i < len(events) && events[i].at == at {
			active += events[i].delta
			i++
		}
		sum += active
		if sum > maxActivePerBox*len(boxes) {
			return true
		}
	}
	return false
}

// maxPrefixLookups bounds the masked lookups an address-keyed tier map with
// ipBlocks becomes. Its ranges would otherwise make it an interval map,
// which the kernel searches by bisection with a comparison call per step:
// on this machine's kernel 20 ranges cost about 450 ns a packet, a hashed
// lookup about 110 (bench/pktpath's profile), so up to three lengths is
// cheaper, and more falls back to the interval map.
const maxPrefixLookups = 3

// prefixLengths returns, longest first, the prefix lengths of family fam
// the peers of an address-keyed run hold: a pod's or node's address is a
// whole-length prefix, an ipBlock its CIDR minus excepts cut into CIDRs.
// They depend on the rules only, never on the addresses pods hold, so the
// maps keep their form as pods come and go. It returns nil when there are
// more than maxPrefixLookups lengths, none, or a verdict that does not end
// the chain (the lookups follow each other: only the longest matching
// prefix may decide).
func prefixLengths(run []tierEntry, fam int) []int {
	bits := ruleset.AddrBits(fam)
	seen := map[int]bool{}
	for _, e := range run {
		switch e.verdict.Kind {
		case ruleset.Accept, ruleset.Drop, ruleset.Goto, ruleset.Return:
		default:
			return nil
		}
		for _, p := range e.rule.Peers {
			switch {
			case e.disputed || p.Kind == cluster.PeerPods || p.Kind == cluster.PeerNodes:
				seen[bits] = true // single addresses
			case p.Kind == cluster.PeerIPBlock:
				for _, q := range blockCIDRs(&p, fam) {
					seen[q.Bits()] = true
				}
			default:
				return nil
			}
		}
		if len(seen) > maxPrefixLookups {
			return nil
		}
	}
	if len(seen) == 0 {
		return nil
	}
	lens := make([]int, 0, len(seen))
	for l := range seen {
		lens = append(lens, l)
	}
	slices.SortFunc(lens, func(a, b int) int { return cmp.Compare(b, a) })
	return lens
}

// prefixTierMaps returns an address-keyed run as one exact map per prefix
// length of lens (longest first), each looked up with the address masked to
// its length:
//
//	ip daddr vmap @tmap4-…-32
//	ip daddr & 255.255.255.0 vmap @tmap4-…-24
//
// The run's prefixes nest or are disjoint, so the rules that cover an
// address are those holding one of the prefixes containing it, and every
// prefix containing it contains the longest such one. Each prefix therefore
// gets the verdict of the first rule holding it or a shorter prefix around
// it, and the first lookup that matches, the longest prefix, decides as
// first match over the rules would.
func (c *compiler) prefixTierMaps(d cluster.Direction, fam int, peerField ruleset.Field, run []tierEntry, lens []int, name, comment string) ([]ruleset.Rule, error) {
	bits := ruleset.AddrBits(fam)
	rules := make([]ruleset.Rule, len(lens))
	names := make([]string, len(lens))
	for i, l := range lens {
		names[i] = fmt.Sprintf("%s-%d", name, l)
		r := &ruleset.DispatchRule{Family: fam, Field: peerField, Map: names[i], Comment: comment}
		if l < bits {
			r.Prefix = l
		}
		rules[i] = r
	}
	// A /0 (an ipBlock of every address) needs no lookup: it is the
	// last, shortest prefix, and matches what the longer ones did not.
	whole := lens[len(lens)-1] == 0
	if _, ok := c.maps[names[0]]; ok && !whole {
		return rules, nil
	}
	var claims []prefixClaim
	verdicts := make([]ruleset.Verdict, len(run))
	for order, e := range run {
		verdicts[order] = e.verdict
		for i := range e.rule.Peers {
			peer := &e.rule.Peers[i]
			if peer.Kind == cluster.PeerIPBlock && !e.disputed {
				for _, q := range blockCIDRs(peer, fam) {
					claims = append(claims, prefixClaim{q, order})
				}
				continue
			}
			ranges, err := c.peerRanges(peer, fam, e.disputed)
			if err != nil {
				return nil, fmt.Errorf("clusternetworkpolicy %s %s[%d]: %w", e.cp.Name, d, e.index, err)
			}
			for _, r := range ranges {
				claims = append(claims, prefixClaim{netip.PrefixFrom(r[0], bits), order})
			}
		}
	}
	elems, err := firstMatchPrefixes(claims, lens, verdicts)
	if err != nil {
		return nil, fmt.Errorf("tier map %s: %w", name, err)
	}
	boxes, n := 0, 0
	for _, e := range run {
		boxes += e.boxes
	}
	for _, l := range elems {
		n += len(l)
	}
	if n > maxElementsPerBox*boxes {
		return nil, nil // laid out as single rules (maxElementsPerBox)
	}
	for i := range lens {
		if lens[i] == 0 {
			rules[i] = &ruleset.AllowRule{Family: fam, Verdict: elems[i][0].Verdict, Comment: comment}
			continue
		}
		c.maps[names[i]] = &ruleset.Set{Name: names[i], Map: true, Key: ruleset.AddrKey(fam), Comment: comment, Elements: elems[i]}
	}
	return rules, nil
}

// prefixClaim is a prefix a rule's peer holds, with the rule's position in
// its run: lower wins.
type prefixClaim struct {
	prefix netip.Prefix
	order  int
}

// firstMatchPrefixes returns the elements of the maps of lens (longest
// first), one list per length, sorted: each claimed prefix, at the verdict
// of the first rule claiming it or a shorter prefix around it (see
// prefixTierMaps). A claim of a length not in lens is an error.
func firstMatchPrefixes(claims []prefixClaim, lens []int, verdicts []ruleset.Verdict) ([][]ruleset.Element, error) {
	first := make(map[netip.Prefix]int, len(claims))
	for _, c := range claims {
		if o, ok := first[c.prefix]; !ok || c.order < o {
			first[c.prefix] = c.order
		}
	}
	elems := make([][]ruleset.Element, len(lens))
	for q, order := range first {
		li := -1
		for i, l := range lens {
			if l == q.Bits() {
				li = i
			} else if l < q.Bits() {
				if o, ok := first[netip.PrefixFrom(q.Addr(), l).Masked()]; ok && o < order {
					order = o
				}
			}
		}
		if li < 0 {
			return nil, fmt.Errorf("prefix %s of no length of %v", q, lens)
		}
		elems[li] = append(elems[li], ruleset.Element{Addr: q.Addr(), Verdict: verdicts[order]})
	}
	for i := range elems {
		slices.SortFunc(elems[i], ruleset.CompareAddrPort)
	}
	return elems, nil
}

// blockCIDRs returns the CIDRs of family fam an ipBlock peer holds: its
// CIDR minus excepts, cut into the fewest CIDRs; none of another family.
func blockCIDRs(peer *cluster.Peer, fam int) []netip.Prefix {
	if family(peer.CIDR.Addr()) != fam {
		return nil
	}
	var out []netip.Prefix
	for _, r := range subtractPrefixes(peer.CIDR, peer.Except) {
		out = append(out, rangeCIDRs(r[0], r[1])...)
	}
	return out
}

// rangeCIDRs cuts the address range [lo, hi] into the fewest CIDRs, in
// address order.
func rangeCIDRs(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for lo.IsValid() && !hi.Less(lo) {
		best := netip.PrefixFrom(lo, lo.BitLen())
		for b := lo.BitLen() - 1; b >= 0; b-- {
			p := netip.PrefixFrom(lo, b)
			if p.Masked().Addr() != lo || hi.Less(ruleset.LastAddr(p)) {
				break
			}
			best = p
		}
		out = append(out, best)
		lo = ruleset.LastAddr(best).Next()
	}
	return out
}

// exactRun reports whether every box of run is a point: single addresses
// (pods and nodes, no ipBlock) and, for a ported run, single ports. Such a
// map needs no intervals, and the kernel then keeps it in a hash table
// (one hashed lookup) rather than the pipapo interval matcher, whose cost
// grows with the number of elements. It depends on the rules only, not on
// the addresses their peers hold, so a map keeps its form as pods come and
// go.
func (c *compiler) exactRun(run []tierEntry) bool {
	for _, e := range run {
		for _, p := range e.rule.Peers {
			if p.Kind != cluster.PeerPods && p.Kind != cluster.PeerNodes {
				return false
			}
		}
		if e.class != tierPorts {
			continue
		}
		for _, pe := range c.portElements(e.portSet) {
			if pe.PortEnd != 0 && pe.PortEnd != pe.Port {
				return false
			}
		}
	}
	return true
}

// firstMatchPoints returns the elements of an exact map whose boxes are
// all points: each point gets the verdict of the first box at it.
func firstMatchPoints(boxes []tierBox, verdicts []ruleset.Verdict) []ruleset.Element {
	type point struct {
		addr  netip.Addr
		proto uint8
		port  uint16
	}
	first := make(map[point]int, len(boxes))
	for _, b := range boxes {
		k := point{b.lo, b.proto, b.plo}
		if o, ok := first[k]; !ok || b.order < o {
			first[k] = b.order
		}
	}
	out := make([]ruleset.Element, 0, len(first))
	for k, o := range first {
		out = append(out, ruleset.Element{Addr: k.addr, Proto: k.proto, Port: k.port, PortEnd: k.port, Verdict: verdicts[o]})
	}
	slices.SortFunc(out, ruleset.CompareAddrPort)
	return out
}

// portElements returns the elements of the port set portMatch made.
func (c *compiler) portElements(name string) []ruleset.Element {
	if s, ok := c.sets[name]; ok {
		return s.Elems()
	}
	if s, ok := c.pending[name]; ok {
		return s.Elems()
	}
	return nil
}

// peerRanges returns the address ranges of family fam a peer holds: what
// peerSet, blockSet or nodeSet would put in its set, or with disputed
// what disputedSet would.
func (c *compiler) peerRanges(peer *cluster.Peer, fam int, disputed bool) ([][2]netip.Addr, error) {
	var out [][2]netip.Addr
	if disputed {
		for _, a := range c.disputedAddrs(peer, fam) {
			out = append(out, [2]netip.Addr{a, a})
		}
		return out, nil
	}
	switch peer.Kind {
	case cluster.PeerPods:
		addrs := c.podPeerAddrs(peer, fam)
		for i := range addrs.Len() {
			a := addrs.At(i)
			out = append(out, [2]netip.Addr{a, a})
		}
	case cluster.PeerIPBlock:
		if family(peer.CIDR.Addr()) == fam {
			out = subtractPrefixes(peer.CIDR, peer.Except)
		}
	case cluster.PeerNodes:
		for _, a := range c.nodeAddrs(peer, fam, false) {
			out = append(out, [2]netip.Addr{a, a})
		}
	default:
		return nil, fmt.Errorf("peer of unknown kind %d", peer.Kind)
	}
	return out, nil
}

// elementary calls f for each maximal address range over which the set of
// boxes covering it does not change, with those boxes (in no order); ranges
// no box covers are skipped. bounds are the range starts.
func elementary(boxes []tierBox, f func(lo, hi netip.Addr, active []tierBox)) {
	if len(boxes) == 0 {
		return
	}
	var bounds []netip.Addr
	for _, b := range boxes {
		bounds = append(bounds, b.lo)
		if n := b.hi.Next(); n.IsValid() {
			bounds = append(bounds, n)
		}
	}
	slices.SortFunc(bounds, netip.Addr.Compare)
	bounds = slices.Compact(bounds)
	byLo := slices.Clone(boxes)
	slices.SortFunc(byLo, func(a, b tierBox) int { return a.lo.Compare(b.lo) })
	var active []tierBox
	next := 0
	for i, lo := range bounds {
		kept := active[:0]
		for _, b := range active {
			if b.hi.Compare(lo) >= 0 {
				kept = append(kept, b)
			}
		}
		active = kept
		for next < len(byLo) && byLo[next].lo == lo {
			active = append(active, byLo[next])
			next++
		}
		if len(active) == 0 {
			continue
		}
		hi := lastAddr(lo)
		if i+1 < len(bounds) {
			hi = bounds[i+1].Prev()
		}
		f(lo, hi, active)
	}
}

// lastAddr returns the last address of a's family.
func lastAddr(a netip.Addr) netip.Addr {
	return ruleset.LastAddr(netip.PrefixFrom(a, 0))
}

// firstMatchAddrs returns the disjoint elements of an address-keyed map:
// each range gets the verdict of the first box covering it; adjacent ranges
// of one verdict are merged.
func firstMatchAddrs(boxes []tierBox, verdicts []ruleset.Verdict) []ruleset.Element {
	var out []ruleset.Element
	elementary(boxes, func(lo, hi netip.Addr, active []tierBox) {
		win := slices.MinFunc(active, func(a, b tierBox) int { return cmp.Compare(a.order, b.order) })
		v := verdicts[win.order]
		if n := len(out); n > 0 && out[n-1].Verdict == v && out[n-1].AddrEnd.Next() == lo {
			out[n-1].AddrEnd = hi
			return
		}
		out = append(out, ruleset.Element{Addr: lo, AddrEnd: hi, Verdict: v})
	})
	return out
}

// portPiece is a port range of one protocol with its verdict.
type portPiece struct {
	proto   uint8
	lo, hi  uint16
	verdict ruleset.Verdict
}

// firstMatchPorts returns the disjoint elements of an address, protocol
// and port keyed map: for each address range, each protocol's ports are cut
// into the pieces the boxes covering them make, each with the verdict of
// the first box that covers it; adjacent address ranges cut the same way
// are merged.
func firstMatchPorts(boxes []tierBox, verdicts []ruleset.Verdict) []ruleset.Element {
	type span struct {
		lo, hi netip.Addr
		pieces []portPiece
	}
	var spans []span
	elementary(boxes, func(lo, hi netip.Addr, active []tierBox) {
		slices.SortFunc(active, func(a, b tierBox) int {
			return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.order, b.order))
		})
		var pieces []portPiece
		for start := 0; start < len(active); {
			end := start
			for end < len(active) && active[end].proto == active[start].proto {
				end++
			}
			pieces = append(pieces, cutPorts(active[start:end], verdicts)...)
			start = end
		}
		if n := len(spans); n > 0 && spans[n-1].hi.Next() == lo && slices.Equal(spans[n-1].pieces, pieces) {
			spans[n-1].hi = hi
			return
		}
		spans = append(spans, span{lo, hi, pieces})
	})
	var out []ruleset.Element
	for _, s := range spans {
		for _, p := range s.pieces {
			out = append(out, ruleset.Element{Addr: s.lo, AddrEnd: s.hi, Proto: p.proto, Port: p.lo, PortEnd: p.hi, Verdict: p.verdict})
		}
	}
	return out
}

// cutPorts returns the pieces of the port space of one protocol that the
// boxes cover (sorted by order, first wins), sorted by port, adjacent
// pieces of one verdict merged: one sort and one sweep over the port
// bounds, with the covering boxes in a heap by order.
func cutPorts(boxes []tierBox, verdicts []ruleset.Verdict) []portPiece {
	if len(boxes) == 0 {
		return nil
	}
	proto := boxes[0].proto
	bounds := make([]int, 0, 2*len(boxes))
	for _, b := range boxes {
		bounds = append(bounds, int(b.plo), int(b.phi)+1)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	byLo := slices.Clone(boxes)
	slices.SortFunc(byLo, func(a, b tierBox) int { return cmp.Compare(a.plo, b.plo) })
	var h orderHeap
	next := 0
	var out []portPiece
	for i := 0; i+1 < len(bounds); i++ {
		lo, hi := bounds[i], bounds[i+1]-1
		for next < len(byLo) && int(byLo[next].plo) == lo {
			h.push(byLo[next])
			next++
		}
		for len(h) > 0 && int(h[0].phi) < lo {
			h.pop()
		}
		if len(h) == 0 {
			continue
		}
		v := verdicts[h[0].order]
		if n := len(out); n > 0 && out[n-1].verdict == v && int(out[n-1].hi)+1 == lo {
			out[n-1].hi = uint16(hi)
			continue
		}
		out = append(out, portPiece{proto, uint16(lo), uint16(hi), v})
	}
	return out
}

// orderHeap is a min-heap of boxes by order.
type orderHeap []tierBox

func (h *orderHeap) push(b tierBox) {
	*h = append(*h, b)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].order <= s[i].order {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *orderHeap) pop() {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].order < s[m].order {
			m = l
		}
		if r < n && s[r].order < s[m].order {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
}
