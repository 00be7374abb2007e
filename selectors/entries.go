package selectors

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
)

// nsEntry is one namespace the index has heard of: known (UpsertNamespace), or
// only referenced by pods, policies or peers.
type nsEntry struct {
	name    string
	sortKey string // name + "/": namespaces in this order list pods in key order
	ns      *cluster.Namespace
	labels  labels.Set // effective labels (see Index.NamespaceLabels)
	// live namespaces (known, or holding pods) are the ones namespace
	// selectors are evaluated against; a namespace that is neither has no pods
	// to contribute and no labels of its own.
	live bool

	pods      map[string]*podEntry
	podsSort  []*cluster.Pod // every pod, hostNetwork included, by name
	podsValid bool
	groups    map[string]*group // by labelKey
	cells     map[string]*cell  // by selector key
	policies  map[string]*policyEntry
	policyGen uint64 // bumped on every policy change in this namespace
}

type podEntry struct {
	pod   *cluster.Pod
	group *group // nil for hostNetwork pods, which no selector selects
}

// group is the non-hostNetwork pods of one namespace with identical labels.
type group struct {
	ns     *nsEntry
	key    string
	labels labels.Set
	// pods are the group's pods in no particular order. A slice: most
	// groups hold one pod or a few, and the index finds a pod's group
	// through its podEntry.
	pods  []*cluster.Pod
	cells ptrSet[cell] // cells that match this group

	policies  []*cluster.Policy // PoliciesFor cache, valid when policyGen == ns.policyGen
	policyGen uint64
}

// podIndex returns the position of pod name in g.pods, or -1.
func (g *group) podIndex(name string) int {
	return slices.IndexFunc(g.pods, func(p *cluster.Pod) bool { return p.Name == name })
}

// setPod puts p in the group, in place of the pod of its name if any.
func (g *group) setPod(p *cluster.Pod) {
	if i := g.podIndex(p.Name); i >= 0 {
		g.pods[i] = p
		return
	}
	g.pods = append(g.pods, p)
}

// invalidate drops every cached result that lists this group's pods.
func (g *group) invalidate() {
	for _, c := range g.cells.items {
		c.invalidate()
	}
}

// ptrSet is a set of pointers kept as a slice. Most sets of the index hold
// one member or a few (the peers sharing a cell, the cells matching a label
// group), and at 50,000 pods there are hundreds of thousands of them: a
// slice costs a pointer per member where a map costs a header and a group
// of slots. Callers insert only what the set does not hold; removal looks
// the member up, which is linear in the set's size.
type ptrSet[T any] struct {
	items []*T
}

// insert adds x, which the set must not hold.
func (s *ptrSet[T]) insert(x *T) { s.items = append(s.items, x) }

// remove drops x if the set holds it; the order of the rest may change.
func (s *ptrSet[T]) remove(x *T) {
	if i := slices.Index(s.items, x); i >= 0 {
		s.items = swapRemove(s.items, i)
	}
}

// swapRemove drops entry i of s by moving the last entry into its place,
// clearing the vacated slot; an emptied s becomes nil.
func swapRemove[T any](s []*T, i int) []*T {
	last := len(s) - 1
	s[i] = s[last]
	s[last] = nil
	if last == 0 {
		return nil
	}
	return s[:last]
}

// cell is one pod selector evaluated in one namespace: the label groups it
// matches, and their pods sorted by name.
type cell struct {
	key    string
	sel    labels.Selector
	ns     *nsEntry
	refs   int
	groups ptrSet[group]     // the groups the selector matches
	peers  ptrSet[peerEntry] // peers whose result includes this cell

	sorted []*cluster.Pod
	valid  bool
	// version changes whenever the pods of the cell may have changed; it
	// is drawn from peerVersions, so no two cells ever share one.
	version uint64
}

func (c *cell) invalidate() {
	c.valid = false
	c.version = peerVersions.Add(1)
	for _, p := range c.peers.items {
		p.invalidate()
	}
}

// peerVersions numbers peer and cell changes across every index, so that a
// version never repeats, even for a peer or cell dropped and created again.
var peerVersions atomic.Uint64

// invalidate drops p's cached result and gives it a new version.
func (p *peerEntry) invalidate() {
	p.valid = false
	p.version = peerVersions.Add(1)
}

