// Package selectors owns the incremental selector index: which pods each
// NetworkPolicy podSelector and each pod-selecting peer (podSelector,
// namespaceSelector, or both) selects, kept up to date as namespaces, pods and
// policies are added, changed and deleted.
//
// Label matching is k8s.io/apimachinery's (labels.Selector, parsed by
// cluster.ConvertPolicy); this package only decides which selectors to evaluate
// against which labels, and caches the answers. Work is shared three ways:
//
//   - pods of one namespace with identical labels form one label group, and a
//     selector is evaluated once per group, never per pod;
//   - selectors with identical canonical strings, and peers with identical
//     cluster.Peer.Key values, are one entry however many policies use them;
//   - each (pod selector, namespace) pair is a cell that holds the groups it
//     matches; cells are updated when a group appears or disappears, and sorted
//     results are rebuilt lazily, only after something they depend on changed.
//
// Every answer equals what a scan of all objects would give; the randomized test
// in this package checks that after every event.
package selectors

import (
	"iter"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
)

// metadataNameLabel is the label the API server sets on every namespace.
const metadataNameLabel = "kubernetes.io/metadata.name"

// maxAdhocPeers bounds the number of peers kept only because PeerPods was asked
// about them (no policy in the index holds them). Beyond it they are dropped
// and rebuilt on demand.
const maxAdhocPeers = 256

// Index answers which policies select a pod and which pods a selector or peer
// selects. The zero value is not usable; call New or FromSnapshot.
//
// An Index is not safe for concurrent use: every method, queries included
// (they fill caches), must be called from one goroutine at a time, e.g. the
// node agent's sync loop that also applies informer events.
//
// The index keeps the *cluster.Namespace, *cluster.Pod and *cluster.Policy
// values it is given and returns them from queries; callers must treat them as
// immutable once handed over (replace, never modify in place). Slices returned
// by queries are shared with the index's caches: callers must not modify them
// (appending is safe, their capacity equals their length). A slice stays valid
// after later updates; it just no longer reflects them.
type Index struct {
	namespaces map[string]*nsEntry
	policies   map[string]*policyEntry // by "namespace/name"
	peers      map[string]*peerEntry   // by peer key
	nsSels     map[string]*nsSelEntry  // by selector key
	nodes      map[string]*nodeEntry   // by node name, "" for unscheduled pods
	adhoc      []*peerEntry            // peers held only for PeerPods callers
	adhocLimit int                     // maxAdhocPeers; lowered by tests

	allPods         []*cluster.Pod
	allPodsValid    bool
	allPolicies     []*cluster.Policy
	allPolicyValid  bool
	podCount        int
	clusterPolicies map[string]*clusterPolicyEntry // by name
	allCluster      []*cluster.ClusterPolicy
	allClusterValid bool
	nodeObjs        map[string]*cluster.Node // Node objects, by name
	allNodes        []*cluster.Node
	allNodesValid   bool
	labelKeyScratch []string
	labelKeyBuf     []byte
}

// New returns an empty index.
func New() *Index {
	return &Index{
		namespaces: map[string]*nsEntry{},
		policies:   map[string]*policyEntry{},
		peers:      map[string]*peerEntry{},
		nsSels:     map[string]*nsSelEntry{},
		nodes:      map[string]*nodeEntry{},
		adhocLimit: maxAdhocPeers,
	}
}

// FromSnapshot returns an index holding every namespace, pod and policy of s.
// The index keeps s's objects (not copies); s itself is not retained.
func FromSnapshot(s *cluster.Snapshot) *Index {
	ix := New()
	if s == nil {
		return ix
	}
	// Namespaces and pods first, so that each selector is evaluated once per
	// label group when the policies arrive.
	for _, ns := range s.Namespaces {
		ix.UpsertNamespace(ns)
	}
	for _, p := range s.Pods {
		ix.UpsertPod(p)
	}
	for _, p := range s.Policies {
		ix.UpsertPolicy(p)
	}
	for _, p := range s.ClusterPolicies {
		ix.UpsertClusterPolicy(p)
	}
	for _, n := range s.Nodes {
		ix.UpsertNode(n)
	}
	return ix
}

// UpsertNamespace adds a namespace or replaces the known one of that name,
// relabelling it. Its labels are taken as given (cluster.ConvertNamespace adds
// kubernetes.io/metadata.name); a nil ns is ignored.
func (ix *Index) UpsertNamespace(ns *cluster.Namespace) {
	if ns == nil {
		return
	}
	e := ix.nsRef(ns.Name)
	wasKnown := e.ns != nil
	changed := !wasKnown || !labels.Equals(e.labels, ns.Labels)
	e.ns = ns
	e.labels = ns.Labels
	ix.refreshNamespace(e, changed)
}

