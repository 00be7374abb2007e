package compile_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/cluster/clustertest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/compile/hostile"
	"github.com/policyd/policyd/policy/quarantine"
	"github.com/policyd/policyd/selectors"
)

// hugeBudget bounds nothing anyone reaches but makes Compile count.
var hugeBudget = compile.Budget{Node: compile.Cost{Rules: 1 << 40, Elements: 1 << 40, Chains: 1 << 40}}

// randomHostile returns a random cluster with one random hostile shape
// added, as a snapshot.
func randomHostile(rng *rand.Rand, seed int) (*cluster.Snapshot, hostile.Spec) {
	opts := clustertest.Options{IPv6: seed%2 == 0, HostNetwork: seed%3 == 0}
	if seed%2 == 1 {
		opts.MaxClusterPolicies = 6
	}
	clean := clustertest.RandomObjects(rng, opts)
	spec := hostile.Random(rng, 1)
	objs := hostile.Merge(clean, hostile.Build(spec))
	if seed%5 == 0 {
		objs, _ = clustertest.Hostile(rng, objs)
	}
	snap, _ := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
	snap.AddClusterPolicies(objs.ClusterPolicies, objs.Nodes)
	return snap, spec
}

// TestBudget_CountNeverBelowRuleset compiles random clusters, some with a
// hostile shape added, with every option combination, and requires the
// budget's count (made before anything is built) to be at least what the
// Ruleset built holds, in every dimension: with no quarantine, and with
// budgets small enough to quarantine something.
func TestBudget_CountNeverBelowRuleset(t *testing.T) {
	t.Parallel()
	seeds := 400
	if testing.Short() {
		seeds = 100
	}
	var slack [3]float64
	quarantined := 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0xb0d6e7))
		snap, spec := randomHostile(rng, seed)
		ix := selectors.FromSnapshot(snap)
		opts := compile.Options{Budget: hugeBudget}
		if seed%3 == 0 {
			opts.PodNetwork = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/64")}
		}
		if seed%4 == 0 {
			opts.FlowMark, opts.CutMark = 0x100000, 0x200000
		}
		if seed%5 == 0 {
			opts.Log = compile.LogOptions{Drops: true, Allowed: seed%10 == 0, Group: 5, Rate: 10}
		}
		for _, tight := range []bool{false, true} {
			if tight {
				opts.Budget = compile.Budget{Object: compile.Cost{Rules: 40, Elements: 200, Chains: 20}, Node: compile.Cost{Rules: 150, Elements: 600, Chains: 40}}
			}
			for _, node := range []string{"node-1", "node-2", "node-3"} {
				cc := &compile.Compiler{Options: opts}
				rs, err := cc.Compile(ix, node)
				require.NoError(t, err, "seed %d", seed)
				got, count := compile.Count(rs), cc.LastCost()
				if got.Rules > count.Rules || got.Elements > count.Elements || got.Chains > count.Chains {
					t.Fatalf("seed %d (%v, tight %v) node %s: the Ruleset holds %v, more than the count %v (quarantined %v)", seed, spec.Shape, tight, node, got, count, cc.Quarantined())
				}
				if !tight {
					slack[0] += float64(count.Rules) / float64(max(got.Rules, 1))
					slack[1] += float64(count.Elements) / float64(max(got.Elements, 1))
					slack[2] += float64(count.Chains) / float64(max(got.Chains, 1))
				} else {
					quarantined += len(cc.Quarantined())
				}
			}
		}
	}
	n := float64(3 * seeds)
	t.Logf("%d seeds: count / built on average: rules %.2f, elements %.2f, chains %.2f; %d quarantine decisions with tight budgets", seeds, slack[0]/n, slack[1]/n, slack[2]/n, quarantined)
	if quarantined < seeds/4 {
		t.Fatalf("only %d quarantine decisions over %d seeds with tight budgets: the test is not exercising quarantine", quarantined, seeds)
	}
}

// compileShape compiles node-1 of one hostile shape with budget b.
func compileShape(t *testing.T, s hostile.Spec, b compile.Budget) (*compile.Compiler, compile.Cost) {
	t.Helper()
	objs := hostile.Build(s)
	snap, errs := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
	errs = append(errs, snap.AddClusterPolicies(objs.ClusterPolicies, objs.Nodes)...)
	require.Empty(t, errs)
	cc := &compile.Compiler{Options: compile.Options{Budget: b}}
	rs, err := cc.Compile(selectors.FromSnapshot(snap), hostile.Node)
	require.NoError(t, err)
	return cc, compile.Count(rs)
}

