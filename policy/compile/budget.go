package compile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/policy/ruleset"
)

// Budgets: what one object, and one node, may cost.
//
// Before it builds anything, Compile counts what the node's table will
// hold, as the Ruleset counts it:
//
//   - rules: the rules of every chain, base chains included;
//   - elements: the elements of every set and verdict map (an interval
//     set's range is one element, as Set.Len counts it; the kernel keeps
//     two);
//   - chains: every chain, base chains included.
//
// The count mirrors how the compiler builds: group chains, port chains and
// shared ends are counted once per content, as they are named; a group's
// allow rules as orderAllows keeps them; no tier rule after one that
// denies everything. It never falls short of the Ruleset Compile then
// builds (a test checks it on random and hostile inputs) and exceeds it
// only where counting exactly would cost what building does (a tier map's
// elements, an ipBlock's overlapping excepts, allow rules a port chain
// drops after one that admits every peer): on the benchmark nodes by at
// most 13%. Each object (a
// NetworkPolicy or ClusterNetworkPolicy) is charged what it adds to the
// node's table: its rules in every chain of the node that holds them (a
// NetworkPolicy selecting pods of N different policy groups is charged N
// times), its port-dispatch entries and chains, and the elements of every
// set it refers to (in full, even when another object shares the set). The
// table's skeleton, the dispatch maps and the pod network sets are the
// node's own and charged to no object.
//
// An object over the per-object budget in any dimension is quarantined
// (policy/quarantine). Then, while the node's total is over the per-node
// budget in some dimension, the object costing the most in the dimension
// furthest over it (relative to its budget) is quarantined, ties broken by
// the newest creationTimestamp, then by kind and key: the fewest objects go,
// the most expensive (likeliest the cause) first, and of two alike the one
// that arrived last, so that an object already enforced is not displaced
// by a newcomer of the same size. Quarantined objects cost only their
// stripped form. The node's total is counted again after each pick.
//
// A long-lived Compiler (the agent's) keeps between counts what changes
// only with its inputs: what each policy value adds to a group chain and
// the sets it refers to (by number, setTable), the content of each group
// chain of the same policy values, and how many pods declare each named
// port (adjusted for the pods that changed). Its count, and so its
// decisions, are exactly a fresh Compiler's (a test checks it on random
// change sequences); the compile reuses the count's rule port matches and
// peer sets, so that counting costs little beyond what building does.

// Cost is what a table, or one object's part of it, holds.
type Cost struct {
	Rules, Elements, Chains int
}

// Add returns c plus o.
func (c Cost) Add(o Cost) Cost {
	return Cost{c.Rules + o.Rules, c.Elements + o.Elements, c.Chains + o.Chains}
}

// IsZero reports whether every dimension is zero.
func (c Cost) IsZero() bool { return c == Cost{} }

// String renders "R rules, E elements, C chains".
func (c Cost) String() string {
	return fmt.Sprintf("%d rules, %d elements, %d chains", c.Rules, c.Elements, c.Chains)
}

// dims lists the dimensions in the order ties are broken.
var dims = []string{"rules", "elements", "chains"}

func (c Cost) dim(name string) int {
	switch name {
	case "rules":
		return c.Rules
	case "elements":
		return c.Elements
	}
	return c.Chains
}

// over returns the dimension in which c is furthest over limit (relative
// to the limit), and whether it is over in any; a zero limit bounds
// nothing.
func (c Cost) over(limit Cost) (string, bool) {
	best, ratio := "", 0.0
	for _, d := range dims {
		l := limit.dim(d)
		if l <= 0 || c.dim(d) <= l {
			continue
		}
		if r := float64(c.dim(d)) / float64(l); r > ratio {
			best, ratio = d, r
		}
	}
	return best, best != ""
}

// Budget bounds what Compile builds for a node; a zero dimension is
// unbounded, and the zero Budget bounds nothing.
type Budget struct {
	// Object bounds one object's cost on the node.
	Object Cost
	// Node bounds the node's whole table.
	Node Cost
}

// IsZero reports whether b bounds nothing.
func (b Budget) IsZero() bool { return b.Object.IsZero() && b.Node.IsZero() }

// Bytes each unit of cost takes in the agent, from BenchmarkBudgetBytes
// (policy/nft): the Go heap of the compiled Ruleset, twice (the agent
// keeps the last committed table beside the new one), plus the peak of the
// live heap while a full Sync of it runs (the diff and the netlink batch),
// sampled with the collector at GOGC=25. It measured 2,183 bytes a rule
// (its expressions, comment and hash, in Go and in the batch) and 127 an
// element (4 of them the packed address), the latter counting up to a
// quarter of garbage not yet collected: at 1.45 million elements (the
// 50,000-pod, 10,000-policy benchmark node) the agent under GOMEMLIMIT
// peaked at 211 MB in all, about 75 bytes an element above its 100 MB
// base. A chain is counted with its rule and map entry.
const (
	BytesPerRule    = 2304
	BytesPerElement = 96
	BytesPerChain   = 1536
)

// DefaultMemoryLimit is the DaemonSet's memory limit (deploy/), which the
// default budgets are derived from.
const DefaultMemoryLimit = 256 << 20

// DefaultBudget returns the budgets derived from a memory limit (bytes; 0
// means DefaultMemoryLimit), as policyd run's flags default to. Per node,
// each dimension may take a share of the limit on its own: elements five
// eighths (a node's table is mostly elements), rules a quarter, chains a
// sixteenth; what is left is the informers' caches and the selector index
// (about 100 MB of heap at 50,000 pods). Per object, an eighth of the
// node's budget: no one object can take more than an eighth of what the
// node may hold.
//
// At 256 MiB: 29,127 rules, 1,747,626 elements and 10,922 chains a node;
// 3,640 rules, 218,453 elements and 1,365 chains an object.
func DefaultBudget(limit int64) Budget {
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	node := Cost{
		Rules:    int(limit / 4 / BytesPerRule),
		Elements: int(limit * 5 / 8 / BytesPerElement),
		Chains:   int(limit / 16 / BytesPerChain),
	}
	return Budget{Node: node, Object: Cost{node.Rules / 8, node.Elements / 8, node.Chains / 8}}
}

// Quarantined returns the decisions of the last Compile: the objects
// quarantined on its node, sorted.
func (c *Compiler) Quarantined() []quarantine.Decision { return c.quarantined }

// Objects returns the objects that select a pod of the last Compile's node
// (in any direction), sorted: those that can add anything to its table.
func (c *Compiler) Objects() []quarantine.Object {
	out := make([]quarantine.Object, 0, len(c.selectNP)+len(c.selectCNP))
	for p := range c.selectNP {
		out = append(out, quarantine.PolicyObject(p))
	}
	for p := range c.selectCNP {
		out = append(out, quarantine.ClusterPolicyObject(p))
	}
	slices.SortFunc(out, quarantine.Object.Compare)
	return slices.CompactFunc(out, func(a, b quarantine.Object) bool { return a == b })
}

// LastCost returns what the last Compile counted for its node (with the
// quarantined objects in their stripped form) before building it.
func (c *Compiler) LastCost() Cost { return c.lastCost }

// Quarantines returns the objects quarantined on each of nodes by the
// budget of opts (and those opts.Quarantine imposes), as Compile decides
// them: explain and lint learn the quarantine the agent applies. It counts
// and builds nothing else.
func Quarantines(src Source, nodes []string, opts Options) *quarantine.Set {
	out := &quarantine.Set{}
	for _, node := range slices.Compact(slices.Sorted(slices.Values(nodes))) {
		cc := &Compiler{Options: opts}
		c := newCompiler(src, node, cc)
		for _, d := range c.decide() {
			out.Add(d)
		}
	}
	return out
}