func (c *cell) sortedPods() []*cluster.Pod {
	if !c.valid {
		n := 0
		for _, g := range c.groups.items {
			n += len(g.pods)
		}
		c.sorted = c.sorted[:0:0]
		if n > 0 {
			c.sorted = make([]*cluster.Pod, 0, n)
		}
		for _, g := range c.groups.items {
			c.sorted = append(c.sorted, g.pods...)
		}
		slices.SortFunc(c.sorted, comparePodNames)
		c.valid = true
	}
	if len(c.sorted) == 0 {
		return nil
	}
	return c.sorted[:len(c.sorted):len(c.sorted)]
}

// nsSelEntry is one distinct namespace selector and the live namespaces it
// matches.
type nsSelEntry struct {
	key     string
	sel     labels.Selector
	matched map[*nsEntry]struct{}
	peers   map[*peerEntry]struct{}
}

// peerEntry is one distinct pod-selecting peer.
type peerEntry struct {
	key       string
	podSel    labels.Selector
	podSelKey string
	nsSel     *nsSelEntry // nil: the peer selects in one namespace, direct
	direct    *cell       // the one cell of a peer without nsSel
	cells     map[*nsEntry]*cell
	order     []*nsEntry // keys of cells in key order; nil after cells change
	refs      int        // policies holding this peer
	adhoc     bool       // held in Index.adhoc

	result []*cluster.Pod
	valid  bool
	// version changes whenever the pods p selects may have changed.
	version uint64
}

// nodeEntry is the pods of one node.
type nodeEntry struct {
	pods   map[*cluster.Pod]struct{} // the values the index holds
	sorted []*cluster.Pod
	valid  bool
}

func (ix *Index) nodeAdd(p *cluster.Pod) {
	n := ix.nodes[p.NodeName]
	if n == nil {
		n = &nodeEntry{pods: map[*cluster.Pod]struct{}{}}
		ix.nodes[p.NodeName] = n
	}
	n.pods[p] = struct{}{}
	n.valid = false
}

func (ix *Index) nodeRemove(p *cluster.Pod) {
	n := ix.nodes[p.NodeName]
	delete(n.pods, p)
	n.valid = false
	if len(n.pods) == 0 {
		delete(ix.nodes, p.NodeName)
	}
}

type policyEntry struct {
	pol     *cluster.Policy
	subject *cell
	peers   []*peerEntry
}

// nsRef returns the entry of namespace name, creating an unknown, not yet live
// one if needed. Callers must make it live (refreshNamespace) or hold a
// reference in it, or call gcNamespace.
func (ix *Index) nsRef(name string) *nsEntry {
	e := ix.namespaces[name]
	if e == nil {
		e = &nsEntry{
			name:     name,
			sortKey:  name + "/",
			labels:   defaultNamespaceLabels(name),
			pods:     map[string]*podEntry{},
			groups:   map[string]*group{},
			cells:    map[string]*cell{},
			policies: map[string]*policyEntry{},
			// 0 marks a group's policy cache as never computed.
			policyGen: 1,
		}
		ix.namespaces[name] = e
	}
	return e
}

// refreshNamespace re-evaluates the namespace selectors for e after its
// liveness may have changed or, when labelsChanged, its labels did; then drops
// e if nothing refers to it any more.
func (ix *Index) refreshNamespace(e *nsEntry, labelsChanged bool) {
	live := e.ns != nil || len(e.pods) > 0
	if live != e.live || (live && labelsChanged) {
		e.live = live
		for _, s := range ix.nsSels {
			ix.setNamespaceMatch(s, e, live && s.sel.Matches(e.labels))
		}
	}
	ix.gcNamespace(e)
}

func (ix *Index) gcNamespace(e *nsEntry) {
	if e.ns == nil && len(e.pods) == 0 && len(e.cells) == 0 && len(e.policies) == 0 && ix.namespaces[e.name] == e {
		delete(ix.namespaces, e.name)
	}
}

// setNamespaceMatch records whether namespace selector s matches e, attaching
// or detaching e's cells to s's peers.
func (ix *Index) setNamespaceMatch(s *nsSelEntry, e *nsEntry, match bool) {
	if _, had := s.matched[e]; had == match {
		return
	}
	if match {
		s.matched[e] = struct{}{}
		for p := range s.peers {
			ix.attachPeerCell(p, e)
		}
		return
	}
	delete(s.matched, e)
	for p := range s.peers {
		ix.detachPeerCell(p, e)
	}
}

func (ix *Index) attachPeerCell(p *peerEntry, e *nsEntry) {
	c := ix.acquireCell(e, p.podSelKey, p.podSel)
	c.peers.insert(p) // p has no cell in e yet: p.cells[e] is set once
	p.cells[e] = c
	p.order = nil
	p.invalidate()
}

