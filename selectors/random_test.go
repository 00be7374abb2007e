package selectors

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
)

// naive is the test's own model of the cluster: plain maps, every query a full
// scan. It shares no code with the index.
type naive struct {
	namespaces map[string]*cluster.Namespace
	pods       map[string]*cluster.Pod
	policies   map[string]*cluster.Policy
}

func (m *naive) nsLabels(name string) labels.Set {
	if ns, ok := m.namespaces[name]; ok {
		return ns.Labels
	}
	return labels.Set{"kubernetes.io/metadata.name": name}
}

func (m *naive) sortedPods() []*cluster.Pod {
	var out []*cluster.Pod
	for _, p := range m.pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func (m *naive) sortedPolicies() []*cluster.Policy {
	var out []*cluster.Policy
	for _, p := range m.policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// peerPods, subjectPods and policiesFor scan all, which is m.sortedPods() or
// m.sortedPolicies(), computed once per comparison.
func (m *naive) peerPods(all []*cluster.Pod, peer *cluster.Peer) []*cluster.Pod {
	if peer.Kind != cluster.PeerPods {
		return nil
	}
	var out []*cluster.Pod
	for _, p := range all {
		if p.HostNetwork {
			continue
		}
		if peer.NamespaceSelector == nil {
			if p.Namespace != peer.Namespace {
				continue
			}
		} else if !peer.NamespaceSelector.Matches(m.nsLabels(p.Namespace)) {
			continue
		}
		if peer.PodSelector != nil && !peer.PodSelector.Matches(p.Labels) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (m *naive) subjectPods(all []*cluster.Pod, pol *cluster.Policy) []*cluster.Pod {
	var out []*cluster.Pod
	for _, p := range all {
		if !p.HostNetwork && p.Namespace == pol.Namespace && pol.PodSelector.Matches(p.Labels) {
			out = append(out, p)
		}
	}
	return out
}

func (m *naive) policiesFor(all []*cluster.Policy, ns, name string) []*cluster.Policy {
	p := m.pods[ns+"/"+name]
	if p == nil || p.HostNetwork {
		return nil
	}
	var out []*cluster.Policy
	for _, pol := range all {
		if pol.Namespace == ns && pol.PodSelector.Matches(p.Labels) {
			out = append(out, pol)
		}
	}
	return out
}

// randomCluster generates random events over a small universe, so that names
// collide and selectors hit often.
type randomCluster struct {
	rng       *rand.Rand
	nsNames   []string
	podNames  []string
	polNames  []string
	podKeys   []string
	nsKeys    []string
	podValues []string
	nsValues  []string
	nextIP    uint32
}

func newRandomCluster(seed uint64) *randomCluster {
	return &randomCluster{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		// "a", "a-b" and "a0" order differently as names and as key prefixes.
		nsNames:   []string{"a", "a-b", "a0", "kube-system", "z"},
		podNames:  []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"},
		polNames:  []string{"q0", "q1", "q2", "q3", "q4"},
		podKeys:   []string{"app", "tier", "team", "k"},
		podValues: []string{"", "web", "db", "x"},
		nsKeys:    []string{"team", "env", "kubernetes.io/metadata.name"},
		nsValues:  []string{"", "x", "y", "prod", "a", "a-b", "z"},
	}
}

func (r *randomCluster) pick(xs []string) string { return xs[r.rng.IntN(len(xs))] }

func (r *randomCluster) labels(keys, values []string) map[string]string {
	l := map[string]string{}
	for _, k := range keys {
		if r.rng.IntN(2) == 0 {
			l[k] = r.pick(values)
		}
	}
	return l
}

func (r *randomCluster) namespace() *cluster.Namespace {
	name := r.pick(r.nsNames)
	l := r.labels(r.nsKeys[:2], r.nsValues)
	if r.rng.IntN(8) == 0 {
		// Hand-built, without the metadata.name label: taken as given.
		return &cluster.Namespace{Name: name, Labels: labels.Set(l)}
	}
	return cluster.ConvertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}})
}

func (r *randomCluster) pod() *cluster.Pod {
	r.nextIP++
	p := &cluster.Pod{
		Namespace:   r.pick(r.nsNames),
		Name:        r.pick(r.podNames),
		Labels:      labels.Set(r.labels(r.podKeys, r.podValues)),
		NodeName:    fmt.Sprintf("node-%d", r.rng.IntN(3)),
		HostNetwork: r.rng.IntN(8) == 0,
		IPs:         []netip.Addr{netip.AddrFrom4([4]byte{10, byte(r.nextIP >> 16), byte(r.nextIP >> 8), byte(r.nextIP)})},
	}
	return p
}

// selector returns a random label selector; with one chance in 40 an invalid
// one, which cluster.ConvertPolicy handles fail-closed.
func (r *randomCluster) selector(keys, values []string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	if r.rng.IntN(40) == 0 {
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "bad key!", Operator: metav1.LabelSelectorOpExists}}
		return s
	}
	for range r.rng.IntN(3) {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		s.MatchLabels[r.pick(keys)] = r.pick(values)
	}
	ops := []metav1.LabelSelectorOperator{
		metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
		metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist,
	}
	for range r.rng.IntN(3) {
		req := metav1.LabelSelectorRequirement{Key: r.pick(keys), Operator: ops[r.rng.IntN(len(ops))]}
		if req.Operator == metav1.LabelSelectorOpIn || req.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + r.rng.IntN(2) {
				req.Values = append(req.Values, r.pick(values))
			}
		}
		s.MatchExpressions = append(s.MatchExpressions, req)
	}
	return s
}

