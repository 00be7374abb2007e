package compile_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// TestCompiler_CacheMatchesFreshCompile: a long-lived Compiler, as the agent
// keeps, must produce exactly what a fresh Compile does after any sequence of
// pod, namespace and policy changes, address reuse included. Some clusters
// have many namespaces, so that peers selecting in several have many parts
// and a change to one part patches the cached set (Compiler.mergeParts);
// policies are replaced by changed values under their names, so a group
// chain kept for the old values (memo.go) must not be taken back; some
// seeds log verdicts, so the log chains and deciders a kept chain needs
// must come back with it, and none may be taken back once the options
// change.
func TestCompiler_CacheMatchesFreshCompile(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		snap, _ := clustertest.Random(rng, clustertest.Options{IPv6: seed%2 == 0, HostNetwork: true, ExtraNamespaces: int(seed%3) * 5})
		ix := selectors.FromSnapshot(snap)
		var opts compile.Options
		if seed%3 == 1 {
			opts.Log = compile.LogOptions{Drops: true, Allowed: seed%2 == 0, Group: 5, Rate: 10}
		}
		ccs := map[string]*compile.Compiler{"node-1": {Options: opts}, "node-2": {Options: opts}} // one per node, as each node's agent keeps
		for step := 0; step < 60; step++ {
			pods := ix.Pods()
			if len(pods) < 3 {
				break // the random deletes emptied the cluster
			}
			if step == 30 && seed%3 != 2 { // the options change under a long-lived Compiler
				opts.Log.Drops = !opts.Log.Drops
				for _, cc := range ccs {
					cc.Options = opts
				}
			}
			p := *pods[rng.IntN(len(pods))]
			switch rng.IntN(6) {
			case 0: // relabel
				p.Labels = labels.Set{"app": []string{"a", "b", ""}[rng.IntN(3)], "tier": "b"}
				ix.UpsertPod(&p)
			case 1: // address change, sometimes to another pod's address
				if other := pods[rng.IntN(len(pods))]; len(other.IPs) > 0 && rng.IntN(2) == 0 {
					p.IPs = other.IPs
				} else {
					p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 9, byte(rng.IntN(250))})}
				}
				p.Created = p.Created.Add(time.Duration(rng.IntN(3)-1) * time.Second)
				ix.UpsertPod(&p)
			case 2: // delete
				ix.DeletePod(p.Namespace, p.Name)
			case 3: // a new pod
				p.Name = fmt.Sprintf("new-%d", step)
				p.Created = time.Unix(int64(1000+step), 0)
				ix.UpsertPod(&p)
			case 4: // a policy goes away
				if pols := ix.Policies(); len(pols) > 0 {
					pol := pols[rng.IntN(len(pols))]
					ix.DeletePolicy(pol.Namespace, pol.Name)
				}
			case 5: // a policy takes another's rules, under its own name
				if pols := ix.Policies(); len(pols) > 1 {
					pol, other := *pols[rng.IntN(len(pols))], pols[rng.IntN(len(pols))]
					pol.IngressRules, pol.EgressRules = other.IngressRules, other.EgressRules
					ix.UpsertPolicy(&pol)
				}
			}
			for _, node := range []string{"node-1", "node-2"} {
				got, err := ccs[node].Compile(ix, node)
				require.NoError(t, err)
				require.NoError(t, ruleset.Check(got), "seed %d step %d node %s: the compiled ruleset breaks its shapes' contract", seed, step, node)
				want, err := (&compile.Compiler{Options: opts}).Compile(ix, node)
				require.NoError(t, err)
				if got.Text() != want.Text() {
					t.Fatalf("seed %d step %d node %s: cached compile differs from a fresh one", seed, step, node)
				}
			}
		}
	}
}

// TestCompile_NewestPodOwnsAReusedAddress: while the API still shows an old
// pod holding an address a new pod now has, the new pod's labels decide.
func TestCompile_NewestPodOwnsAReusedAddress(t *testing.T) {
	t.Parallel()
	allowFromClients := policy("x", "allow", networkingv1.NetworkPolicySpec{
		PodSelector: *podSel(map[string]string{"pod": "b"}),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel(map[string]string{"role": "client"})}},
		}},
	})
	f := newFixture(withPolicy(allowFromClients), func(f *fixture) {
		old := pod("x", "old-client", "node-2", "10.0.0.9")
		old.Labels["role"] = "client"
		old.CreationTimestamp.Time = time.Unix(100, 0)
		reuse := pod("x", "new-other", "node-2", "10.0.0.9")
		reuse.CreationTimestamp.Time = time.Unix(200, 0)
		f.pods = append(f.pods, old, reuse)
	})
	rs := f.compile(t, "node-1")
	_, allowed, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs},
		trace.Endpoint{Addr: netip.MustParseAddr("10.0.0.9")},
		trace.Endpoint{Addr: netip.MustParseAddr("10.0.0.2"), Node: "node-1"}, 6, 80)
	require.NoError(t, err)
	assert.False(t, allowed, "10.0.0.9 now belongs to new-other, which is no client")
}