func (ix *Index) detachPeerCell(p *peerEntry, e *nsEntry) {
	c := p.cells[e]
	delete(p.cells, e)
	c.peers.remove(p)
	p.order = nil
	p.invalidate()
	ix.releaseCell(c)
}

// acquireCell returns the cell of selector sel (whose key is key) in e, with
// one more reference, creating and evaluating it if needed.
func (ix *Index) acquireCell(e *nsEntry, key string, sel labels.Selector) *cell {
	c := e.cells[key]
	if c == nil {
		c = &cell{
			key:     key,
			sel:     sel,
			ns:      e,
			version: peerVersions.Add(1),
		}
		for _, g := range e.groups {
			if sel.Matches(g.labels) {
				c.groups.insert(g) // c is new
				g.cells.insert(c)
			}
		}
		e.cells[key] = c
	}
	c.refs++
	return c
}

func (ix *Index) releaseCell(c *cell) {
	c.refs--
	if c.refs > 0 {
		return
	}
	for _, g := range c.groups.items {
		g.cells.remove(c)
	}
	delete(c.ns.cells, c.key)
	ix.gcNamespace(c.ns)
}

// groupFor returns the group of e for labels l (whose labelKey is key), creating it (and matching it
// against e's cells) if needed.
func (ix *Index) groupFor(e *nsEntry, l labels.Set, key []byte) *group {
	if g := e.groups[string(key)]; g != nil {
		return g
	}
	g := &group{
		ns:     e,
		key:    string(key),
		labels: l,
	}
	for _, c := range e.cells {
		if c.sel.Matches(l) {
			c.groups.insert(g) // g is new
			g.cells.insert(c)
			c.invalidate()
		}
	}
	e.groups[g.key] = g
	return g
}

// removeFromGroup removes pod name from g, dropping g when it empties.
func (ix *Index) removeFromGroup(g *group, name string) {
	if i := g.podIndex(name); i >= 0 {
		g.pods = swapRemove(g.pods, i)
	}
	g.invalidate()
	if len(g.pods) > 0 {
		return
	}
	for _, c := range g.cells.items {
		c.groups.remove(g)
	}
	g.cells = ptrSet[cell]{}
	delete(g.ns.groups, g.key)
}

// acquirePeer returns the entry for peer, creating it if needed. The caller
// takes a reference (refs++) or holds it ad hoc.
func (ix *Index) acquirePeer(peer *cluster.Peer) *peerEntry {
	key := peerKey(peer)
	if p := ix.peers[key]; p != nil {
		return p
	}
	podSel := peer.PodSelector
	if podSel == nil {
		podSel = labels.Everything()
	}
	p := &peerEntry{
		key:       key,
		podSel:    podSel,
		podSelKey: selectorKey(podSel),
		cells:     map[*nsEntry]*cell{},
		version:   peerVersions.Add(1),
	}
	ix.peers[key] = p
	if peer.NamespaceSelector == nil {
		e := ix.nsRef(peer.Namespace)
		ix.attachPeerCell(p, e)
		p.direct = p.cells[e]
		return p
	}
	p.nsSel = ix.acquireNsSel(peer.NamespaceSelector)
	p.nsSel.peers[p] = struct{}{}
	for e := range p.nsSel.matched {
		ix.attachPeerCell(p, e)
	}
	return p
}

// releasePeer drops p if neither a policy nor the ad-hoc list holds it.
func (ix *Index) releasePeer(p *peerEntry) {
	if p.refs > 0 || p.adhoc {
		return
	}
	for e := range p.cells {
		ix.detachPeerCell(p, e)
	}
	if s := p.nsSel; s != nil {
		delete(s.peers, p)
		if len(s.peers) == 0 {
			delete(ix.nsSels, s.key)
		}
	}
	delete(ix.peers, p.key)
}

func (ix *Index) holdAdhoc(p *peerEntry) {
	if len(ix.adhoc) >= ix.adhocLimit {
		ix.dropAdhoc()
	}
	p.adhoc = true
	ix.adhoc = append(ix.adhoc, p)
}

// dropAdhoc lets go of every peer held only for PeerPods callers.
func (ix *Index) dropAdhoc() {
	old := ix.adhoc
	ix.adhoc = nil
	for _, q := range old {
		q.adhoc = false
		ix.releasePeer(q)
	}
}