func (r *randomCluster) apiPeer() networkingv1.NetworkPolicyPeer {
	switch r.rng.IntN(7) {
	case 0, 1:
		return networkingv1.NetworkPolicyPeer{PodSelector: r.selector(r.podKeys, r.podValues)}
	case 2, 3:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: r.selector(r.nsKeys, r.nsValues)}
	case 4, 5:
		return networkingv1.NetworkPolicyPeer{
			NamespaceSelector: r.selector(r.nsKeys, r.nsValues),
			PodSelector:       r.selector(r.podKeys, r.podValues),
		}
	default:
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}
	}
}

func (r *randomCluster) policy() *cluster.Policy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.pick(r.nsNames), Name: r.pick(r.polNames)},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *r.selector(r.podKeys, r.podValues)},
	}
	for range r.rng.IntN(3) {
		var rule networkingv1.NetworkPolicyIngressRule
		for range r.rng.IntN(4) {
			rule.From = append(rule.From, r.apiPeer())
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rule)
	}
	for range r.rng.IntN(2) {
		var rule networkingv1.NetworkPolicyEgressRule
		for range r.rng.IntN(3) {
			rule.To = append(rule.To, r.apiPeer())
		}
		np.Spec.Egress = append(np.Spec.Egress, rule)
	}
	p, _ := cluster.ConvertPolicy(np) // invalid parts are dropped fail-closed
	return p
}

// adhocPeer returns a peer no policy need hold, sometimes without a Key.
func (r *randomCluster) adhocPeer() *cluster.Peer {
	p := r.policy()
	for _, rule := range append(p.IngressRules, p.EgressRules...) {
		if len(rule.Peers) > 0 {
			pr := rule.Peers[0]
			if r.rng.IntN(4) == 0 {
				pr.Key = ""
			}
			return &pr
		}
	}
	return &cluster.Peer{Kind: cluster.PeerPods, Namespace: p.Namespace, PodSelector: p.PodSelector}
}