// objCost is one object's part of the count.
type objCost struct {
	obj     quarantine.Object
	created time.Time
	cost    Cost // as written (own: its parts and its sets)
	strip   Cost // as quarantined
	// sets are the sets it refers to (as written), by index in the
	// tally (setIndex), with repeats.
	sets []int32
}

// part is one object's part of one tier chain, as written and as
// quarantined (a Deny of everything); terminal when, as written, it
// holds a rule matching everything (an invalid Deny or Pass): no rule
// after either is laid out (tierChain).
type part struct {
	obj         quarantine.Object
	cost, strip Cost
	terminal    bool
}

// groupShape is what a NetworkPolicy adds to a group chain of one
// direction and family: its allow rules, each named by what it matches.
type groupShape struct {
	allows []allowKey
	// log is what logging allowed connections adds (log chains).
	log Cost
}

// allowKey is what one allow rule matches: its peer (everyPeer for every
// peer), its port set ("" for every port) or named ports ("" for none).
// Two policies' rules that match the same are one rule in the chain, and
// some rules cover others (orderAllows). points are its ports when all
// are single ports (a port dispatch puts it in the chain of each).
type allowKey struct {
	peer        allowPeer
	port, named string
	points      []portPoint
}

// allowPeer is the peer of an allow rule: every peer (the zero value), a
// pods peer or an ipBlock, by its key.
type allowPeer struct {
	kind cluster.PeerKind
	key  string
}

var everyPeer = allowPeer{}

// allowID is what an allow rule matches, comparable.
type allowID struct {
	peer        allowPeer
	port, named string
}

func (a allowKey) id() allowID { return allowID{a.peer, a.port, a.named} }

func compareAllowPeers(a, b allowPeer) int {
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	return strings.Compare(a.key, b.key)
}

func compareAllowIDs(a, b allowID) int {
	if c := compareAllowPeers(a.peer, b.peer); c != 0 {
		return c
	}
	if a.port != b.port {
		return strings.Compare(a.port, b.port)
	}
	return strings.Compare(a.named, b.named)
}

// writeField writes s to b so that no two sequences of fields write the
// same: its length, a colon, s.
func writeField(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}

func writePeer(b *strings.Builder, p allowPeer) {
	b.WriteString(strconv.Itoa(int(p.kind)))
	writeField(b, p.key)
}

func (s groupShape) empty() bool { return len(s.allows) == 0 }

// own is the most a policy of shape s adds to one group chain: its rules
// in the chain and its shared end, in port chains, with a copy of the end
// (or a goto) in each port chain; its ports' map entries and chains.
func (s groupShape) own() Cost {
	c := s.log
	for _, a := range s.allows {
		c.Rules += 2
		if n := len(a.points); n > 0 {
			c = c.Add(Cost{Rules: (1 + maxCopiedRest) * n, Elements: n, Chains: n})
		}
	}
	return c
}

// coverAllows returns the distinct allows that orderAllows keeps: a rule
// matching every packet keeps itself alone; a rule of one port set and
// every peer covers that port set's other rules, one of one peer and every
// port that peer's, one of named ports and every peer those named ports'.
func coverAllows(all map[allowID]*allowKey) []*allowKey {
	portOnly, peerOnly, namedOnly := map[string]bool{}, map[allowPeer]bool{}, map[string]bool{}
	for _, a := range all {
		switch {
		case a.peer == everyPeer && a.port == "" && a.named == "":
			return []*allowKey{a}
		case a.peer == everyPeer && a.named == "":
			portOnly[a.port] = true
		case a.port == "" && a.named == "":
			peerOnly[a.peer] = true
		case a.peer == everyPeer && a.port == "":
			namedOnly[a.named] = true
		}
	}
	out := make([]*allowKey, 0, len(all))
	for _, a := range all {
		covered := a.peer != everyPeer && a.port != "" && portOnly[a.port] ||
			a.peer != everyPeer && (a.port != "" || a.named != "") && peerOnly[a.peer] ||
			a.peer != everyPeer && a.named != "" && namedOnly[a.named]
		if !covered {
			out = append(out, a)
		}
	}
	return out
}

// groupMember is one policy of a group chain.
type groupMember struct {
	obj   quarantine.Object
	shape groupShape
}

// groupUse is one group chain the node's pods dispatch to. Group chains
// are named by their content, and a policy that adds no rule to a chain
// (it has none for the direction, or it is quarantined) does not change
// it: groups whose other policies are the same share one chain.
type groupUse struct {
	prefix string // direction, family, variant
	rawKey string // prefix and every member's key (counter.group)
	pols   []*cluster.Policy
	tail   int // node traffic (ingress), the drop
	// named: the deny decider's log chain names every member (logged
	// drops); plain: allowed logging keeps the chain in written order,
	// without a port dispatch.
	named, plain bool
	members      []groupMember
	// plainKey is key(nil), once asked.
	plainKey string
	used     uint64 // the last compile that counted it (Compiler.gen)
	counted  uint64 // and its count (tally.serial)
}

// key returns the name the chain's content would get: its prefix and the
// members that add rules to it (all, when the deny decider names them).
func (g *groupUse) key(strip map[quarantine.Object]quarantine.Decision) string {
	if len(strip) == 0 && g.plainKey != "" {
		return g.plainKey
	}
	k := g.keyOf(strip, func(m groupMember) bool { return !m.shape.empty() })
	if len(strip) == 0 {
		g.plainKey = k
	}
	return k
}

// keyOf returns the prefix and the members, not quarantined, that pick
// selects.
func (g *groupUse) keyOf(strip map[quarantine.Object]quarantine.Decision, pick func(groupMember) bool) string {
	var b strings.Builder
	n := len(g.prefix)
	for _, m := range g.members {
		n += 1 + len(m.obj.Key)
	}
	b.Grow(n)
	b.WriteString(g.prefix)
	for _, m := range g.members {
		_, stripped := strip[m.obj]
		if g.named || (!stripped && pick(m)) {
			b.WriteByte('|')
			b.WriteString(m.obj.Key)
		}
	}
	return b.String()
}

// sharedPart is a chain that groups of the same content share (a port
// chain, a shared end), named by its content.
type sharedPart struct {
	key  string
	cost Cost
}

// groupCostMemo is the count of a group chain whose members are all
// enforced, kept while its policies are the same values.
type groupCostMemo struct {
	pols         []*cluster.Policy
	named, plain bool
	local        Cost
	shared       []sharedPart
	used         uint64
}

// cost returns what the group chain holds with the members of strip
// quarantined (they add nothing), with its port dispatch as portDispatch
// builds it; port and end chains already counted for another group
// (seen, by content) are not counted again. With no member quarantined,
// the count is the Compiler's from an earlier compile when the group's
// policies are the same values.
func (g *groupUse) cost(cc *Compiler, strip map[quarantine.Object]quarantine.Decision, seen map[string]bool) Cost {
	var local Cost
	var shared []sharedPart
	stripped := false
	for _, m := range g.members {
		if _, ok := strip[m.obj]; ok {
			stripped = true
			break
		}
	}
	if m := cc.groupCosts[g.rawKey]; !stripped && m != nil && m.named == g.named && m.plain == g.plain && slices.Equal(m.pols, g.pols) {
		m.used = cc.gen
		local, shared = m.local, m.shared
	} else {
		local, shared = g.parts(strip)
		if !stripped {
			if cc.groupCosts == nil {
				cc.groupCosts = map[string]*groupCostMemo{}
			}
			cc.groupCosts[g.rawKey] = &groupCostMemo{pols: g.pols, named: g.named, plain: g.plain, local: local, shared: shared, used: cc.gen}
		}
	}
	for _, sp := range shared {
		if !seen[sp.key] {
			seen[sp.key] = true
			local = local.Add(sp.cost)
		}
	}
	return local
}

