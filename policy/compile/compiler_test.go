package compile_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
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
// pod, namespace and policy changes, address reuse included.
func TestCompiler_CacheMatchesFreshCompile(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		snap, _ := clustertest.Random(rng, clustertest.Options{IPv6: seed%2 == 0, HostNetwork: true})
		ix := selectors.FromSnapshot(snap)
		cc := &compile.Compiler{}
		for step := 0; step < 60; step++ {
			pods := ix.Pods()
			if len(pods) < 3 {
				break // the random deletes emptied the cluster
			}
			p := *pods[rng.IntN(len(pods))]
			switch rng.IntN(5) {
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
			}
			for _, node := range []string{"node-1", "node-2"} {
				got, err := cc.Compile(ix, node)
				require.NoError(t, err)
				want, err := compile.Compile(ix, node)
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