// TestBudget_OverObjectBudgetIsQuarantined: one object over the per-object
// budget is quarantined, named with its figure, and costs nothing more.
func TestBudget_OverObjectBudgetIsQuarantined(t *testing.T) {
	t.Parallel()
	b := compile.DefaultBudget(0)
	for _, s := range []hostile.Spec{
		{Shape: hostile.PeersByNamedPorts, N: 5000, M: 40, Pods: 4},
		{Shape: hostile.WidePeers, N: 2000, M: 200},
		{Shape: hostile.CNPStaggered, N: 3000},
		{Shape: hostile.RangeBesidePorts, N: 3000, M: 3000},
	} {
		t.Run(s.Shape.String(), func(t *testing.T) {
			t.Parallel()
			cc, got := compileShape(t, s, b)
			q := cc.Quarantined()
			require.Len(t, q, 1, "cost %v", cc.LastCost())
			assert.Equal(t, quarantine.OverObjectBudget, q[0].Reason)
			assert.Equal(t, hostile.Node, q[0].Node)
			assert.Contains(t, q[0].Message(), q[0].Key)
			assert.Contains(t, q[0].Message(), fmt.Sprintf("over the per-object budget of %d", q[0].Figure.Budget))
			assert.LessOrEqual(t, got.Rules, b.Node.Rules)
			assert.LessOrEqual(t, got.Elements, b.Node.Elements)
		})
	}
}

// TestBudget_ManySmallObjectsOverNodeBudget (class 3 of issue 26): many
// small policies whose pods each form a group of their own are each within
// the per-object budget, and together over the per-node budget: the most
// expensive, then the newest go first until the node is under its budget.
func TestBudget_ManySmallObjectsOverNodeBudget(t *testing.T) {
	t.Parallel()
	b := compile.DefaultBudget(0)
	cc, got := compileShape(t, hostile.Spec{Shape: hostile.ManyGroups, N: 80, M: 8}, b)
	q := cc.Quarantined()
	require.NotEmpty(t, q)
	for _, d := range q {
		assert.Equal(t, quarantine.OverNodeBudget, d.Reason, d.Message())
		assert.Less(t, d.ObjectCost, b.Object.Rules, "an object over its own budget would be quarantined for that")
	}
	assert.LessOrEqual(t, got.Rules, b.Node.Rules, "the node stays over its budget")
	assert.LessOrEqual(t, cc.LastCost().Rules, b.Node.Rules)
	assert.Less(t, len(q), 80, "quarantining every policy is not needed")
	t.Logf("%d of 80 policies quarantined; the table holds %v (count %v)", len(q), got, cc.LastCost())
}

// TestBudget_NodeBudgetTiesNewestFirst: of objects costing alike, the newest
// is quarantined first, then by key.
func TestBudget_NodeBudgetTiesNewestFirst(t *testing.T) {
	t.Parallel()
	objs := hostile.Build(hostile.Spec{Shape: hostile.ManyGroups, N: 6})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, p := range objs.Policies {
		p.CreationTimestamp.Time = base.Add(time.Duration(i%3) * time.Hour) // group-2, -5 newest
	}
	snap, _ := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
	ix := selectors.FromSnapshot(snap)
	full := &compile.Compiler{Options: compile.Options{Budget: hugeBudget}}
	_, err := full.Compile(ix, hostile.Node)
	require.NoError(t, err)
	cc := &compile.Compiler{Options: compile.Options{Budget: compile.Budget{Node: compile.Cost{Rules: full.LastCost().Rules - 1}}}}
	_, err = cc.Compile(ix, hostile.Node)
	require.NoError(t, err)
	q := cc.Quarantined()
	require.Len(t, q, 1)
	assert.Equal(t, hostile.Namespace+"/group-2", q[0].Key, "the newest, first by key")
}

// compileSpec converts and compiles node-1 of a hostile shape with no
// budget and returns what the table holds and the bytes allocated.
func compileSpec(t *testing.T, s hostile.Spec) (compile.Cost, uint64) {
	t.Helper()
	objs := hostile.Build(s)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	snap, errs := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
	errs = append(errs, snap.AddClusterPolicies(objs.ClusterPolicies, objs.Nodes)...)
	require.Empty(t, errs)
	rs, err := compile.Compile(selectors.FromSnapshot(snap), hostile.Node)
	require.NoError(t, err)
	runtime.ReadMemStats(&m1)
	return compile.Count(rs), m1.TotalAlloc - m0.TotalAlloc
}