// compare checks every query of ix against m, naming the event.
func compare(t *testing.T, event string, ix *Index, m *naive, r *randomCluster, adhoc []*cluster.Peer) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %s: %s", event, fmt.Sprintf(format, args...))
	}
	samePods := func(what string, got, want []*cluster.Pod) {
		t.Helper()
		if len(got) != len(want) {
			fail("%s = %v, want %v", what, podKeys(got), podKeys(want))
		}
		for i := range got {
			if got[i] != want[i] {
				fail("%s = %v, want %v (or a stale pod value)", what, podKeys(got), podKeys(want))
			}
		}
	}
	samePolicies := func(what string, got, want []*cluster.Policy) {
		t.Helper()
		if len(got) != len(want) {
			fail("%s = %v, want %v", what, policyKeys(got), policyKeys(want))
		}
		for i := range got {
			if got[i] != want[i] {
				fail("%s = %v, want %v (or a stale policy value)", what, policyKeys(got), policyKeys(want))
			}
		}
	}

	pods, policies := m.sortedPods(), m.sortedPolicies()
	samePods("Pods()", ix.Pods(), pods)
	samePolicies("Policies()", ix.Policies(), policies)
	if ix.PodCount() != len(pods) || ix.PolicyCount() != len(policies) {
		fail("PodCount() = %d, PolicyCount() = %d, want %d, %d", ix.PodCount(), ix.PolicyCount(), len(pods), len(policies))
	}
	snap := ix.Snapshot()
	samePods("Snapshot().Pods", snap.Pods, pods)
	samePolicies("Snapshot().Policies", snap.Policies, policies)
	if len(snap.Namespaces) != len(m.namespaces) {
		fail("Snapshot().Namespaces has %d namespaces, want %d", len(snap.Namespaces), len(m.namespaces))
	}
	for _, name := range r.nsNames {
		if got, want := ix.Namespace(name), m.namespaces[name]; got != want {
			fail("Namespace(%s) = %v, want %v", name, got, want)
		}
		if got, want := snap.Namespaces[name], m.namespaces[name]; got != want {
			fail("Snapshot().Namespaces[%s] = %v, want %v", name, got, want)
		}
		for _, pod := range r.podNames {
			if got, want := ix.Pod(name, pod), m.pods[name+"/"+pod]; got != want {
				fail("Pod(%s/%s) = %v, want %v", name, pod, got, want)
			}
			samePolicies("PoliciesFor("+name+"/"+pod+")", ix.PoliciesFor(name, pod), m.policiesFor(policies, name, pod))
		}
	}
	for _, node := range []string{"node-0", "node-1", "node-2", "node-3"} {
		var want []*cluster.Pod
		for _, p := range pods {
			if p.NodeName == node {
				want = append(want, p)
			}
		}
		samePods("NodePods("+node+")", ix.NodePods(node), want)
	}
	for _, pol := range policies {
		samePods("SubjectPods("+pol.Key()+")", ix.SubjectPods(pol), m.subjectPods(pods, pol))
		for _, rule := range append(pol.IngressRules, pol.EgressRules...) {
			for i := range rule.Peers {
				pr := &rule.Peers[i]
				samePods("PeerPods("+pr.Key+") of "+pol.Key(), ix.PeerPods(pr), m.peerPods(pods, pr))
			}
		}
	}
	for _, pr := range adhoc {
		samePods(fmt.Sprintf("PeerPods(%q) ad hoc", pr.Key), ix.PeerPods(pr), m.peerPods(pods, pr))
	}
}

// peerSeen is a peer's version and the pods (values, not just keys) it
// selected when last checked.
type peerSeen struct {
	version uint64
	pods    string
}

// versionsSeen is what checkVersions remembers between events: by peer key
// and by part version.
type versionsSeen struct {
	peers map[string]peerSeen
	parts map[uint64]string
}