// parts returns what the group chain holds itself, and the shared chains
// it goes to.
func (g *groupUse) parts(strip map[quarantine.Object]quarantine.Decision) (Cost, []sharedPart) {
	n := 0
	for _, m := range g.members {
		n += len(m.shape.allows)
	}
	all := make(map[allowID]*allowKey, n) // the last of each, as all are alike
	var logs Cost
	adding := 0
	for _, m := range g.members {
		if _, stripped := strip[m.obj]; stripped {
			continue
		}
		logs = logs.Add(m.shape.log)
		if !m.shape.empty() {
			adding++
		}
		for i := range m.shape.allows {
			a := &m.shape.allows[i]
			all[a.id()] = a
		}
	}
	// With allowed logging, the allows of two policies differ in their
	// verdicts (a log chain per policy), and the chain keeps them in
	// written order; those of one policy alone share one, and dispatch.
	plain := g.plain && adding > 1
	c := logs.Add(Cost{Rules: 1 + g.tail, Chains: 1})
	if g.named {
		c = c.Add(Cost{Rules: 2, Chains: 1}) // the deny decider's log chain
	}
	if plain {
		c.Rules += len(all)
		return c, nil
	}
	allows := coverAllows(all) // distinct
	keyed := 0
	for _, a := range allows {
		if len(a.points) > 0 {
			keyed++
		}
	}
	if keyed < minPortDispatch {
		c.Rules += len(allows)
		return c, nil
	}
	var rest []allowID
	byPoint := map[portPoint]map[allowPeer]bool{} // the peers on each port
	for _, a := range allows {
		if len(a.points) == 0 {
			rest = append(rest, a.id())
			continue
		}
		for _, pt := range a.points {
			if byPoint[pt] == nil {
				byPoint[pt] = map[allowPeer]bool{}
			}
			byPoint[pt][a.peer] = true
		}
	}
	// The dispatch rule, then the rules for any port and the tail, in the
	// chain and (when its copies would be many) in a shared end.
	after := len(rest) + g.tail
	c.Rules += 1 + len(rest)
	slices.SortFunc(rest, compareAllowIDs)
	var eb strings.Builder
	eb.WriteString(g.prefix)
	eb.WriteString("|end|")
	for _, id := range rest {
		writePeer(&eb, id.peer)
		writeField(&eb, id.port)
		writeField(&eb, id.named)
	}
	if g.named {
		// The end's drop goes to the deny decider's log chain, which
		// names every member: port chains of two groups differ.
		eb.WriteString("|deny")
		eb.WriteString(g.key(strip))
	}
	end := eb.String()
	var shared []sharedPart
	copied := after
	if sharedEnd(after, len(byPoint)) {
		copied = 1 // a goto to the shared end
		shared = append(shared, sharedPart{end, Cost{Rules: after, Chains: 1}})
	}
	c.Elements += len(byPoint) // the map's entries
	for pt, peers := range byPoint {
		var k strings.Builder
		k.WriteString("|port")
		k.WriteString(strconv.Itoa(int(pt.proto)))
		k.WriteByte('.')
		k.WriteString(strconv.Itoa(int(pt.port)))
		k.WriteByte('|')
		for _, p := range slices.SortedFunc(maps.Keys(peers), compareAllowPeers) {
			writePeer(&k, p)
		}
		k.WriteString(end)
		shared = append(shared, sharedPart{k.String(), Cost{Rules: len(peers) + copied, Chains: 1}})
	}
	return c, shared
}

// tierUse is one tier chain.
type tierUse struct {
	overhead Cost
	members  []part
}

// tally is the count of one node's table, by object.
type tally struct {
	cc     *Compiler // its memos (shapes, group costs)
	serial uint64    // numbers the Compiler's counts (from 1)
	base   Cost      // the node's own: skeleton, dispatch, pod network
	objs   map[quarantine.Object]*objCost
	groups []*groupUse
	tiers  []*tierUse
	slab   []objCost // where obj takes new parts from
	// st numbers the sets objects refer to and holds their counts (the
	// Compiler's, st.n[i] valid for this count only where st.serial[i]
	// is t.serial).
	st *setTable
}

// setTable numbers the sets the counts of one Compiler refer to. A set
// keeps its number while every count uses it, so that what a policy
// refers to is recorded by number (policyShape) and counted again without
// hashing its key; a set the last count did not use loses its number,
// which a new set may take.
type setTable struct {
	index  map[setKey]int32
	keys   []setKey // by number; the zero setKey for a free number
	n      []int    // elements, for the count serial[i]
	serial []uint64
	free   []int32
	// mark and stamp tell the sets a walk has seen (distinct).
	mark  []uint32
	stamp uint32
}

// id returns the number of set key, giving it one.
func (s *setTable) id(key setKey) int32 {
	if i, ok := s.index[key]; ok {
		return i
	}
	if s.index == nil {
		s.index = map[setKey]int32{}
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
		s.keys[i], s.n[i], s.serial[i], s.mark[i] = key, 0, 0, 0
	} else {
		i = int32(len(s.keys))
		s.keys, s.n, s.serial, s.mark = append(s.keys, key), append(s.n, 0), append(s.serial, 0), append(s.mark, 0)
	}
	s.index[key] = i
	return i
}

// counted reports whether count serial has counted set i.
func (s *setTable) counted(i int32, serial uint64) bool { return s.serial[i] == serial }

// sweep takes their numbers from the sets count serial did not use.
func (s *setTable) sweep(serial uint64) {
	for i, k := range s.keys {
		if k != (setKey{}) && s.serial[i] != serial {
			delete(s.index, k)
			s.keys[i] = setKey{}
			s.free = append(s.free, int32(i))
		}
	}
}

// setKind tells what a set of the count holds.
type setKind uint8

const (
	setPeer setKind = iota + 1
	setBlock
	setPorts
	setNamed
	setNodes
	setNamedDisputed
	setDisputed
)

// setKey names a set of the count: its kind, the key of what it is made
// from (a peer's, a port set's name, a named-port list) and its family.
type setKey struct {
	kind setKind
	fam  uint8
	key  string
}

// nextStamp starts a walk of distinct sets (seen).
func (s *setTable) nextStamp() {
	s.stamp++
	if s.stamp == 0 { // wrapped: no mark may look current
		clear(s.mark)
		s.stamp = 1
	}
}

// seen reports whether the walk begun by nextStamp saw set i before, and
// marks it seen.
func (s *setTable) seen(i int32) bool {
	if s.mark[i] == s.stamp {
		return true
	}
	s.mark[i] = s.stamp
	return false
}

// elements returns the elements of the distinct sets oc refers to.
func (t *tally) elements(oc *objCost) int {
	t.st.nextStamp()
	n := 0
	for _, i := range oc.sets {
		if !t.st.seen(i) {
			n += t.st.n[i]
		}
	}
	return n
}