// TestCompile_OneSmallObjectCompilesToLittle (issue 26, class 1): a
// policy's peers by its named ports, and its rule of many ipBlocks on a port
// range beside rules on many single ports, cost rules in the sum of their
// sizes, not their product (58ba857: one rule per peer and named port, and
// the range rule copied into every port's chain); so do a
// ClusterNetworkPolicy's rules whose ranges start one after another (a
// tier map's elements).
func TestCompile_OneSmallObjectCompilesToLittle(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    hostile.Spec
		size int // peers + ports + rules: what the object lists
	}{
		{hostile.Spec{Shape: hostile.PeersByNamedPorts, N: 200, M: 60, Pods: 2}, 260},
		{hostile.Spec{Shape: hostile.CNPPeersByNamedPorts, N: 200, M: 60, Pods: 2}, 260},
		{hostile.Spec{Shape: hostile.RangeBesidePorts, N: 300, M: 200, Pods: 2}, 500},
		{hostile.Spec{Shape: hostile.CNPStaggered, N: 400, Pods: 2}, 400 * 12},
	} {
		t.Run(tt.s.Shape.String(), func(t *testing.T) {
			t.Parallel()
			c, _ := compileSpec(t, tt.s)
			assert.LessOrEqual(t, c.Rules, 8*tt.size+100, "rules grow with the product of the object's parts: %v", c)
			assert.LessOrEqual(t, c.Elements, 8*tt.size+100, "elements grow with the product of the object's parts: %v", c)
		})
	}
}

// TestCompile_ExceptsCostNLogN (issue 26, class 2): an ipBlock with 8 times
// more excepts costs its conversion and compile about 8 times more, not 64
// (58ba857 built the peer's key by concatenation and subtracted the excepts
// one by one from every range left: 20,000 /32s took 30 s, 40,000 140 s).
// Measured in bytes allocated, which a loaded machine does not blur.
func TestCompile_ExceptsCostNLogN(t *testing.T) { // not parallel: it counts the process's allocations
	_, small := compileSpec(t, hostile.Spec{Shape: hostile.LongExcepts, N: 1000, Pods: 2})
	c, large := compileSpec(t, hostile.Spec{Shape: hostile.LongExcepts, N: 8000, Pods: 2})
	assert.GreaterOrEqual(t, c.Elements, 8000, "every except cuts the block")
	ratio := float64(large) / float64(small)
	t.Logf("1,000 excepts: %d bytes allocated; 8,000: %d (%.1f times)", small, large, ratio)
	assert.Less(t, ratio, 16.0, "8 times the excepts cost %.1f times the bytes: quadratic", ratio)
}