// checkVersions checks PeerVersion, EachPeerPod and EachPeerPart:
// EachPeerPod yields the pods PeerPods returns, and so do EachPeerPart's
// parts together, each pod once; a peer whose version did not change since
// the last event selects the very same pod values as then, and a part
// version always stands for the very same pod values (policy/compile reuses
// a peer set while the peer's version holds, and a part's addresses while
// the part's does).
func checkVersions(t *testing.T, event string, ix *Index, m *naive, adhoc []*cluster.Peer, seen versionsSeen) {
	t.Helper()
	pods := m.sortedPods()
	var peers []*cluster.Peer
	for _, pol := range m.sortedPolicies() {
		for _, rule := range append(pol.IngressRules, pol.EgressRules...) {
			for i := range rule.Peers {
				peers = append(peers, &rule.Peers[i])
			}
		}
	}
	peers = append(peers, adhoc...)
	for _, pr := range peers {
		if pr.Kind != cluster.PeerPods || pr.Key == "" {
			continue
		}
		want := m.peerPods(pods, pr)
		var each []*cluster.Pod
		ix.EachPeerPod(pr, func(p *cluster.Pod) { each = append(each, p) })
		slices.SortFunc(each, func(a, b *cluster.Pod) int { return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name) })
		if !slices.Equal(each, want) {
			t.Fatalf("%s: EachPeerPod(%q) = %v, want %v", event, pr.Key, podKeys(each), podKeys(want))
		}
		var b strings.Builder
		for _, p := range want {
			fmt.Fprintf(&b, "%s@%p ", p.Key(), p)
		}
		v := ix.PeerVersion(pr)
		if prev, ok := seen.peers[pr.Key]; ok && prev.version == v && prev.pods != b.String() {
			t.Fatalf("%s: PeerVersion(%q) stayed %d but its pods changed:\nwas %s\nnow %s", event, pr.Key, v, prev.pods, b.String())
		}
		seen.peers[pr.Key] = peerSeen{version: v, pods: b.String()}

		var union []*cluster.Pod
		ix.EachPeerPart(pr, func(version uint64, parts iter.Seq[*cluster.Pod]) {
			part := slices.SortedFunc(parts, func(a, b *cluster.Pod) int { return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name) })
			union = append(union, part...)
			var b strings.Builder
			for _, p := range part {
				fmt.Fprintf(&b, "%s@%p ", p.Key(), p)
			}
			if prev, ok := seen.parts[version]; ok && prev != b.String() {
				t.Fatalf("%s: a part of peer %q kept version %d but its pods changed:\nwas %s\nnow %s", event, pr.Key, version, prev, b.String())
			}
			seen.parts[version] = b.String()
		})
		slices.SortFunc(union, func(a, b *cluster.Pod) int { return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name) })
		if !slices.Equal(union, want) {
			t.Fatalf("%s: the parts of peer %q hold %v, want each of %v once", event, pr.Key, podKeys(union), podKeys(want))
		}
	}
}