// total returns the node's count with the objects of strip quarantined.
func (t *tally) total(strip map[quarantine.Object]quarantine.Decision) Cost {
	sum := t.base
	seen := map[string]bool{}
	shared := map[string]bool{} // port chains and shared ends, by content
	for _, g := range t.groups {
		if k := g.key(strip); !seen[k] {
			seen[k] = true
			sum = sum.Add(g.cost(t.cc, strip, shared))
		}
	}
	for _, tu := range t.tiers {
		sum = sum.Add(tu.overhead)
		for _, m := range tu.members {
			if _, ok := strip[m.obj]; ok {
				sum = sum.Add(m.strip)
				break
			}
			sum = sum.Add(m.cost)
			if m.terminal {
				break
			}
		}
	}
	t.st.nextStamp()
	for o, oc := range t.objs {
		if _, ok := strip[o]; ok {
			continue
		}
		for _, i := range oc.sets {
			if !t.st.seen(i) {
				sum.Elements += t.st.n[i]
			}
		}
	}
	return sum
}

// own sums each object's parts (once per distinct chain) and sets.
func (t *tally) own() {
	seen := map[string]bool{}
	for _, g := range t.groups {
		if k := g.key(nil); !seen[k] {
			seen[k] = true
			for _, m := range g.members {
				oc := t.objs[m.obj]
				oc.cost = oc.cost.Add(m.shape.own())
			}
		}
	}
	for _, tu := range t.tiers {
		for _, m := range tu.members {
			oc := t.objs[m.obj]
			oc.cost = oc.cost.Add(m.cost)
			oc.strip = oc.strip.Add(m.strip)
		}
	}
	for _, oc := range t.objs {
		oc.cost.Elements += t.elements(oc)
	}
}

// obj returns the part of o, creating it.
func (t *tally) obj(o quarantine.Object, created time.Time) *objCost {
	oc := t.objs[o]
	if oc == nil {
		if len(t.slab) == 0 {
			t.slab = make([]objCost, 64)
		}
		oc, t.slab = &t.slab[0], t.slab[1:]
		oc.obj, oc.created = o, created
		t.objs[o] = oc
	}
	return oc
}

// useSet records that oc refers to set key of n elements (the most any
// use of key counted), and returns the set's number.
func (t *tally) useSet(oc *objCost, key setKey, n int) int32 {
	i := t.st.id(key)
	t.useSetAt(oc, i, n)
	return i
}

// useSetAt is useSet by the set's number.
func (t *tally) useSetAt(oc *objCost, i int32, n int) {
	switch {
	case !t.st.counted(i, t.serial):
		t.st.n[i], t.st.serial[i] = n, t.serial
	case n > t.st.n[i]:
		t.st.n[i] = n
	}
	if l := len(oc.sets); l == 0 || oc.sets[l-1] != i {
		oc.sets = append(oc.sets, i)
	}
}

// decide returns the node's quarantine decisions (imposed and by budget)
// and records them in c.strip and the Compiler.
func (c *compiler) decide() []quarantine.Decision {
	opts := c.cc.Options
	imposed := opts.Quarantine.Node(c.node)
	if opts.Budget.IsZero() && len(imposed) == 0 {
		c.cc.quarantined, c.cc.lastCost = nil, Cost{}
		return nil
	}
	t := c.count()
	strip := map[quarantine.Object]quarantine.Decision{}
	for _, d := range imposed {
		strip[d.Object] = d
	}
	objs := slices.SortedFunc(maps.Values(t.objs), func(a, b *objCost) int { return a.obj.Compare(b.obj) })
	for _, oc := range objs {
		if _, done := strip[oc.obj]; done {
			continue
		}
		if dim, over := oc.cost.over(opts.Budget.Object); over {
			strip[oc.obj] = quarantine.Decision{Object: oc.obj, Node: c.node, Reason: quarantine.OverObjectBudget,
				Figure:     quarantine.Figure{Dimension: dim, Cost: oc.cost.dim(dim), Budget: opts.Budget.Object.dim(dim)},
				ObjectCost: oc.cost.dim(dim), Created: oc.created}
		}
	}
	total := t.total(strip)
	for {
		dim, over := total.over(opts.Budget.Node)
		if !over {
			break
		}
		var pick *objCost
		for _, oc := range objs {
			if _, done := strip[oc.obj]; done || oc.cost.dim(dim) <= oc.strip.dim(dim) {
				continue
			}
			if pick == nil || costlier(oc, pick, dim) {
				pick = oc
			}
		}
		if pick == nil {
			break // what is left is the node's own (its pods), no object's
		}
		strip[pick.obj] = quarantine.Decision{Object: pick.obj, Node: c.node, Reason: quarantine.OverNodeBudget,
			Figure:     quarantine.Figure{Dimension: dim, Cost: total.dim(dim), Budget: opts.Budget.Node.dim(dim)},
			ObjectCost: pick.cost.dim(dim), Created: pick.created}
		total = t.total(strip)
	}
	c.strip = strip
	out := slices.SortedFunc(maps.Values(strip), func(a, b quarantine.Decision) int { return a.Object.Compare(b.Object) })
	for i := range out {
		if oc := t.objs[out[i].Object]; oc != nil && out[i].Created.IsZero() {
			out[i].Created = oc.created
		}
	}
	c.cc.quarantined, c.cc.lastCost = out, total
	c.cc.forgetCounts()
	c.cc.sets.sweep(t.serial)
	return out
}

// costlier reports whether a goes before b when bringing a node under its
// budget in dimension dim: the higher cost, then the newer, then the first
// by kind and key.
func costlier(a, b *objCost, dim string) bool {
	if x, y := a.cost.dim(dim), b.cost.dim(dim); x != y {
		return x > y
	}
	if !a.created.Equal(b.created) {
		return a.created.After(b.created)
	}
	return a.obj.Compare(b.obj) < 0
}

// count walks what Compile will build for the node, without building it.
func (c *compiler) count() *tally {
	c.cc.counts++
	t := &tally{cc: c.cc, serial: c.cc.counts, objs: map[quarantine.Object]*objCost{}, st: &c.cc.sets}
	k := &counter{c: c, t: t, tiers: map[string]bool{}, policies: map[*cluster.Policy]*objCost{}}
	opts := c.cc.Options
	// The skeleton: two base chains (established, dispatch, neighbour
	// discovery) and four dispatch maps.
	t.base = Cost{Rules: 6 + 4, Chains: 2}
	if opts.CutMark != 0 {
		t.base.Rules += 2
	}
	if opts.FlowMark != 0 {
		t.base.Rules += 8 + 4
	}
	if len(opts.PodNetwork) > 0 {
		t.base.Rules += 5 + 3
		// The pod network less the exempt prefixes (each splits at most
		// one range), and the known addresses: the pods', then the Nodes'
		// own and gateway addresses.
		t.base.Elements += len(opts.PodNetwork) + len(opts.PodNetworkExempt) + len(c.own)
		for _, n := range c.src.Nodes() {
			t.base.Elements += len(n.IPs) + len(n.Gateways)
		}
	}
	if opts.Log.Drops {
		t.base = t.base.Add(Cost{Rules: 4, Chains: 2}) // the conntrack-invalid deciders
	}
	t.base = t.base.Add(Cost{Rules: 2, Chains: 1}) // the invalid chain
	for _, p := range c.src.Pods() {
		if p.NodeName != c.node || p.HostNetwork || len(p.IPs) == 0 {
			continue
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			for _, ip := range p.IPs {
				if c.own[ip] != p {
					continue
				}
				if k.podChain(d, p, family(ip), false) != "" {
					t.base.Elements++
				}
			}
		}
		if opts.FlowMark != 0 {
			t.base.Elements += len(p.IPs)
		}
	}
	for ip, cl := range c.claims {
		if !c.hasLocal(cl) {
			continue
		}
		for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
			n := 0
			for _, p := range cl {
				if k.podChain(d, p, family(ip), true) != "" {
					n++
				}
			}
			if n > 0 {
				t.base = t.base.Add(Cost{Rules: n + 1, Elements: 1, Chains: 1})
			}
		}
	}
	t.own()
	return t
}