// DeleteNamespace forgets namespace name. Its pods stay (the informer deletes
// them one by one); until then they are matched against the namespace's default
// labels, {kubernetes.io/metadata.name: name}, as for any namespace not known.
func (ix *Index) DeleteNamespace(name string) {
	e := ix.namespaces[name]
	if e == nil || e.ns == nil {
		return
	}
	changed := !labels.Equals(e.labels, defaultNamespaceLabels(name))
	e.ns = nil
	e.labels = defaultNamespaceLabels(name)
	ix.refreshNamespace(e, changed)
}

// UpsertPod adds a pod or replaces the one with its namespace and name, which
// covers relabels, address and node changes and hostNetwork flips. A pod's
// namespace is part of its identity: a pod "moving" namespace is a delete and
// an add. A nil p is ignored.
func (ix *Index) UpsertPod(p *cluster.Pod) {
	if p == nil {
		return
	}
	e := ix.nsRef(p.Namespace)
	wasLive := e.live
	old := e.pods[p.Name]
	if old == nil {
		ix.podCount++
	}
	var key []byte
	if !p.HostNetwork {
		key = ix.labelKey(p.Labels)
	}
	if old != nil && old.group != nil && !p.HostNetwork && old.group.key == string(key) {
		// Same labels: the group and every cell keep their matches; only the
		// pod value changed (address, node, ports).
		old.group.setPod(p)
		old.group.invalidate()
	} else {
		if old != nil && old.group != nil {
			ix.removeFromGroup(old.group, p.Name)
		}
		var g *group
		if !p.HostNetwork {
			g = ix.groupFor(e, p.Labels, key)
			g.pods = append(g.pods, p) // not in g: a pod of g would have kept its group above
			g.invalidate()
		}
		if old == nil {
			old = &podEntry{}
			e.pods[p.Name] = old
		}
		old.group = g
	}
	if old.pod != nil {
		ix.nodeRemove(old.pod)
	}
	ix.nodeAdd(p)
	old.pod = p
	e.podsValid = false
	ix.allPodsValid = false
	if !wasLive {
		ix.refreshNamespace(e, false)
	}
}

// DeletePod forgets a pod. Unknown pods are ignored.
func (ix *Index) DeletePod(namespace, name string) {
	e := ix.namespaces[namespace]
	if e == nil {
		return
	}
	old := e.pods[name]
	if old == nil {
		return
	}
	if old.group != nil {
		ix.removeFromGroup(old.group, name)
	}
	ix.nodeRemove(old.pod)
	delete(e.pods, name)
	ix.podCount--
	e.podsValid = false
	ix.allPodsValid = false
	ix.refreshNamespace(e, false)
}

// UpsertPolicy adds a policy or replaces the one with its namespace and name.
// A nil PodSelector is treated as selecting every pod of the namespace (the
// fail-closed reading cluster.ConvertPolicy gives an invalid one). A nil p is
// ignored.
func (ix *Index) UpsertPolicy(p *cluster.Policy) {
	if p == nil {
		return
	}
	e := ix.nsRef(p.Namespace)
	sel := p.PodSelector
	if sel == nil {
		sel = labels.Everything()
	}
	pe := &policyEntry{pol: p, subject: ix.acquireCell(e, selectorKey(sel), sel)}
	for _, d := range []cluster.Direction{cluster.Ingress, cluster.Egress} {
		for _, r := range p.Rules(d) {
			pe.peers = ix.refPodPeers(pe.peers, r.Peers)
		}
	}
	// Acquire the new references before releasing the old ones, so that an
	// update keeping a selector does not tear its cell down and rebuild it.
	old := e.policies[p.Name]
	e.policies[p.Name] = pe
	e.policyGen++
	ix.policies[p.Key()] = pe
	ix.allPolicyValid = false
	if old != nil {
		ix.releasePolicy(old)
	}
}

// DeletePolicy forgets a policy. Unknown policies are ignored.
func (ix *Index) DeletePolicy(namespace, name string) {
	e := ix.namespaces[namespace]
	if e == nil {
		return
	}
	old := e.policies[name]
	if old == nil {
		return
	}
	delete(e.policies, name)
	delete(ix.policies, old.pol.Key())
	e.policyGen++
	ix.allPolicyValid = false
	ix.releasePolicy(old)
	ix.gcNamespace(e)
}

