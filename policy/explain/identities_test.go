package explain

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
)

// Identities: which pod (or node) an address stands for, as explain judges
// it and as the kernel sees it (issue 26, classes 6 and 7).

func labNode(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

// TestExplain_NodeAddressAsSource: a Node's own address given as the
// source is node traffic into the pods of that node (the kernel accepts
// it, fib saddr type local, whatever the policies say), and that remote
// node's traffic, judged by the policies, into the pods of another node.
func TestExplain_NodeAddressAsSource(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	require.Empty(t, snap.AddClusterPolicies(nil, []*corev1.Node{labNode("node-a", "192.168.0.1"), labNode("node-b", "192.168.0.2")}))

	// db runs on node-b and admits only web: its own node still reaches it.
	rs, err := Explain(snap, Query{Src: "192.168.0.2", Dst: "shop/db", Port: 5432, Trace: true})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.True(t, rs[0].Allowed, "node-b's own address into a pod of node-b: %s", rs[0].Ingress.Reason)
	assert.Contains(t, rs[0].Ingress.Reason, "own node")
	require.NoError(t, Disagreement(rs))

	// From node-a, db's policies decide: they admit only web.
	rs, err = Explain(snap, Query{Src: "192.168.0.1", Dst: "shop/db", Port: 5432, Trace: true})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.False(t, rs[0].Allowed, "a remote node's address is judged by the policies")
	require.NoError(t, Disagreement(rs))
}

// slice is an EndpointSlice of Service shop/db on port "pg" with one
// endpoint per address, each naming a pod as its targetRef ("" for none).
func slice(addrs map[string]string) *discoveryv1.EndpointSlice {
	name, port := "pg", int32(6432)
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-x", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}}}
	for a, ref := range addrs {
		e := discoveryv1.Endpoint{Addresses: []string{a}}
		if ns, n, ok := strings.Cut(ref, "/"); ok {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: n}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// TestExplain_ServiceBackendsByAddress: kube-proxy delivers to the
// endpoint's address, so explain judges the pod that holds that address
// now, whatever the EndpointSlice's targetRef names (anyone who can write
// an EndpointSlice can name any pod, in any namespace; a stale slice names
// a pod that is gone).
func TestExplain_ServiceBackendsByAddress(t *testing.T) {
	t.Parallel()
	t.Run("targetRef naming another pod", func(t *testing.T) {
		t.Parallel()
		// 10.0.0.3 is db2, closed to everyone; the slice says it is db,
		// which admits web.
		snap := serviceSnapshot(t, false, slice(map[string]string{"10.0.0.3": "shop/db"}))
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432, Trace: true})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "shop/db2", rs[0].To)
		assert.False(t, rs[0].Allowed)
		require.NoError(t, Disagreement(rs))
	})
	t.Run("targetRef naming a pod of another namespace", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshot(t, false, slice(map[string]string{"10.0.0.3": "bank/vault"}))
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432, Trace: true})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "shop/db2", rs[0].To)
		require.NoError(t, Disagreement(rs))
	})
	t.Run("stale slice naming a terminal pod whose address db2 holds now", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshotWith(t, func(o *objects) {
			old := pod("old", "node-a", nil, "10.0.0.3")
			old.Status.Phase = corev1.PodFailed
			old.Labels = map[string]string{"app": "old"}
			o.pods = append(o.pods, old)
		}, slice(map[string]string{"10.0.0.3": "shop/old"}))
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432, Trace: true})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "shop/db2", rs[0].To)
		assert.False(t, rs[0].Allowed)
		require.NoError(t, Disagreement(rs))
	})
	t.Run("an address no pod holds", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshot(t, false, slice(map[string]string{"10.0.0.77": "shop/db"}))
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432, Trace: true})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "10.0.0.77", rs[0].To)
		require.NoError(t, Disagreement(rs))
	})
}

// TestExplain_PodCallsItselfThroughItsService: the hairpinned packet leaves
// the pod and comes back through the node, which judges the pod's egress to
// itself and its ingress from itself; db2 admits nobody, itself included.
func TestExplain_PodCallsItselfThroughItsService(t *testing.T) {
	t.Parallel()
	snap := serviceSnapshot(t, false)
	rs, err := Explain(snap, Query{Src: "shop/db2", Dst: "svc/shop/db", Port: 5432, Trace: true})
	require.NoError(t, err)
	var self *Result
	for i := range rs {
		if rs[i].To == "shop/db2" {
			self = &rs[i]
		}
	}
	require.NotNil(t, self, "db2 is a backend of shop/db")
	assert.False(t, self.Allowed, "db2 is closed to every source, itself included: %s", self.Ingress.Reason)
	require.NoError(t, Disagreement(rs))

	// Straight to its own address, the packet never leaves the pod.
	rs, err = Explain(snap, Query{Src: "shop/db2", Dst: "shop/db2", Port: 6432, Trace: true})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.True(t, rs[0].Allowed)
	require.NoError(t, Disagreement(rs))
}