// TestCompile_PodNetworkDropsUnknownAddresses: with the pod network given, an
// address inside it that no known pod holds gets no traffic either way, while
// known pods (isolated or not) are judged as usual.
func TestCompile_PodNetworkDropsUnknownAddresses(t *testing.T) {
	t.Parallel()
	f := newFixture()
	snap, errs := cluster.NewSnapshot(f.namespaces, f.pods, f.policies)
	require.Empty(t, errs)
	cc := &compile.Compiler{Options: compile.Options{PodNetwork: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")}}}
	rs, err := cc.Compile(selectors.FromSnapshot(snap), "node-1")
	require.NoError(t, err)
	path := func(src, dst string, srcNode string) bool {
		t.Helper()
		_, ok, err := trace.Path(map[string]*ruleset.Ruleset{"node-1": rs},
			trace.Endpoint{Addr: netip.MustParseAddr(src), Node: srcNode},
			trace.Endpoint{Addr: netip.MustParseAddr(dst), Node: "node-1"}, 6, 80)
		require.NoError(t, err)
		return ok
	}
	assert.True(t, path("10.0.0.3", "10.0.0.1", ""), "known pod to known pod")
	assert.False(t, path("10.0.0.77", "10.0.0.1", ""), "an unknown pod-network address is dropped as a source")
	assert.False(t, path("10.0.0.1", "10.0.0.77", "node-1"), "and as a destination")
	assert.True(t, path("10.9.9.9", "10.0.0.1", ""), "addresses outside the pod network are not concerned")
	assert.False(t, path("fd00::77", "fd00::1", ""), "IPv6 too")
	_, err = (&compile.Compiler{Options: compile.Options{PodNetwork: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}}}).Compile(selectors.FromSnapshot(snap), "node-1")
	assert.ErrorContains(t, err, "overlap")
}

// TestCompiler_PatchedPeerSetsMatchFreshCompile: a peer selecting 20 pods
// in each of ten namespaces is a set of ten parts; after a change to one of them the
// long-lived Compiler patches the cached set (out with the changed part's
// old addresses, in with its new ones) instead of merging all ten again. The
// result must be what a fresh Compile gives, change after change, in both
// families.
func TestCompiler_PatchedPeerSetsMatchFreshCompile(t *testing.T) {
	t.Parallel()
	var namespaces []*corev1.Namespace
	var pods []*corev1.Pod
	for i := range 10 {
		ns := fmt.Sprintf("ns-%d", i)
		namespaces = append(namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		for j := range 24 { // enough per namespace for the parts to be cached (minPartAddrs)
			p := pod(ns, fmt.Sprintf("p%d", j), "node-2", fmt.Sprintf("10.0.%d.%d", i, j+1), fmt.Sprintf("fd00::%d:%d", i, j+1))
			p.Labels["app"] = "web"
			if j >= 2 && j < 6 {
				p.Labels["app"] = "db"
			}
			pods = append(pods, p)
		}
	}
	pods = append(pods, pod("ns-0", "local", "node-1", "10.0.99.1", "fd00::99:1"))
	pols := []*networkingv1.NetworkPolicy{policy("ns-0", "from-web", networkingv1.NetworkPolicySpec{
		PodSelector: *podSel(map[string]string{"pod": "local"}),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{},
			PodSelector:       podSel(map[string]string{"app": "web"}),
		}}}},
		// Four pods in each namespace: parts too small to keep.
		Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{},
			PodSelector:       podSel(map[string]string{"app": "db"}),
		}}}},
	})}
	snap, errs := cluster.NewSnapshot(namespaces, pods, pols)
	require.Empty(t, errs)
	ix := selectors.FromSnapshot(snap)
	cc := &compile.Compiler{}
	get := func(ns, name string) cluster.Pod {
		for _, p := range ix.Pods() {
			if p.Namespace == ns && p.Name == name {
				return *p
			}
		}
		t.Fatalf("no pod %s/%s", ns, name)
		return cluster.Pod{}
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"first compile", func() {}},
		{"a web pod becomes db", func() { p := get("ns-3", "p0"); p.Labels = labels.Set{"pod": "p0", "app": "db"}; ix.UpsertPod(&p) }},
		{"a db pod becomes web", func() { p := get("ns-4", "p2"); p.Labels = labels.Set{"pod": "p2", "app": "web"}; ix.UpsertPod(&p) }},
		{"a web pod moves", func() {
			p := get("ns-5", "p1")
			p.IPs = []netip.Addr{netip.MustParseAddr("10.0.50.7"), netip.MustParseAddr("fd00::50:7")}
			ix.UpsertPod(&p)
		}},
		{"a web pod goes", func() { ix.DeletePod("ns-7", "p0") }},
		{"a web pod comes", func() {
			p := get("ns-2", "p0")
			p.Name, p.IPs = "new", []netip.Addr{netip.MustParseAddr("10.0.2.200"), netip.MustParseAddr("fd00::2:200")}
			ix.UpsertPod(&p)
		}},
		{"the pod that became db is web again", func() { p := get("ns-3", "p0"); p.Labels = labels.Set{"pod": "p0", "app": "web"}; ix.UpsertPod(&p) }},
	}
	for _, st := range steps {
		st.change()
		got, err := cc.Compile(ix, "node-1")
		require.NoError(t, err)
		want, err := compile.Compile(ix, "node-1")
		require.NoError(t, err)
		require.Equal(t, want.Text(), got.Text(), "after %q", st.name)
	}
	assert.GreaterOrEqual(t, cc.Patches(), 2*(len(steps)-1), "each change should patch the IPv4 and the IPv6 set")
	assert.Equal(t, 2*10, cc.CachedParts(), "the ten parts of each family of the web peer, none of the db peer's")
}