// Snapshot returns the index's current state as a new Snapshot with sorted
// slices. The objects are the index's own (shared, not copied); the slices
// and the map are new.
func (ix *Index) Snapshot() *cluster.Snapshot {
	s := &cluster.Snapshot{Namespaces: map[string]*cluster.Namespace{}}
	for name, e := range ix.namespaces {
		if e.ns != nil {
			s.Namespaces[name] = e.ns
		}
	}
	s.Pods = slices.Clone(ix.Pods())
	s.Policies = slices.Clone(ix.Policies())
	s.ClusterPolicies = slices.Clone(ix.ClusterPolicies())
	s.Nodes = slices.Clone(ix.Nodes())
	return s
}

// PoliciesFor returns the policies of the pod's namespace whose PodSelector
// selects the pod (its subject policies), sorted by key. It returns nil for an
// unknown pod, a pod no policy selects, and every hostNetwork pod: those are
// never subjects.
func (ix *Index) PoliciesFor(namespace, name string) []*cluster.Policy {
	e := ix.namespaces[namespace]
	if e == nil {
		return nil
	}
	pe := e.pods[name]
	if pe == nil || pe.group == nil {
		return nil
	}
	g := pe.group
	if g.policyGen != e.policyGen {
		g.policies = g.policies[:0:0]
		for _, p := range e.policies {
			if slices.Contains(g.cells.items, p.subject) { // the cells of g are those holding g
				g.policies = append(g.policies, p.pol)
			}
		}
		slices.SortFunc(g.policies, func(a, b *cluster.Policy) int { return strings.Compare(a.Name, b.Name) })
		g.policyGen = e.policyGen
	}
	if len(g.policies) == 0 {
		return nil
	}
	return g.policies[:len(g.policies):len(g.policies)]
}

// PeerPods returns the pods a PeerPods peer selects, sorted by key, hostNetwork
// pods excluded: with a nil NamespaceSelector the pods of peer.Namespace,
// otherwise the pods of every namespace whose labels NamespaceSelector matches;
// of those, the pods PodSelector matches (nil selects all). Any other kind of
// peer selects no pods (nil).
//
// Results are cached by peer.Key, which must be the canonical key
// cluster.ConvertPolicy computes (equal keys, equal selections); a peer with an
// empty Key gets one derived from its selectors. A repeated call with the same
// key, and no change in between to the pods it selects, is a map lookup.
func (ix *Index) PeerPods(peer *cluster.Peer) []*cluster.Pod {
	if peer == nil || peer.Kind != cluster.PeerPods {
		return nil
	}
	return ix.peerPods(ix.peerRef(peer))
}

// PeerVersion returns a number that changes whenever the pods a PeerPods
// peer selects may have changed: a pod added, removed, relabelled or
// replaced by a new value (a new address, say), or a namespace matched or no
// longer matched. While it stays the same, so do PeerPods and EachPeerPod.
// Versions never repeat, even across indexes. Any other kind of peer gets 0.
func (ix *Index) PeerVersion(peer *cluster.Peer) uint64 {
	if peer == nil || peer.Kind != cluster.PeerPods {
		return 0
	}
	return ix.peerRef(peer).version
}

// EachPeerPod calls f for every pod PeerPods would return, in no particular
// order, without building or caching the sorted list: for callers that keep
// their own result keyed by PeerVersion (policy/compile).
func (ix *Index) EachPeerPod(peer *cluster.Peer, f func(*cluster.Pod)) {
	ix.EachPeerPart(peer, func(_ uint64, pods iter.Seq[*cluster.Pod]) {
		for p := range pods {
			f(p)
		}
	})
}

// EachPeerPart calls f for each part of the pods a PeerPods peer selects
// (the pods of one namespace), with a version that changes whenever the
// pods of that part may have changed and that no other part ever has, and
// the part's pods in no particular order, a sequence that may be walked
// until the index next changes. The parts are disjoint and
// together hold what EachPeerPod yields: callers that keep a result per
// peer can rebuild it from per-part results keyed by version, redoing only
// the parts that changed (policy/compile).
func (ix *Index) EachPeerPart(peer *cluster.Peer, f func(version uint64, pods iter.Seq[*cluster.Pod])) {
	if peer == nil || peer.Kind != cluster.PeerPods {
		return
	}
	for _, c := range ix.peerRef(peer).cells {
		f(c.version, func(yield func(*cluster.Pod) bool) {
			for _, g := range c.groups.items {
				for _, pod := range g.pods {
					if !yield(pod) {
						return
					}
				}
			}
		})
	}
}