// TestExplain_ClaimantsOfOneAddress: two pods on two nodes claim one
// address. A packet from one to "the other" is addressed to the sender's
// own address and never leaves it; model and trace say the same.
func TestExplain_ClaimantsOfOneAddress(t *testing.T) {
	t.Parallel()
	snap := snapshotAllowingErrors(t, func(o *objects) {
		a := pod("twin-a", "node-a", nil, "10.0.0.9")
		b := pod("twin-b", "node-b", nil, "10.0.0.9")
		o.pods = append(o.pods, a, b)
		o.policies = append(o.policies, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "twins-closed"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"twin-a", "twin-b"}}}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}})
	})
	for _, q := range []Query{{Src: "shop/twin-a", Dst: "shop/twin-b", Port: 80, Trace: true}, {Src: "shop/twin-b", Dst: "shop/twin-a", Port: 80, Trace: true}} {
		rs, err := Explain(snap, q)
		require.NoError(t, err)
		require.Len(t, rs, 1)
		require.NoError(t, Disagreement(rs), "%s -> %s: model %v (%s | %s)", q.Src, q.Dst, rs[0].Allowed, rs[0].Egress.Reason, rs[0].Ingress.Reason)
	}
}

// TestExplain_RunningPodWithoutNode: a pod with an address but no
// spec.nodeName runs on no node; no node judges its traffic, so its
// address is no pod's (and the conversion says so).
func TestExplain_RunningPodWithoutNode(t *testing.T) {
	t.Parallel()
	var errs []error
	snap := snapshotAllowingErrors(t, func(o *objects) {
		ghost := pod("ghost", "", nil, "10.0.0.8")
		o.pods = append(o.pods, ghost)
		o.policies = append(o.policies, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ghost-closed"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ghost"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}})
	}, &errs)
	assert.NotEmpty(t, errs, "a pod with addresses and no node is reported")
	rs, err := Explain(snap, Query{Src: "shop/db", Dst: "10.0.0.8", Port: 80, Trace: true})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.NoError(t, Disagreement(rs), "model %v (%s | %s)", rs[0].Allowed, rs[0].Egress.Reason, rs[0].Ingress.Reason)
}

// snapshotAllowingErrors is snapshot that keeps the conversion errors (in
// errs, when given) instead of failing on them.
func snapshotAllowingErrors(t testing.TB, tweak func(*objects), errs ...*[]error) *cluster.Snapshot {
	t.Helper()
	o := baseObjects()
	tweak(o)
	s, e := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	if len(errs) > 0 {
		*errs[0] = e
	}
	return s
}

// TestHostileServicesJudgedByAddress: random clusters with Services whose
// EndpointSlices hold what a slice writer can put there (targetRefs naming
// other pods of any namespace, stale endpoints naming finished pods whose
// address another pod holds, addresses no pod holds, a pod among its own
// Service's backends). explain through each Service, from every pod,
// judges each backend as the pod that holds its address now, agrees with
// the compiled tables walked by the tracer, and gives the same answers
// with every targetRef removed: a targetRef never changes a verdict.
func TestHostileServicesJudgedByAddress(t *testing.T) {
	t.Parallel()
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	checked, hairpins := 0, 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x5e7))
		opts := clustertest.Options{MaxClusterPolicies: 4, HostNetwork: seed%2 == 0}
		clean := clustertest.RandomObjects(rng, opts)
		objs, what := clustertest.HostileIdentities(rng, clean)
		svcs, slices, extra, swhat := clustertest.Services(rng, objs, true)
		what = append(what, swhat...)
		build := func(stripRefs bool) *cluster.Snapshot {
			snap, _ := cluster.NewSnapshot(objs.Namespaces, append(slicesClone(objs.Pods), extra...), objs.Policies)
			snap.AddClusterPolicies(objs.ClusterPolicies, objs.Nodes)
			sl := slices
			if stripRefs {
				sl = nil
				for _, s := range slices {
					s = s.DeepCopy()
					for i := range s.Endpoints {
						s.Endpoints[i].TargetRef = nil
					}
					sl = append(sl, s)
				}
			}
			snap.AddServices(svcs, sl)
			return snap
		}
		snap, bare := build(false), build(true)
		for _, p := range snap.Pods {
			if p.HostNetwork || p.NodeName == "" || len(p.IPs) == 0 {
				continue
			}
			for _, s := range snap.Services {
				q := Query{Src: p.Key(), Dst: "svc/" + s.Key(), Port: 8080, Trace: true}
				rs, err := Explain(snap, q)
				require.NoError(t, err)
				require.NoError(t, Disagreement(rs), "seed %d %q: %s -> %s", seed, what, p.Key(), s.Key())
				brs, err := Explain(bare, q)
				require.NoError(t, err)
				require.Equal(t, verdictsOf(brs), verdictsOf(rs), "seed %d %q: %s -> %s: a targetRef changed the answer", seed, what, p.Key(), s.Key())
				for _, r := range rs {
					checked++
					if r.Service.Backends == 0 {
						continue
					}
					if r.To == p.Key() {
						hairpins++
					}
					if a, err := netip.ParseAddr(r.To); err == nil {
						require.Nil(t, snap.PodByIP(a), "seed %d: %s is a pod's address, explain calls it no pod's", seed, a)
					}
				}
			}
		}
	}
	t.Logf("%d seeds, %d backends explained (%d hairpins), all agree and none by targetRef", seeds, checked, hairpins)
	if checked < seeds*5 || hairpins == 0 {
		t.Fatalf("only %d backends and %d hairpins over %d seeds: the generator is broken", checked, hairpins, seeds)
	}
}

func verdictsOf(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%d:%v", r.To, r.Port, r.Allowed))
	}
	return out
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }
