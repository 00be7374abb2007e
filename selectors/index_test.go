package selectors

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
)

// Fixture builders.

// set builds a label set from key, value pairs.
func set(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func matchLabels(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: set(kv...)}
}

func matchExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func namespace(name string, kv ...string) *cluster.Namespace {
	return cluster.ConvertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: set(kv...)}})
}

func pod(ns, name string, kv ...string) *cluster.Pod {
	return &cluster.Pod{
		Namespace: ns, Name: name, Labels: labels.Set(set(kv...)), NodeName: "node-0",
		IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
	}
}

func withIP(p *cluster.Pod, ip string) *cluster.Pod {
	c := *p
	c.IPs = []netip.Addr{netip.MustParseAddr(ip)}
	return &c
}

func hostNetwork(p *cluster.Pod) *cluster.Pod {
	c := *p
	c.HostNetwork = true
	return &c
}

// policy converts a policy whose only ingress rule has the given peers.
func policy(t *testing.T, ns, name string, podSelector *metav1.LabelSelector, peers ...networkingv1.NetworkPolicyPeer) *cluster.Policy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *podSelector,
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: peers}},
		},
	}
	p, errs := cluster.ConvertPolicy(np)
	if len(errs) > 0 {
		t.Fatalf("fixture policy %s/%s: %v", ns, name, errs)
	}
	return p
}

// peer converts one pod-selecting peer of a policy in namespace ns.
func peer(t *testing.T, ns string, nsSel, podSel *metav1.LabelSelector) *cluster.Peer {
	t.Helper()
	p := policy(t, ns, "peer-fixture", &metav1.LabelSelector{},
		networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel, PodSelector: podSel})
	return &p.IngressRules[0].Peers[0]
}

// Steps of a table test: events and assertions, applied in order.

type step func(t *testing.T, ix *Index)

func upNS(ns *cluster.Namespace) step {
	return func(t *testing.T, ix *Index) { ix.UpsertNamespace(ns) }
}

func delNS(name string) step { return func(t *testing.T, ix *Index) { ix.DeleteNamespace(name) } }

func upPod(p *cluster.Pod) step { return func(t *testing.T, ix *Index) { ix.UpsertPod(p) } }

func delPod(ns, name string) step {
	return func(t *testing.T, ix *Index) { ix.DeletePod(ns, name) }
}

func upPolicy(p *cluster.Policy) step { return func(t *testing.T, ix *Index) { ix.UpsertPolicy(p) } }

func delPolicy(ns, name string) step {
	return func(t *testing.T, ix *Index) { ix.DeletePolicy(ns, name) }
}

func podKeys(pods []*cluster.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Key())
	}
	return out
}

func policyKeys(pols []*cluster.Policy) []string {
	out := []string{}
	for _, p := range pols {
		out = append(out, p.Key())
	}
	return out
}

func wantPeerPods(what string, pr *cluster.Peer, want ...string) step {
	return func(t *testing.T, ix *Index) {
		t.Helper()
		for range 2 { // the second call is served from the cache
			if diff := cmp.Diff(append([]string{}, want...), podKeys(ix.PeerPods(pr))); diff != "" {
				t.Errorf("PeerPods(%s) (-want +got):\n%s", what, diff)
			}
		}
	}
}

func wantPoliciesFor(ns, name string, want ...string) step {
	return func(t *testing.T, ix *Index) {
		t.Helper()
		if diff := cmp.Diff(append([]string{}, want...), policyKeys(ix.PoliciesFor(ns, name))); diff != "" {
			t.Errorf("PoliciesFor(%s/%s) (-want +got):\n%s", ns, name, diff)
		}
	}
}

func wantSubjectPods(p *cluster.Policy, want ...string) step {
	return func(t *testing.T, ix *Index) {
		t.Helper()
		if diff := cmp.Diff(append([]string{}, want...), podKeys(ix.SubjectPods(p))); diff != "" {
			t.Errorf("SubjectPods(%s) (-want +got):\n%s", p.Key(), diff)
		}
	}
}