// TestCompiler_CountMemosMatchFreshCount: a long-lived Compiler keeps
// parts of the budget's count between compiles (the pods that declare each
// named port, what each policy adds to a group chain and a group chain's
// content). After any sequence of changes (pods added, removed, moved to
// another node, given other named ports, other addresses or other labels,
// made hostNetwork; policies replaced or removed) its count, its decisions
// and its Ruleset must be exactly a fresh Compiler's, with budgets that
// quarantine and budgets that do not.
func TestCompiler_CountMemosMatchFreshCount(t *testing.T) {
	t.Parallel()
	tight := compile.Budget{Object: compile.Cost{Rules: 40, Elements: 60, Chains: 20}, Node: compile.Cost{Rules: 120, Elements: 200, Chains: 40}}
	quarantined := 0
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 26))
		opts := clustertest.Options{IPv6: seed%2 == 0, HostNetwork: true, ExtraNamespaces: int(seed%3) * 3}
		if seed%4 == 1 {
			opts.MaxClusterPolicies = 4
		}
		snap, _ := clustertest.Random(rng, opts)
		ix := selectors.FromSnapshot(snap)
		copts := compile.Options{Budget: hugeBudget}
		if seed%2 == 1 {
			copts.Budget = tight
		}
		if seed%5 == 0 {
			copts.Log = compile.LogOptions{Drops: true, Allowed: seed%10 == 0, Group: 5, Rate: 10}
		}
		// One Compiler per node, as each node's agent keeps, and one
		// that compiles whichever node.
		ccs := map[string]*compile.Compiler{"node-1": {Options: copts}, "node-2": {Options: copts}, "any": {Options: copts}}
		for step := range 60 {
			if step == 30 && seed%3 == 0 { // the budget changes under a long-lived Compiler
				copts.Budget = tight
				for _, cc := range ccs {
					cc.Options = copts
				}
			}
			pods := ix.Pods()
			if len(pods) < 3 {
				break
			}
			p := *pods[rng.IntN(len(pods))]
			switch rng.IntN(8) {
			case 0: // other named ports (or none)
				p.Ports = nil
				for range rng.IntN(3) {
					n := clustertest.PortNames[rng.IntN(len(clustertest.PortNames))]
					p.Ports = append(p.Ports, cluster.ContainerPort{Name: []string{n, "http"}[rng.IntN(2)], Port: int32(80 + rng.IntN(3)), Protocol: cluster.Protocols[rng.IntN(len(cluster.Protocols))]})
				}
				ix.UpsertPod(&p)
			case 1: // another node
				p.NodeName = []string{"node-1", "node-2", "node-3"}[rng.IntN(3)]
				ix.UpsertPod(&p)
			case 2: // another address (another pod's, sometimes), or one family less
				other := pods[rng.IntN(len(pods))]
				switch {
				case len(p.IPs) > 1 && rng.IntN(2) == 0:
					p.IPs = p.IPs[rng.IntN(2):][:1]
				case len(other.IPs) > 0 && rng.IntN(2) == 0:
					p.IPs = other.IPs
					p.Ports = nil // claimants that resolve a name differently
					if rng.IntN(2) == 0 {
						p.Ports = []cluster.ContainerPort{{Name: "http", Port: 8080, Protocol: cluster.ProtocolTCP}}
					}
				default:
					p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 9, byte(rng.IntN(250))})}
				}
				ix.UpsertPod(&p)
			case 3:
				ix.DeletePod(p.Namespace, p.Name)
			case 4: // a new pod, a copy of another
				p.Name = fmt.Sprintf("new-%d", step)
				p.Created = time.Unix(int64(1000+step), 0)
				ix.UpsertPod(&p)
			case 5: // relabelled, or made hostNetwork
				if rng.IntN(3) == 0 {
					p.HostNetwork = !p.HostNetwork
				} else {
					p.Labels = map[string]string{"app": []string{"a", "b", ""}[rng.IntN(3)], "tier": "b"}
				}
				ix.UpsertPod(&p)
			case 6:
				if pols := ix.Policies(); len(pols) > 0 {
					pol := pols[rng.IntN(len(pols))]
					ix.DeletePolicy(pol.Namespace, pol.Name)
				}
			case 7: // a policy takes another's rules, under its own name
				if pols := ix.Policies(); len(pols) > 1 {
					pol, other := *pols[rng.IntN(len(pols))], pols[rng.IntN(len(pols))]
					pol.IngressRules, pol.EgressRules = other.IngressRules, other.EgressRules
					ix.UpsertPolicy(&pol)
				}
			}
			for _, which := range []string{"node-1", "node-2", "any"} {
				cc, node := ccs[which], which
				if which == "any" {
					node = []string{"node-1", "node-2", "node-3"}[rng.IntN(3)]
				}
				got, err := cc.Compile(ix, node)
				require.NoError(t, err)
				fresh := &compile.Compiler{Options: copts}
				want, err := fresh.Compile(ix, node)
				require.NoError(t, err)
				require.Equal(t, fresh.LastCost(), cc.LastCost(), "seed %d step %d node %s: the long-lived Compiler's count differs from a fresh one's", seed, step, node)
				require.Equal(t, fresh.Quarantined(), cc.Quarantined(), "seed %d step %d node %s: decisions differ", seed, step, node)
				quarantined += len(cc.Quarantined())
				if got.Text() != want.Text() {
					t.Fatalf("seed %d step %d node %s: the long-lived Compiler's Ruleset differs from a fresh one's", seed, step, node)
				}
			}
		}
	}
	t.Logf("%d quarantine decisions", quarantined)
	if quarantined < 100 {
		t.Fatalf("only %d quarantine decisions: the test is not exercising quarantine", quarantined)
	}
}