// checkInvariants checks the index's internal bookkeeping against a
// recomputation: every cell holds exactly the groups its selector matches,
// namespace selectors match exactly the live namespaces they should, and no
// entry outlives its last reference.
func checkInvariants(t *testing.T, event string, ix *Index) {
	t.Helper()
	for name, e := range ix.namespaces {
		if e.live != (e.ns != nil || len(e.pods) > 0) {
			t.Fatalf("after %s: namespace %s live=%v with known=%v and %d pods", event, name, e.live, e.ns != nil, len(e.pods))
		}
		if e.ns == nil && len(e.pods) == 0 && len(e.cells) == 0 && len(e.policies) == 0 {
			t.Fatalf("after %s: namespace %s kept with nothing referring to it", event, name)
		}
		for key, g := range e.groups {
			if len(g.pods) == 0 {
				t.Fatalf("after %s: empty group %q kept in %s", event, key, name)
			}
		}
		for key, c := range e.cells {
			if c.refs <= 0 {
				t.Fatalf("after %s: cell %q in %s kept with %d references", event, key, name, c.refs)
			}
			for _, g := range e.groups {
				held := 0
				for _, cg := range c.groups.items {
					if cg == g {
						held++
					}
				}
				in := held == 1
				if held > 1 {
					t.Fatalf("after %s: cell %q in %s holds group %v %d times", event, key, name, g.labels, held)
				}
				links := 0
				for _, gc := range g.cells.items {
					if gc == c {
						links++
					}
				}
				if want := c.sel.Matches(g.labels); in != want || (links == 1) != want || links > 1 {
					t.Fatalf("after %s: cell %q in %s holds group %v: %v (%d back links), want %v", event, key, name, g.labels, in, links, want)
				}
			}
			// Every peer the cell invalidates holds it, once.
			seenPeers := map[*peerEntry]bool{}
			for _, p := range c.peers.items {
				if seenPeers[p] || p.cells[c.ns] != c || ix.peers[p.key] != p {
					t.Fatalf("after %s: cell %q in %s lists peer %q, which does not hold it (or twice)", event, key, name, p.key)
				}
				seenPeers[p] = true
			}
			if len(c.groups.items) > len(e.groups) {
				t.Fatalf("after %s: cell %q in %s holds %d groups, the namespace has %d", event, key, name, len(c.groups.items), len(e.groups))
			}
		}
	}
	for key, s := range ix.nsSels {
		if len(s.peers) == 0 {
			t.Fatalf("after %s: namespace selector %q kept without peers", event, key)
		}
		for _, e := range ix.namespaces {
			_, in := s.matched[e]
			if want := e.live && s.sel.Matches(e.labels); in != want {
				t.Fatalf("after %s: namespace selector %q matches %s: %v, want %v", event, key, e.name, in, want)
			}
		}
	}
	if len(ix.adhoc) > ix.adhocLimit {
		t.Fatalf("after %s: %d ad-hoc peers held, limit %d", event, len(ix.adhoc), ix.adhocLimit)
	}
	for _, p := range ix.adhoc {
		if !p.adhoc || ix.peers[p.key] != p {
			t.Fatalf("after %s: ad-hoc peer %q was released while held", event, p.key)
		}
	}
	for key, pe := range ix.policies {
		if c := pe.subject; ix.namespaces[c.ns.name] != c.ns || c.ns.cells[c.key] != c {
			t.Fatalf("after %s: policy %s holds a cell of a forgotten namespace entry %s", event, key, c.ns.name)
		}
	}
	for key, p := range ix.peers {
		if p.refs == 0 && !p.adhoc {
			t.Fatalf("after %s: peer %q kept without references", event, key)
		}
		for e, c := range p.cells {
			if ix.namespaces[e.name] != e || e.cells[c.key] != c || c.ns != e {
				t.Fatalf("after %s: peer %q holds a cell of a forgotten namespace entry %s", event, key, e.name)
			}
			if !slices.Contains(c.peers.items, p) {
				t.Fatalf("after %s: peer %q holds cell %q of %s, which does not list it: a change there would not reach the peer", event, key, c.key, e.name)
			}
		}
		if p.nsSel != nil && len(p.cells) != len(p.nsSel.matched) {
			t.Fatalf("after %s: peer %q has %d cells for %d matched namespaces", event, key, len(p.cells), len(p.nsSel.matched))
		}
	}
}