func wantPods(want ...string) step {
	return func(t *testing.T, ix *Index) {
		t.Helper()
		if diff := cmp.Diff(append([]string{}, want...), podKeys(ix.Pods())); diff != "" {
			t.Errorf("Pods() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(append([]string{}, want...), podKeys(ix.Snapshot().Pods)); diff != "" {
			t.Errorf("Snapshot().Pods (-want +got):\n%s", diff)
		}
	}
}

func TestIndex_Selection(t *testing.T) {
	t.Parallel()
	fx := fixtureT{t} // fixtures are built once, failing the top-level test

	notInDB := fx.peer("a", nil, matchExpr("app", metav1.LabelSelectorOpNotIn, "db"))
	emptyValue := fx.peer("a", nil, matchLabels("k", ""))
	polEmptyValue := fx.policy("a", "empty-value", matchLabels("k", ""))
	lateByName := fx.peer("a", matchLabels(corev1.LabelMetadataName, "late"), nil)
	teamX := fx.peer("a", matchLabels("team", "x"), nil)
	teamXWeb := fx.peer("a", matchLabels("team", "x"), matchLabels("app", "web"))
	allNamespaces := fx.peer("a", &metav1.LabelSelector{}, nil)
	web := fx.peer("a", nil, matchLabels("app", "web"))
	db := fx.peer("a", nil, matchLabels("app", "db"))
	polWeb := fx.policy("a", "web", matchLabels("app", "web"))
	polDB := fx.policy("a", "db", matchLabels("app", "db"))
	polAll := fx.policy("a", "all", &metav1.LabelSelector{})
	allInB := fx.peer("b", nil, &metav1.LabelSelector{})
	inBWeb := fx.peer("b", nil, matchLabels("app", "web"))
	envExists := fx.peer("a", matchExpr("env", metav1.LabelSelectorOpExists), matchExpr("tier", metav1.LabelSelectorOpDoesNotExist))

	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "NotIn matches a pod lacking the key",
			steps: []step{
				upPod(pod("a", "web", "app", "web")),
				upPod(pod("a", "db", "app", "db")),
				upPod(pod("a", "bare")),
				wantPeerPods("app notin (db)", notInDB, "a/bare", "a/web"),
			},
		},
		{
			name: "matchLabels with an empty value needs the key, with that empty value",
			steps: []step{
				upPod(pod("a", "empty", "k", "")),
				upPod(pod("a", "other", "k", "x")),
				upPod(pod("a", "absent", "j", "")),
				upPolicy(polEmptyValue),
				wantPeerPods("k=''", emptyValue, "a/empty"),
				wantSubjectPods(polEmptyValue, "a/empty"),
				wantPoliciesFor("a", "empty", "a/empty-value"),
				wantPoliciesFor("a", "other"),
				wantPoliciesFor("a", "absent"),
			},
		},
		{
			name: "pod before its namespace is matched with the default namespace labels",
			steps: []step{
				upPod(pod("late", "p", "app", "web")),
				wantPeerPods("ns name=late", lateByName, "late/p"),
				wantPeerPods("ns team=x", teamX),
				wantPeerPods("ns {}", allNamespaces, "late/p"),
				upNS(namespace("late", "team", "x")),
				wantPeerPods("ns name=late", lateByName, "late/p"),
				wantPeerPods("ns team=x", teamX, "late/p"),
				wantPeerPods("ns team=x, app=web", teamXWeb, "late/p"),
				delNS("late"),
				wantPeerPods("ns team=x after namespace delete", teamX),
				wantPeerPods("ns name=late after namespace delete", lateByName, "late/p"),
				wantPods("late/p"),
			},
		},
		{
			name: "namespace relabel moves pods in and out of a peer",
			steps: []step{
				upNS(namespace("a", "team", "x")),
				upNS(namespace("b", "team", "y")),
				upPod(pod("a", "p", "app", "web")),
				upPod(pod("b", "q", "app", "web")),
				upPod(pod("b", "r", "app", "db")),
				wantPeerPods("team=x", teamX, "a/p"),
				wantPeerPods("team=x, app=web", teamXWeb, "a/p"),
				upNS(namespace("b", "team", "x")),
				wantPeerPods("team=x", teamX, "a/p", "b/q", "b/r"),
				wantPeerPods("team=x, app=web", teamXWeb, "a/p", "b/q"),
				upNS(namespace("a", "team", "z")),
				wantPeerPods("team=x", teamX, "b/q", "b/r"),
				wantPeerPods("team=x, app=web", teamXWeb, "b/q"),
				upNS(namespace("a", "team", "x", "env", "prod")),
				wantPeerPods("env exists, tier absent", envExists, "a/p"),
				wantPeerPods("team=x", teamX, "a/p", "b/q", "b/r"),
			},
		},
		{
			name: "pod relabel changes its peers and subject policies",
			steps: []step{
				upPolicy(polWeb), upPolicy(polDB), upPolicy(polAll),
				upPod(pod("a", "p", "app", "web")),
				wantPeerPods("app=web", web, "a/p"),
				wantPeerPods("app=db", db),
				wantPoliciesFor("a", "p", "a/all", "a/web"),
				wantSubjectPods(polWeb, "a/p"),
				upPod(pod("a", "p", "app", "db")),
				wantPeerPods("app=web", web),
				wantPeerPods("app=db", db, "a/p"),
				wantPoliciesFor("a", "p", "a/all", "a/db"),
				wantSubjectPods(polWeb),
				wantSubjectPods(polDB, "a/p"),
				delPolicy("a", "all"),
				wantPoliciesFor("a", "p", "a/db"),
				upPod(pod("a", "p")),
				wantPoliciesFor("a", "p"),
				wantPeerPods("app notin (db)", notInDB, "a/p"),
			},
		},
		{
			name: "a pod moving namespace is a delete and an add",
			steps: []step{
				upPod(pod("a", "p", "app", "web")),
				upPod(pod("b", "p", "app", "web")),
				wantPods("a/p", "b/p"),
				wantPeerPods("app=web in a", web, "a/p"),
				wantPeerPods("app=web in b", inBWeb, "b/p"),
				delPod("a", "p"),
				wantPods("b/p"),
				wantPeerPods("app=web in a", web),
				wantPeerPods("all of b", allInB, "b/p"),
			},
		},
		{
			name: "hostNetwork pods are never subjects nor peers",
			steps: []step{
				upPolicy(polAll),
				upPod(hostNetwork(pod("a", "h", "app", "web"))),
				upPod(hostNetwork(pod("b", "h", "app", "web"))),
				wantPods("a/h", "b/h"),
				wantPoliciesFor("a", "h"),
				wantSubjectPods(polAll),
				wantPeerPods("app=web", web),
				wantPeerPods("ns {}", allNamespaces),
				upPod(pod("a", "h", "app", "web")),
				wantPoliciesFor("a", "h", "a/all"),
				wantPeerPods("ns {}", allNamespaces, "a/h"),
				upPod(hostNetwork(pod("a", "h", "app", "web"))),
				wantPoliciesFor("a", "h"),
				wantPeerPods("ns {}", allNamespaces),
			},
		},
		{
			name: "results follow key order across namespaces sharing a prefix",
			steps: []step{
				upPod(pod("a", "x")),
				upPod(pod("a-b", "x")),
				upPod(pod("a0", "x")),
				wantPods("a-b/x", "a/x", "a0/x"),
				wantPeerPods("ns {}", allNamespaces, "a-b/x", "a/x", "a0/x"),
			},
		},
		{
			name: "an address change is visible through cached results",
			steps: []step{
				upPod(pod("a", "p", "app", "web")),
				wantPeerPods("app=web", web, "a/p"),
				upPod(withIP(pod("a", "p", "app", "web"), "10.0.0.9")),
				func(t *testing.T, ix *Index) {
					got := ix.PeerPods(web)
					if len(got) != 1 || got[0].IPs[0] != netip.MustParseAddr("10.0.0.9") {
						t.Errorf("PeerPods(app=web) after address change = %v, want a/p at 10.0.0.9", got)
					}
					if got := ix.Pod("a", "p"); got.IPs[0] != netip.MustParseAddr("10.0.0.9") {
						t.Errorf("Pod(a/p) after address change = %v, want 10.0.0.9", got)
					}
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ix := New()
			for _, s := range tt.steps {
				s(t, ix)
			}
		})
	}
}