func (ix *Index) acquireNsSel(sel labels.Selector) *nsSelEntry {
	key := selectorKey(sel)
	if s := ix.nsSels[key]; s != nil {
		return s
	}
	s := &nsSelEntry{
		key:     key,
		sel:     sel,
		matched: map[*nsEntry]struct{}{},
		peers:   map[*peerEntry]struct{}{},
	}
	for _, e := range ix.namespaces {
		if e.live && sel.Matches(e.labels) {
			s.matched[e] = struct{}{}
		}
	}
	ix.nsSels[key] = s
	return s
}

func (ix *Index) releasePolicy(pe *policyEntry) {
	for _, p := range pe.peers {
		p.refs--
		ix.releasePeer(p)
	}
	ix.releaseCell(pe.subject)
}

func (ix *Index) peerPods(p *peerEntry) []*cluster.Pod {
	if p.nsSel == nil {
		return p.direct.sortedPods()
	}
	if !p.valid {
		if p.order == nil {
			p.order = make([]*nsEntry, 0, len(p.cells))
			for e := range p.cells {
				p.order = append(p.order, e)
			}
			slices.SortFunc(p.order, func(a, b *nsEntry) int { return strings.Compare(a.sortKey, b.sortKey) })
		}
		n := 0
		for _, e := range p.order {
			n += len(p.cells[e].sortedPods())
		}
		p.result = p.result[:0:0]
		if n > 0 {
			p.result = make([]*cluster.Pod, 0, n)
		}
		for _, e := range p.order {
			p.result = append(p.result, p.cells[e].sortedPods()...)
		}
		p.valid = true
	}
	if len(p.result) == 0 {
		return nil
	}
	return p.result[:len(p.result):len(p.result)]
}

func (ix *Index) sortedNamespaces() []*nsEntry {
	out := make([]*nsEntry, 0, len(ix.namespaces))
	for _, e := range ix.namespaces {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *nsEntry) int { return strings.Compare(a.sortKey, b.sortKey) })
	return out
}

func (e *nsEntry) sortedPods() []*cluster.Pod {
	if !e.podsValid {
		e.podsSort = make([]*cluster.Pod, 0, len(e.pods))
		for _, pe := range e.pods {
			e.podsSort = append(e.podsSort, pe.pod)
		}
		slices.SortFunc(e.podsSort, comparePodNames)
		e.podsValid = true
	}
	return e.podsSort
}

// labelKey returns a canonical encoding of l in a scratch buffer, valid until
// the next call: equal sets, equal keys, for any keys and values (lengths are
// encoded, so no separator can be forged). Converting it with string() for a
// map lookup or comparison does not allocate.
func (ix *Index) labelKey(l labels.Set) []byte {
	keys := ix.labelKeyScratch[:0]
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := ix.labelKeyBuf[:0]
	for _, k := range keys {
		v := l[k]
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	clear(keys)
	ix.labelKeyScratch, ix.labelKeyBuf = keys[:0], b
	return b
}

// selectorKey returns a canonical key for sel: equal keys select the same
// labels. Selectors built by metav1.LabelSelectorAsSelector (with validated
// keys and values) render canonically; other Selector implementations are
// keyed by type as well.
func selectorKey(sel labels.Selector) string {
	if _, ok := sel.Requirements(); ok {
		return "sel:" + sel.String()
	}
	return fmt.Sprintf("%T:%s", sel, sel.String())
}

// peerKey returns peer.Key, or for a peer built without one a key derived from
// its selectors, in a form cluster.ConvertPolicy never produces.
func peerKey(peer *cluster.Peer) string {
	if peer.Key != "" {
		return peer.Key
	}
	pod := "all"
	if peer.PodSelector != nil {
		pod = selectorKey(peer.PodSelector)
	}
	if peer.NamespaceSelector == nil {
		return "\x00derived;ns=" + peer.Namespace + ";pods=" + pod
	}
	return "\x00derived;nssel=" + selectorKey(peer.NamespaceSelector) + ";pods=" + pod
}

func comparePodNames(a, b *cluster.Pod) int { return strings.Compare(a.Name, b.Name) }

// compareKeys orders "ans/aname" against "bns/bname" without building them.
func compareKeys(ans, aname, bns, bname string) int {
	if ans == bns {
		return strings.Compare(aname, bname)
	}
	// Compare ans+"/" with bns+"/". They differ within min(len)+1 bytes,
	// since names hold no '/'.
	n := min(len(ans), len(bns))
	if c := strings.Compare(ans[:n], bns[:n]); c != 0 {
		return c
	}
	if len(ans) < len(bns) {
		return cmp.Compare(byte('/'), bns[n])
	}
	return cmp.Compare(ans[n], byte('/'))
}