// peerRef returns the entry of a PeerPods peer, held ad hoc if no policy
// in the index holds it.
func (ix *Index) peerRef(peer *cluster.Peer) *peerEntry {
	pr := ix.peers[peerKey(peer)]
	if pr == nil {
		pr = ix.acquirePeer(peer)
		ix.holdAdhoc(pr)
	}
	return pr
}

// SubjectPods returns the pods p's PodSelector selects in p's namespace (its
// subjects), sorted by key, hostNetwork pods excluded. p need not be in the
// index; answering for the policy value the index holds is cheapest.
func (ix *Index) SubjectPods(p *cluster.Policy) []*cluster.Pod {
	if p == nil {
		return nil
	}
	if pe := ix.policies[p.Key()]; pe != nil && pe.pol == p {
		return pe.subject.sortedPods()
	}
	e := ix.namespaces[p.Namespace]
	if e == nil {
		return nil
	}
	sel := p.PodSelector
	if sel == nil {
		sel = labels.Everything()
	}
	if c := e.cells[selectorKey(sel)]; c != nil {
		return c.sortedPods()
	}
	var out []*cluster.Pod
	for _, g := range e.groups {
		if sel.Matches(g.labels) {
			out = append(out, g.pods...)
		}
	}
	slices.SortFunc(out, comparePodNames)
	return out
}

// Pods returns every pod, hostNetwork pods included, sorted by key.
func (ix *Index) Pods() []*cluster.Pod {
	if !ix.allPodsValid {
		ix.allPods = ix.allPods[:0:0]
		if ix.podCount > 0 {
			ix.allPods = make([]*cluster.Pod, 0, ix.podCount)
		}
		for _, e := range ix.sortedNamespaces() {
			ix.allPods = append(ix.allPods, e.sortedPods()...)
		}
		ix.allPodsValid = true
	}
	return ix.allPods[:len(ix.allPods):len(ix.allPods)]
}

// NodePods returns the pods whose NodeName is node, hostNetwork pods
// included, sorted by key; node "" lists the pods not scheduled yet.
func (ix *Index) NodePods(node string) []*cluster.Pod {
	n := ix.nodes[node]
	if n == nil {
		return nil
	}
	if !n.valid {
		n.sorted = make([]*cluster.Pod, 0, len(n.pods))
		for p := range n.pods {
			n.sorted = append(n.sorted, p)
		}
		slices.SortFunc(n.sorted, func(a, b *cluster.Pod) int {
			return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
		})
		n.valid = true
	}
	return n.sorted[:len(n.sorted):len(n.sorted)]
}

// Pod returns the pod namespace/name, or nil.
func (ix *Index) Pod(namespace, name string) *cluster.Pod {
	if e := ix.namespaces[namespace]; e != nil {
		if pe := e.pods[name]; pe != nil {
			return pe.pod
		}
	}
	return nil
}

// PodCount returns the number of pods Pods would return, without building
// the sorted list.
func (ix *Index) PodCount() int { return ix.podCount }

// PolicyCount returns the number of policies Policies would return, without
// building the sorted list.
func (ix *Index) PolicyCount() int { return len(ix.policies) }

// Policies returns every policy, sorted by key.
func (ix *Index) Policies() []*cluster.Policy {
	if !ix.allPolicyValid {
		ix.allPolicies = make([]*cluster.Policy, 0, len(ix.policies))
		for _, pe := range ix.policies {
			ix.allPolicies = append(ix.allPolicies, pe.pol)
		}
		slices.SortFunc(ix.allPolicies, func(a, b *cluster.Policy) int {
			return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
		})
		ix.allPolicyValid = true
	}
	return ix.allPolicies[:len(ix.allPolicies):len(ix.allPolicies)]
}

// Namespace returns the namespace name, or nil if it is not known (pods may
// exist in a namespace the index has not been told about).
func (ix *Index) Namespace(name string) *cluster.Namespace {
	if e := ix.namespaces[name]; e != nil {
		return e.ns
	}
	return nil
}

// NamespaceLabels returns the labels selectors see for namespace name: the
// known namespace's labels, or {kubernetes.io/metadata.name: name} for a
// namespace not known (cluster.Snapshot.NamespaceLabels semantics).
func (ix *Index) NamespaceLabels(name string) labels.Set {
	if e := ix.namespaces[name]; e != nil && e.ns != nil {
		return e.ns.Labels
	}
	return defaultNamespaceLabels(name)
}

func defaultNamespaceLabels(name string) labels.Set {
	return labels.Set{metadataNameLabel: name}
}