// fixtureT lets fixtures be built once, outside t.Run, failing the parent test.
type fixtureT struct{ *testing.T }

func (f fixtureT) peer(ns string, nsSel, podSel *metav1.LabelSelector) *cluster.Peer {
	return peer(f.T, ns, nsSel, podSel)
}

func (f fixtureT) policy(ns, name string, podSel *metav1.LabelSelector) *cluster.Policy {
	return policy(f.T, ns, name, podSel)
}

func TestIndex_PeerKinds(t *testing.T) {
	t.Parallel()
	ix := New()
	ix.UpsertPod(pod("a", "p", "app", "web"))
	ipBlock := &cluster.Peer{Kind: cluster.PeerIPBlock, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Key: "ipblock=10.0.0.0/8"}
	if got := ix.PeerPods(ipBlock); got != nil {
		t.Errorf("PeerPods(ipBlock) = %v, want nil", podKeys(got))
	}
	if got := ix.PeerPods(&cluster.Peer{}); got != nil {
		t.Errorf("PeerPods(invalid peer) = %v, want nil", podKeys(got))
	}
	// A hand-built peer without a Key is keyed by its selectors.
	sel, err := labels.Parse("app=web")
	if err != nil {
		t.Fatal(err)
	}
	handBuilt := &cluster.Peer{Kind: cluster.PeerPods, Namespace: "a", PodSelector: sel}
	if diff := cmp.Diff([]string{"a/p"}, podKeys(ix.PeerPods(handBuilt))); diff != "" {
		t.Errorf("PeerPods(hand-built app=web) (-want +got):\n%s", diff)
	}
	nothing := &cluster.Peer{Kind: cluster.PeerPods, Namespace: "a", PodSelector: labels.Nothing()}
	if got := ix.PeerPods(nothing); got != nil {
		t.Errorf("PeerPods(labels.Nothing()) = %v, want nil (it must not share the key of Everything)", podKeys(got))
	}
}