func TestIndex_RandomEventsMatchNaiveScan(t *testing.T) {
	t.Parallel()
	events := 3000
	// A low ad-hoc limit evicts and rebuilds ad-hoc peers all the time; the
	// default keeps them cached across many events.
	runs := []struct {
		seed       uint64
		adhocLimit int
	}{{1, 8}, {2, maxAdhocPeers}, {3, maxAdhocPeers}}
	if testing.Short() {
		events, runs = 400, runs[:2]
	}
	for _, run := range runs {
		t.Run(fmt.Sprintf("seed=%d,adhocLimit=%d", run.seed, run.adhocLimit), func(t *testing.T) {
			t.Parallel()
			r := newRandomCluster(run.seed)
			m := &naive{namespaces: map[string]*cluster.Namespace{}, pods: map[string]*cluster.Pod{}, policies: map[string]*cluster.Policy{}}
			ix := New()
			ix.adhocLimit = run.adhocLimit
			var adhoc []*cluster.Peer
			seen := versionsSeen{peers: map[string]peerSeen{}, parts: map[uint64]string{}}
			for range 20 {
				adhoc = append(adhoc, r.adhocPeer())
			}
			for i := range events {
				var event string
				k := r.rng.IntN(100)
				if (i/200)%3 == 2 {
					// Every third phase drains the cluster, so that namespaces
					// empty out and are forgotten, then fill again.
					switch {
					case k < 40:
						k = 45 // delete pod
					case k >= 52 && k < 64:
						k = 65 // delete namespace
					case k >= 70 && k < 90:
						k = 92 // delete policy
					}
				}
				switch {
				case k < 30:
					p := r.pod()
					event = fmt.Sprintf("event %d: upsert pod %s %v hostNetwork=%v", i, p.Key(), p.Labels, p.HostNetwork)
					m.pods[p.Key()] = p
					ix.UpsertPod(p)
				case k < 40:
					// Same pod, new value: an address or node change only.
					old := m.sortedPods()
					if len(old) == 0 {
						continue
					}
					p := *old[r.rng.IntN(len(old))]
					r.nextIP++
					p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(r.nextIP >> 8), byte(r.nextIP)})}
					p.NodeName = fmt.Sprintf("node-%d", r.rng.IntN(3))
					event = fmt.Sprintf("event %d: readdress pod %s", i, p.Key())
					m.pods[p.Key()] = &p
					ix.UpsertPod(&p)
				case k < 52:
					ns, name := r.pick(r.nsNames), r.pick(r.podNames)
					event = fmt.Sprintf("event %d: delete pod %s/%s", i, ns, name)
					delete(m.pods, ns+"/"+name)
					ix.DeletePod(ns, name)
				case k < 64:
					ns := r.namespace()
					event = fmt.Sprintf("event %d: upsert namespace %s %v", i, ns.Name, ns.Labels)
					m.namespaces[ns.Name] = ns
					ix.UpsertNamespace(ns)
				case k < 70:
					name := r.pick(r.nsNames)
					event = fmt.Sprintf("event %d: delete namespace %s", i, name)
					delete(m.namespaces, name)
					ix.DeleteNamespace(name)
				case k < 90:
					p := r.policy()
					if pr := adhoc[r.rng.IntN(len(adhoc))]; r.rng.IntN(4) == 0 && pr.Key != "" {
						// Share a peer with the ad-hoc queries, so that peers
						// pass between policy-held and ad-hoc.
						p.IngressRules = append(p.IngressRules, cluster.Rule{Peers: []cluster.Peer{*pr}, AllPorts: true})
					}
					event = fmt.Sprintf("event %d: upsert policy %s selecting %q", i, p.Key(), p.PodSelectorKey)
					m.policies[p.Key()] = p
					ix.UpsertPolicy(p)
				case k < 97:
					ns, name := r.pick(r.nsNames), r.pick(r.polNames)
					event = fmt.Sprintf("event %d: delete policy %s/%s", i, ns, name)
					delete(m.policies, ns+"/"+name)
					ix.DeletePolicy(ns, name)
				default:
					// A new ad-hoc query; the ad-hoc peers outnumber the
					// lowered limit, so eviction is exercised too.
					pr := r.adhocPeer()
					event = fmt.Sprintf("event %d: ad hoc peer %q", i, pr.Key)
					adhoc = append(adhoc, pr)
				}
				compare(t, event, ix, m, r, adhoc)
				checkVersions(t, event, ix, m, adhoc, seen)
				checkInvariants(t, event, ix)
				if i%250 == 0 {
					compare(t, event+" (index rebuilt with FromSnapshot)", FromSnapshot(ix.Snapshot()), m, r, adhoc)
				}
			}
			// Emptying the cluster must leave nothing behind.
			for _, p := range m.sortedPods() {
				ix.DeletePod(p.Namespace, p.Name)
			}
			for _, p := range m.sortedPolicies() {
				ix.DeletePolicy(p.Namespace, p.Name)
			}
			for name := range m.namespaces {
				ix.DeleteNamespace(name)
			}
			ix.dropAdhoc()
			if len(ix.namespaces)+len(ix.peers)+len(ix.nodes)+len(ix.nsSels)+len(ix.policies)+ix.podCount != 0 {
				var left []string
				for name := range ix.namespaces {
					left = append(left, "namespace "+name)
				}
				for key := range ix.peers {
					left = append(left, "peer "+key)
				}
				for key := range ix.nsSels {
					left = append(left, "namespace selector "+key)
				}
				t.Fatalf("after deleting everything the index still holds: %s (%d policies, %d pods)",
					strings.Join(left, ", "), len(ix.policies), ix.podCount)
			}
		})
	}
}