// counter counts the chains of pods, once each, as podChain builds them.
type counter struct {
	c     *compiler
	t     *tally
	tiers map[string]bool // tier chain keys counted
	// declared counts, by named port, family and scope (every pod, or
	// this node's), the pods that declare it: an upper bound on a
	// named-port set's elements (the Compiler's, taken on first use).
	declared map[namedPort]*[4]int
	// built counts the peer set elements counted so far (peerCount).
	built int
	// rec records the sets of the policy being counted (policyShape).
	rec *policyShape
	// policies are the NetworkPolicies' parts in t, by value.
	policies map[*cluster.Policy]*objCost
	peerBuf  []allowPeer // npRule's, reused
}

type namedScope struct {
	family int
	port   namedPort
	wide   bool
}

// podChain mirrors compiler.podChain: it counts the chains pod p's
// direction d dispatches to and returns a key naming the first ("" when
// nothing isolates or selects it).
func (k *counter) podChain(d cluster.Direction, p *cluster.Pod, fam int, chained bool) string {
	sel := k.c.rawSelection(d, p)
	group, admin, baseline := sel.group, sel.admin, sel.baseline
	if len(admin) == 0 && (len(baseline) == 0 || len(group) > 0) {
		if len(group) == 0 {
			return ""
		}
		return k.group(d, group, fam, chained)
	}
	next := ""
	switch {
	case len(group) > 0:
		next = k.group(d, group, fam, chained)
	case len(baseline) > 0:
		next = k.tier(d, "baseline", baseline, fam, chained, "")
	}
	if len(admin) == 0 {
		return next
	}
	return k.tier(d, "tier", admin, fam, chained, next)
}

// group counts a group chain (groupChain) once.
func (k *counter) group(d cluster.Direction, group []*cluster.Policy, fam int, chained bool) string {
	ret := chained && d == cluster.Ingress
	prefix := groupPrefix(d, fam, ret)
	key := groupKey(prefix, group)
	cc, log := k.c.cc, k.c.cc.Options.Log
	g := cc.groupUses[key]
	if g != nil && g.counted == k.t.serial {
		return key // counted already (one key, one group in a compile)
	}
	// The Compiler's group of the same policy values, when it has one:
	// its members' names and shapes are those of the values.
	if g == nil || g.named != log.Drops || g.plain != log.Allowed || !slices.Equal(g.pols, group) {
		tail := 1 // the drop
		if d == cluster.Ingress {
			tail = 2 // node traffic, the drop
		}
		g = &groupUse{prefix: prefix, rawKey: key, pols: group, tail: tail, named: log.Drops, plain: log.Allowed,
			members: make([]groupMember, len(group))}
		if cc.groupUses == nil {
			cc.groupUses = map[string]*groupUse{}
		}
		cc.groupUses[key] = g
	}
	g.used, g.counted = cc.gen, k.t.serial
	for i, p := range group {
		oc := k.policies[p]
		if oc == nil {
			oc = k.policyPart(p)
		}
		g.members[i] = groupMember{obj: oc.obj, shape: k.policyShape(oc, p, d, fam)}
	}
	k.t.groups = append(k.t.groups, g)
	return key
}

// policyPart returns the part of NetworkPolicy p in the count, creating
// it with the name and (as room for its sets) the number of sets the
// Compiler's last count gave it.
func (k *counter) policyPart(p *cluster.Policy) *objCost {
	cc := k.c.cc
	m := cc.policyParts[p]
	if m == nil {
		if cc.policyParts == nil {
			cc.policyParts = map[*cluster.Policy]*policyPart{}
		}
		m = &policyPart{obj: quarantine.PolicyObject(p)}
		cc.policyParts[p] = m
	}
	m.used = cc.gen
	oc := k.t.obj(m.obj, p.Created)
	if oc.sets == nil && m.sets > 0 {
		oc.sets = make([]int32, 0, m.sets)
	}
	k.policies[p] = oc
	m.part = oc
	return oc
}

// policyPart is what the Compiler keeps of a NetworkPolicy's part in its
// counts: its name, and its part in the last count (for the number of
// sets it referred to, forgetCounts).
type policyPart struct {
	obj  quarantine.Object
	part *objCost
	sets int
	used uint64
}

// groupPrefix is "direction/family/variant", as groupChain writes it.
func groupPrefix(d cluster.Direction, fam int, ret bool) string {
	switch {
	case d == cluster.Ingress && fam == 4 && ret:
		return "ingress/4/true"
	case d == cluster.Ingress && fam == 4:
		return "ingress/4/false"
	case d == cluster.Ingress && ret:
		return "ingress/6/true"
	case d == cluster.Ingress:
		return "ingress/6/false"
	case fam == 4 && ret:
		return "egress/4/true"
	case fam == 4:
		return "egress/4/false"
	case ret:
		return "egress/6/true"
	}
	return "egress/6/false"
}