func TestIndex_ReturnedSlicesAreCapped(t *testing.T) {
	t.Parallel()
	ix := New()
	ix.UpsertPod(pod("a", "p", "app", "web"))
	for _, name := range []string{"x", "y", "z"} { // three appends leave spare capacity
		ix.UpsertPolicy(policy(t, "a", name, matchLabels("app", "web")))
	}
	pr := peer(t, "a", nil, matchLabels("app", "web"))
	// Two callers appending to what they were given must not see each other's
	// elements: returned slices have no spare capacity shared with the cache.
	extra1, extra2 := &cluster.Policy{Name: "extra1"}, &cluster.Policy{Name: "extra2"}
	first := append(ix.PoliciesFor("a", "p"), extra1)
	_ = append(ix.PoliciesFor("a", "p"), extra2)
	if first[len(first)-1] != extra1 {
		t.Errorf("PoliciesFor result shares spare capacity: a second append overwrote the first")
	}
	pod1, pod2 := pod("a", "extra1"), pod("a", "extra2")
	for name, get := range map[string]func() []*cluster.Pod{
		"PeerPods": func() []*cluster.Pod { return ix.PeerPods(pr) },
		"Pods":     ix.Pods,
		"SubjectPods": func() []*cluster.Pod {
			return ix.SubjectPods(ix.Policies()[0])
		},
	} {
		first := append(get(), pod1)
		_ = append(get(), pod2)
		if first[len(first)-1] != pod1 {
			t.Errorf("%s result shares spare capacity: a second append overwrote the first", name)
		}
	}
	if diff := cmp.Diff([]string{"a/x", "a/y", "a/z"}, policyKeys(ix.PoliciesFor("a", "p"))); diff != "" {
		t.Errorf("PoliciesFor after callers appended (-want +got):\n%s", diff)
	}
}

func TestIndex_NamespaceLookups(t *testing.T) {
	t.Parallel()
	ix := New()
	ix.UpsertPod(pod("early", "p"))
	if got := ix.Namespace("early"); got != nil {
		t.Errorf("Namespace(early) before UpsertNamespace = %v, want nil", got)
	}
	if diff := cmp.Diff(labels.Set{corev1.LabelMetadataName: "early"}, ix.NamespaceLabels("early")); diff != "" {
		t.Errorf("NamespaceLabels(early) (-want +got):\n%s", diff)
	}
	ns := namespace("early", "team", "x")
	ix.UpsertNamespace(ns)
	if got := ix.Namespace("early"); got != ns {
		t.Errorf("Namespace(early) = %v, want %v", got, ns)
	}
	s := ix.Snapshot()
	if len(s.Namespaces) != 1 || s.Namespaces["early"] != ns {
		t.Errorf("Snapshot().Namespaces = %v, want only early", s.Namespaces)
	}
	ix.DeleteNamespace("early")
	if got := ix.Namespace("early"); got != nil {
		t.Errorf("Namespace(early) after delete = %v, want nil", got)
	}
	if got := ix.Pod("early", "p"); got == nil {
		t.Error("Pod(early/p) after namespace delete = nil, want the pod (pods go by their own events)")
	}
}

func TestIndex_FromSnapshotMatchesIncremental(t *testing.T) {
	t.Parallel()
	pols := []*cluster.Policy{
		policy(t, "a", "web", matchLabels("app", "web"),
			networkingv1.NetworkPolicyPeer{NamespaceSelector: matchLabels("team", "x")},
			networkingv1.NetworkPolicyPeer{PodSelector: matchExpr("app", metav1.LabelSelectorOpIn, "db", "web")}),
		policy(t, "b", "all", &metav1.LabelSelector{},
			networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: matchLabels("app", "db")}),
	}
	s := &cluster.Snapshot{
		Namespaces: map[string]*cluster.Namespace{"a": namespace("a", "team", "x"), "b": namespace("b", "team", "y")},
		Pods: []*cluster.Pod{
			pod("a", "p", "app", "web"), pod("a", "q", "app", "db"), pod("b", "r", "app", "db"),
			hostNetwork(pod("b", "h", "app", "db")), pod("c", "s", "app", "db"),
		},
		Policies: pols,
	}
	s.Sort()
	fromSnap := FromSnapshot(s)
	inc := New()
	for i := len(s.Pods) - 1; i >= 0; i-- { // another order: pods and policies before namespaces
		inc.UpsertPod(s.Pods[i])
	}
	for _, p := range s.Policies {
		inc.UpsertPolicy(p)
	}
	for _, ns := range s.Namespaces {
		inc.UpsertNamespace(ns)
	}
	for _, ix := range []*Index{fromSnap, inc} {
		if diff := cmp.Diff([]string{"a/p", "a/q", "b/h", "b/r", "c/s"}, podKeys(ix.Pods())); diff != "" {
			t.Errorf("Pods (-want +got):\n%s", diff)
		}
		want := map[string][]string{
			pols[0].IngressRules[0].Peers[0].Key: {"a/p", "a/q"},
			pols[0].IngressRules[0].Peers[1].Key: {"a/p", "a/q"},
			pols[1].IngressRules[0].Peers[0].Key: {"a/q", "b/r", "c/s"},
		}
		for _, p := range pols {
			for _, pr := range p.IngressRules[0].Peers {
				if diff := cmp.Diff(want[pr.Key], podKeys(ix.PeerPods(&pr))); diff != "" {
					t.Errorf("PeerPods(%s) (-want +got):\n%s", pr.Key, diff)
				}
			}
		}
		if diff := cmp.Diff([]string{"b/all"}, policyKeys(ix.PoliciesFor("b", "r"))); diff != "" {
			t.Errorf("PoliciesFor(b/r) (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"a/web", "b/all"}, policyKeys(ix.Policies())); diff != "" {
			t.Errorf("Policies (-want +got):\n%s", diff)
		}
	}
}

func TestCompareKeys(t *testing.T) {
	t.Parallel()
	keys := [][2]string{{"a", "x"}, {"a-b", "x"}, {"a", "y"}, {"a0", "a"}, {"ab", ""}, {"b", "a"}, {"a-b", "a"}}
	for _, x := range keys {
		for _, y := range keys {
			want := strings.Compare(x[0]+"/"+x[1], y[0]+"/"+y[1])
			if got := compareKeys(x[0], x[1], y[0], y[1]); got != want {
				t.Errorf("compareKeys(%q, %q) = %d, want %d", x, y, got, want)
			}
		}
	}
	if !slices.IsSortedFunc([]string{"a-b/x", "a/x"}, strings.Compare) {
		t.Fatal("fixture: key order assumption broken")
	}
}