// groupKey is prefix followed by "|namespace/name" of each policy of
// group, built in one allocation.
func groupKey(prefix string, group []*cluster.Policy) string {
	n := len(prefix)
	for _, p := range group {
		n += 2 + len(p.Namespace) + len(p.Name)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(prefix)
	for _, p := range group {
		b.WriteByte('|')
		b.WriteString(p.Namespace)
		b.WriteByte('/')
		b.WriteString(p.Name)
	}
	return b.String()
}

// shapeKey names what a policy adds to the group chains of one direction
// and family.
type shapeKey struct {
	p   *cluster.Policy
	d   cluster.Direction
	fam int
	log bool // allowed logging
}

// policyShape is a policy's shape and the sets it refers to, kept while the
// policy is the same value (the sets' sizes are counted again each time).
type policyShape struct {
	shape groupShape
	refs  []setRef
	used  uint64
	// counted is the last count (tally.serial) its sets were counted
	// in: counting them again for the same object changes nothing.
	counted uint64
}

// setRef is one set a policy's rules refer to: a pods peer's set (counted
// on each compile), a named-port set (likewise) or one of fixed size.
type setRef struct {
	peer  *cluster.Peer
	named []namedPort
	d     cluster.Direction
	id    int32 // its number (setTable), which it keeps while used
	n     int
}

// policyShape returns what policy p adds to a group chain of direction d
// and family fam, counting the sets it refers to for oc; from the
// Compiler's memo when p is the value it was.
func (k *counter) policyShape(oc *objCost, p *cluster.Policy, d cluster.Direction, fam int) groupShape {
	sk := shapeKey{p, d, fam, k.c.cc.Options.Log.Allowed}
	if ps := k.c.cc.shapes[sk]; ps != nil {
		ps.used = k.c.cc.gen
		if ps.counted == k.t.serial {
			return ps.shape
		}
		ps.counted = k.t.serial
		for _, r := range ps.refs {
			switch {
			case r.peer != nil:
				k.peerSetAt(oc, r.id, r.peer, fam)
			case r.named != nil:
				k.t.useSetAt(oc, r.id, k.namedCount(r.named, fam, r.d))
			default:
				k.t.useSetAt(oc, r.id, r.n)
			}
		}
		return ps.shape
	}
	ps := &policyShape{used: k.c.cc.gen, counted: k.t.serial}
	k.rec = ps
	for _, rule := range p.Rules(d) {
		n := len(ps.shape.allows)
		ps.shape.allows = k.npRule(ps.shape.allows, oc, d, rule, fam)
		if sk.log && len(ps.shape.allows) > n {
			ps.shape.log = ps.shape.log.Add(Cost{Rules: 2, Chains: 1})
		}
	}
	ps.shape.allows = slices.Clip(ps.shape.allows)
	// Counting a set again for the same object changes nothing: the
	// memo keeps each set once, first uses first.
	k.t.st.nextStamp()
	ps.refs = slices.DeleteFunc(ps.refs, func(r setRef) bool { return k.t.st.seen(r.id) })
	k.rec = nil
	if k.c.cc.shapes == nil {
		k.c.cc.shapes = map[shapeKey]*policyShape{}
	}
	k.c.cc.shapes[sk] = ps
	return ps.shape
}

// useFixed counts a set of n elements whatever the cluster (an ipBlock's,
// a port set), recording it for the policy being counted.
func (k *counter) useFixed(oc *objCost, key setKey, n int) {
	i := k.t.useSet(oc, key, n)
	if k.rec != nil {
		k.rec.refs = append(k.rec.refs, setRef{id: i, n: n})
	}
}

// npRule counts one NetworkPolicy rule in a group chain of family fam,
// and the sets it refers to. The allow rules it makes are one per (peer,
// port form); in a port dispatch, a rule on single ports is in the chain
// of each of its ports (one rule there, an entry in the map, the chain
// itself and up to maxCopiedRest rules of the group's end or a goto to
// it); a rule on anything else is in the group chain and its shared end.
func (k *counter) npRule(out []allowKey, oc *objCost, d cluster.Direction, rule cluster.Rule, fam int) []allowKey {
	portSet, named, ok := k.c.portMatch(rule)
	if !ok {
		return out
	}
	peers := k.peerBuf[:0]
	defer func() { k.peerBuf = peers[:0] }()
	if rule.AllPeers {
		peers = append(peers, everyPeer)
	}
	for i := range rule.Peers {
		peer := &rule.Peers[i]
		switch peer.Kind {
		case cluster.PeerPods:
			peers = append(peers, allowPeer{cluster.PeerPods, peer.Key})
			k.peerSet(oc, peer, fam)
		case cluster.PeerIPBlock:
			if family(peer.CIDR.Addr()) == fam {
				peers = append(peers, allowPeer{cluster.PeerIPBlock, peer.Key})
				k.useFixed(oc, setKey{setBlock, uint8(fam), peer.Key}, len(peer.Except)+1)
			}
		}
	}
	if len(peers) == 0 {
		return out
	}
	if portSet != "" || len(named) == 0 {
		var pts []portPoint
		if points := k.portSet(oc, portSet); points > 0 {
			elems := k.c.portElements(portSet)
			pts = make([]portPoint, 0, len(elems))
			for _, e := range elems {
				pts = append(pts, portPoint{e.Proto, e.Port})
			}
		}
		for _, p := range peers {
			out = append(out, allowKey{peer: p, port: portSet, points: pts})
		}
	}
	for _, ns := range k.namedSets(oc, named, fam, d, len(peers)) {
		for _, p := range peers {
			out = append(out, allowKey{peer: p, named: ns})
		}
	}
	return out
}

// namedSets counts the named-port sets of a rule as compiler.namedSets
// makes them, and returns their keys.
func (k *counter) namedSets(oc *objCost, named []namedPort, fam int, d cluster.Direction, peers int) []string {
	if len(named) == 0 {
		return nil
	}
	if len(named) == 1 || peers*len(named) > maxNamedRules {
		return []string{k.namedSet(oc, named, fam, d)}
	}
	out := make([]string, len(named))
	for i := range named {
		out[i] = k.namedSet(oc, named[i:i+1], fam, d)
	}
	return out
}

// portSet counts a port set and returns the number of single ports it
// holds when it holds nothing else (the points a port dispatch would
// have), else 0.
func (k *counter) portSet(oc *objCost, name string) int {
	if name == "" {
		return 0
	}
	s := k.c.pending[name]
	if s == nil {
		s = k.c.sets[name]
	}
	if s == nil {
		return 0
	}
	k.useFixed(oc, setKey{setPorts, 0, name}, s.Len())
	if s.Interval {
		return 0
	}
	return s.Len()
}

// peerSet counts the peer set of family fam of a pods peer, and returns
// its elements.
func (k *counter) peerSet(oc *objCost, peer *cluster.Peer, fam int) int {
	i := k.t.st.id(setKey{setPeer, uint8(fam), peer.Key})
	if k.rec != nil {
		k.rec.refs = append(k.rec.refs, setRef{peer: peer, id: i})
	}
	return k.peerSetAt(oc, i, peer, fam)
}

// peerSetAt is peerSet by the set's number.
func (k *counter) peerSetAt(oc *objCost, i int32, peer *cluster.Peer, fam int) int {
	if !k.t.st.counted(i, k.t.serial) {
		n := k.peerCount(oc, peer, fam)
		k.built += n
		k.t.useSetAt(oc, i, n)
		return n
	}
	n := k.t.st.n[i]
	k.t.useSetAt(oc, i, n)
	return n
}

// peerCount returns the number of addresses of family fam the pods a pods
// peer selects hold (an upper bound on its set's elements). It builds the
// set's addresses in the Compiler's cache, as the compile that follows
// would (which then reuses them), while the object and the node are within
// their element budgets; past them it only walks the pods, building
// nothing: an object too large is never built.
func (k *counter) peerCount(oc *objCost, peer *cluster.Peer, fam int) int {
	if e := k.c.cc.peers[peerFam{peer.Key, fam}]; e != nil && e.version == k.c.src.PeerVersion(peer) {
		return e.addrs.Len()
	}
	b := k.c.cc.Options.Budget
	mine := k.t.elements(oc)
	if (b.Object.Elements <= 0 || mine <= b.Object.Elements) && (b.Node.Elements <= 0 || k.built <= b.Node.Elements) {
		return k.c.cc.cachedPeer(k.c.src, peer, fam, k.c.own, k.c.claims).addrs.Len()
	}
	n := 0
	k.c.src.EachPeerPod(peer, func(p *cluster.Pod) {
		if _, ok := p.IP(fam); ok {
			n++
		}
	})
	return n
}

// namedSet counts a named-port set: at most, for each of its entries, the
// pods that declare it (this node's for ingress, every pod for egress),
// and every contested address.
func (k *counter) namedSet(oc *objCost, named []namedPort, fam int, d cluster.Direction) string {
	list := namedList(named)
	i := k.t.useSet(oc, setKey{setNamed, uint8(fam), list}, k.namedCount(named, fam, d))
	if k.rec != nil {
		k.rec.refs = append(k.rec.refs, setRef{named: named, d: d, id: i})
	}
	return list
}

// namedCount is the most elements a named-port set of named holds.
func (k *counter) namedCount(named []namedPort, fam int, d cluster.Direction) int {
	wide := d == cluster.Egress
	n := len(k.c.claims) * len(named)
	for _, np := range named {
		n += k.declaredCount(namedScope{fam, np, wide})
	}
	return n
}

func (k *counter) declaredCount(s namedScope) int {
	if k.declared == nil {
		k.declared = k.c.cc.declared.update(k.c.src.Pods(), k.c.node)
	}
	c := k.declared[s.port]
	if c == nil {
		return 0
	}
	return c[declaredSlot(s.family, !s.wide)]
}

// declaredPods counts, for each named port, the pods that declare it, in
// four slots (declaredSlot): by family (the pod has an address of it) and
// scope (every pod, or one node's). It is kept in the Compiler with the
// pods it counted, and updated on the next compile of the same node for
// the pods that changed only: pods are values replaced on change, never
// modified (Source), so a pod value counts the same for as long as the
// Source holds it.
type declaredPods struct {
	node   string
	pods   []*cluster.Pod // counted, in the Source's order (a copy)
	counts map[namedPort]*[4]int
}

// declaredSlot is the slot of family fam, every pod (local false) or the
// node's (true).
func declaredSlot(fam int, local bool) int {
	i := 0
	if fam == 6 {
		i = 2
	}
	if local {
		i++
	}
	return i
}

// update returns the counts for pods and node: counted again in full for
// another node or when most pods changed, else adjusted for the pods
// that are not in both lists (the values before and after a change are
// different pointers). The counts must not be modified.
func (d *declaredPods) update(pods []*cluster.Pod, node string) map[namedPort]*[4]int {
	if d.counts == nil || d.node != node {
		d.recount(pods, node)
		return d.counts
	}
	gone, came, ok := podChanges(d.pods, pods)
	if !ok {
		d.recount(pods, node)
		return d.counts
	}
	for _, p := range came {
		d.add(p, 1)
	}
	for _, p := range gone {
		d.add(p, -1)
	}
	d.pods = append(d.pods[:0], pods...)
	return d.counts
}

// podChanges returns the pod values only old holds and those only pods
// holds (the values before and after a change are different pointers),
// and false when they are many (a quarter of pods): counting again is
// then as cheap.
func podChanges(old, pods []*cluster.Pod) (gone, came []*cluster.Pod, ok bool) {
	// What both lists share at their ends is the same pods in the same
	// order; what is left differs (a pod added, removed or replaced).
	i := 0
	for i < len(old) && i < len(pods) && old[i] == pods[i] {
		i++
	}
	j, k := len(old), len(pods)
	for j > i && k > i && old[j-1] == pods[k-1] {
		j--
		k--
	}
	if (j-i)+(k-i) > len(pods)/4 {
		return nil, nil, false
	}
	left := make(map[*cluster.Pod]int, j-i)
	for _, p := range old[i:j] {
		left[p]++
	}
	for _, p := range pods[i:k] {
		if left[p] > 0 {
			left[p]-- // moved, not changed
			continue
		}
		came = append(came, p)
	}
	for _, p := range old[i:j] {
		if left[p] > 0 {
			left[p]--
			gone = append(gone, p)
		}
	}
	return gone, came, true
}

// recount counts pods for node from nothing.
func (d *declaredPods) recount(pods []*cluster.Pod, node string) {
	d.node, d.counts = node, map[namedPort]*[4]int{}
	for _, p := range pods {
		d.add(p, 1)
	}
	d.pods = append(d.pods[:0], pods...)
}

// add adds (by +1) or removes (by -1) pod p's named ports.
func (d *declaredPods) add(p *cluster.Pod, by int) {
	if p.HostNetwork || len(p.Ports) == 0 {
		return
	}
	_, has4 := p.IP(4)
	_, has6 := p.IP(6)
	if !has4 && !has6 {
		return
	}
	local := p.NodeName == d.node
	for _, cp := range p.Ports {
		if cp.Name == "" {
			continue
		}
		np := namedPort{cp.Name, cp.Protocol}
		c := d.counts[np]
		if c == nil {
			c = &[4]int{}
			d.counts[np] = c
		}
		for _, fam := range []int{4, 6} {
			if fam == 4 && !has4 || fam == 6 && !has6 {
				continue
			}
			c[declaredSlot(fam, false)] += by
			if local {
				c[declaredSlot(fam, true)] += by
			}
		}
		if *c == ([4]int{}) {
			delete(d.counts, np)
		}
	}
}

// tier counts a tier chain (tierChain) once: its entries as single rules
// (and, for those a tier map may hold, the map's elements too).
func (k *counter) tier(d cluster.Direction, kind string, cps []*cluster.ClusterPolicy, fam int, chained bool, next string) string {
	var tk strings.Builder
	fmt.Fprintf(&tk, "%s/%s/%d/%v/%s", d, kind, fam, chained, next)
	for _, cp := range cps {
		tk.WriteString("|" + cp.Name)
	}
	key := tk.String()
	if k.tiers[key] {
		return key
	}
	k.tiers[key] = true
	t, log := k.t, k.c.cc.Options.Log
	tu := &tierUse{overhead: Cost{Rules: 3, Chains: 1}} // ct invalid, node traffic, end
	for _, cp := range cps {
		oc := t.obj(quarantine.ClusterPolicyObject(cp), cp.Created)
		m := part{obj: oc.obj}
		rules := cp.Rules(d)
		// An ingress rule that drops goes to a node-first drop chain
		// (nodeFirstDrop): node traffic, then the drop.
		firstDrop := Cost{}
		if d == cluster.Ingress {
			firstDrop = Cost{Rules: 2, Chains: 1}
		}
		if len(rules) > 0 {
			m.strip = Cost{Rules: 1}.Add(firstDrop)
			if log.Drops {
				m.strip = m.strip.Add(Cost{Rules: 2, Chains: 1})
			}
		}
		for ri := range rules {
			r := &rules[ri]
			m.terminal = m.terminal || r.MatchAll
			m.cost = m.cost.Add(k.cnpRule(oc, d, r, fam))
			if log.Drops || log.Allowed {
				m.cost = m.cost.Add(Cost{Rules: 2, Chains: 1})
			}
			if r.Action != cluster.ActionAccept && r.Action != cluster.ActionPass {
				m.cost = m.cost.Add(firstDrop)
			}
			if r.Action != cluster.ActionAccept && !r.MatchAll && k.c.disputed(r, fam) {
				// The rule's disputed entry (tierChain): a Pass's drops
				// with a decider and a node-first chain of their own.
				m.cost = m.cost.Add(k.disputedRule(oc, d, r, fam))
				if r.Action == cluster.ActionPass {
					m.cost = m.cost.Add(firstDrop)
					if log.Drops {
						m.cost = m.cost.Add(Cost{Rules: 2, Chains: 1})
					}
				}
			}
		}
		tu.members = append(tu.members, m)
	}
	t.tiers = append(t.tiers, tu)
	return key
}

// cnpRule counts one ClusterNetworkPolicy rule in a tier chain of family
// fam: its single rules (one per peer and port form), one more for the
// lookups of a tier map, and the map's elements when it can be in one (at
// most maxElementsPerBox a box).
func (k *counter) cnpRule(oc *objCost, d cluster.Direction, r *cluster.ClusterRule, fam int) Cost {
	out := Cost{Rules: 1} // a run of two or more rules laid out as a map takes at most one rule more (three lookups)
	if r.MatchAll {
		return out.Add(Cost{Rules: 1})
	}
	portSet, named, ok := k.c.portMatch(cluster.Rule{Ports: r.Ports, AllPorts: r.AllPorts})
	if !ok {
		return out
	}
	k.portSet(oc, portSet)
	ports, forms := k.ruleForms(oc, d, r, fam, portSet, named)
	boxes := 0
	for i := range r.Peers {
		peer := &r.Peers[i]
		n := 0
		switch peer.Kind {
		case cluster.PeerPods:
			n = k.peerSet(oc, peer, fam)
		case cluster.PeerIPBlock:
			if family(peer.CIDR.Addr()) != fam {
				continue
			}
			n = len(peer.Except) + 1
			k.t.useSet(oc, setKey{setBlock, uint8(fam), peer.Key}, n)
		case cluster.PeerNodes:
			n = len(k.c.nodeAddrs(peer, fam, false))
			k.t.useSet(oc, setKey{setNodes, uint8(fam), peer.Key}, n)
		default:
			continue
		}
		out.Rules += forms
		boxes += n * ports
	}
	if len(named) == 0 && boxes <= maxTierRuleBoxes {
		out.Elements += maxElementsPerBox * boxes
	}
	return out
}

// disputedRule counts the disputed entry of a Deny or Pass rule
// (plainTierRules with e.disputed): for each peer, its set of disputed
// addresses in each port form, and its own and disputed sets on each
// named port's disputed set; the map's elements for the disputed
// addresses. Its sets are counted as the compile makes them.
func (k *counter) disputedRule(oc *objCost, d cluster.Direction, r *cluster.ClusterRule, fam int) Cost {
	out := Cost{Rules: 1}
	portSet, named, ok := k.c.portMatch(cluster.Rule{Ports: r.Ports, AllPorts: r.AllPorts})
	if !ok {
		return out
	}
	ports, forms := k.ruleForms(oc, d, r, fam, portSet, named)
	anyNamed := 0
	for _, np := range named {
		if n := len(k.c.disputedNamed(np, fam)); n > 0 {
			anyNamed++
			k.t.useSet(oc, setKey{setNamedDisputed, uint8(fam), namedList([]namedPort{np})}, n)
		}
	}
	boxes := 0
	for i := range r.Peers {
		peer := &r.Peers[i]
		if peer.Kind == cluster.PeerIPBlock && family(peer.CIDR.Addr()) != fam {
			continue
		}
		out.Rules += 2 * anyNamed
		n := len(k.c.disputedAddrs(peer, fam))
		if n == 0 {
			continue
		}
		k.t.useSet(oc, setKey{setDisputed, uint8(fam), peer.Key}, n)
		out.Rules += forms
		boxes += n * ports
	}
	if len(named) == 0 && boxes <= maxTierRuleBoxes {
		out.Elements += maxElementsPerBox * boxes
	}
	return out
}

// selection returns what applies to p in direction d, with the objects
// quarantined on the node in their stripped forms; rawSelection (tiers.go)
// is the same as written.
func (c *compiler) selection(d cluster.Direction, p *cluster.Pod) podSelection {
	sel := c.rawSelection(d, p)
	if len(c.strip) == 0 {
		return sel
	}
	k := podDir{p, d}
	if s, ok := c.strippedSel[k]; ok {
		return s
	}
	if c.strippedSel == nil {
		c.strippedSel = map[podDir]podSelection{}
	}
	s := c.stripped(sel)
	c.strippedSel[k] = s
	return s
}

// stripped returns sel with the objects quarantined on the node in their
// stripped forms, shared across compiles (so that the group chains of a
// quarantined policy are kept, memo.go).
func (c *compiler) stripped(sel podSelection) podSelection {
	if len(c.strip) == 0 {
		return sel
	}
	var out podSelection
	for _, p := range sel.group {
		if _, ok := c.strip[quarantine.PolicyObject(p)]; ok {
			p = c.cc.strippedPolicy(p)
		}
		out.group = append(out.group, p)
	}
	cps := func(in []*cluster.ClusterPolicy) []*cluster.ClusterPolicy {
		var o []*cluster.ClusterPolicy
		for _, cp := range in {
			if _, ok := c.strip[quarantine.ClusterPolicyObject(cp)]; ok {
				cp = c.cc.strippedClusterPolicy(cp)
			}
			o = append(o, cp)
		}
		return o
	}
	out.admin, out.baseline = cps(sel.admin), cps(sel.baseline)
	return out
}

// strippedPolicy returns the stripped form of p, the same value for the
// same p across compiles.
func (c *Compiler) strippedPolicy(p *cluster.Policy) *cluster.Policy {
	return memoized(&c.strippedNP, p, quarantine.StripPolicy)
}

// strippedClusterPolicy is strippedPolicy for ClusterNetworkPolicies.
func (c *Compiler) strippedClusterPolicy(p *cluster.ClusterPolicy) *cluster.ClusterPolicy {
	return memoized(&c.strippedCNP, p, quarantine.StripClusterPolicy)
}

// memoized returns (*m)[k], computing it with f (and making *m) on a miss.
func memoized[K comparable, V any](m *map[K]V, k K, f func(K) V) V {
	if v, ok := (*m)[k]; ok {
		return v
	}
	if *m == nil {
		*m = map[K]V{}
	}
	v := f(k)
	(*m)[k] = v
	return v
}

// forgetCounts drops the memos of the count the last compile did not use.
func (c *Compiler) forgetCounts() {
	for k, m := range c.shapes {
		if m.used != c.gen {
			delete(c.shapes, k)
		}
	}
	for p, m := range c.policyParts {
		if m.used != c.gen {
			delete(c.policyParts, p)
			continue
		}
		m.sets, m.part = len(m.part.sets), nil
	}
	for k, m := range c.groupCosts {
		if m.used != c.gen {
			delete(c.groupCosts, k)
		}
	}
	for k, g := range c.groupUses {
		if g.used != c.gen {
			delete(c.groupUses, k)
		}
	}
}

// forgetStripped drops the stripped forms of objects no longer quarantined.
func (c *Compiler) forgetStripped() {
	keep := map[quarantine.Object]bool{}
	for _, d := range c.quarantined {
		keep[d.Object] = true
	}
	for p := range c.strippedNP {
		if !keep[quarantine.PolicyObject(p)] {
			delete(c.strippedNP, p)
		}
	}
	for p := range c.strippedCNP {
		if !keep[quarantine.ClusterPolicyObject(p)] {
			delete(c.strippedCNP, p)
		}
	}
}

// Count returns what the Ruleset holds, counted as the budgets count it.
func Count(rs *ruleset.Ruleset) Cost {
	var c Cost
	for _, s := range rs.Sets {
		c.Elements += s.Len()
	}
	for _, ch := range rs.Chains {
		c.Rules += len(ch.Rules)
	}
	c.Chains = len(rs.Chains)
	return c
}

// ruleForms counts, for a tier rule of family fam whose ports compiled to
// portSet and named, the port elements one peer crosses (at least 1) and
// the port forms each peer is matched in: the port set (or all ports), and
// one per named-port set the rule's peers use (namedSets).
func (k *counter) ruleForms(oc *objCost, d cluster.Direction, r *cluster.ClusterRule, fam int, portSet string, named []namedPort) (ports, forms int) {
	ports = max(1, len(k.c.portElements(portSet)))
	if portSet != "" || len(named) == 0 {
		forms++
	}
	if len(named) > 0 {
		n := 0
		for _, p := range r.Peers {
			if p.Kind != cluster.PeerIPBlock || family(p.CIDR.Addr()) == fam {
				n++
			}
		}
		forms += len(k.namedSets(oc, named, fam, d, n))
	}
	return ports, forms
}
