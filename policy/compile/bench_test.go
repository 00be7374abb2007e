package compile_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/compile/hostile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
)

// benchNode is the node compiled in the benchmarks; about 100 pods are moved
// onto it whatever the cluster size, as on a real node.
const benchNode = "bench-node"

// BenchmarkCompile compiles one node's ruleset from an already-built index
// for each cluster size of issue 3's grid. It reports the ruleset's size
// beside time and allocations.
func BenchmarkCompile(b *testing.B) {
	for _, pods := range []int{1000, 10000, 50000} {
		for _, pols := range []int{200, 2000, 10000} {
			b.Run(fmt.Sprintf("pods=%d/policies=%d", pods, pols), func(b *testing.B) {
				namespaces := max(pods/100, 10)
				snap := selectorstest.Synthetic(pods, pols, namespaces, 1)
				stride := max(len(snap.Pods)/100, 1)
				local := 0
				for i, p := range snap.Pods {
					if i%stride == 0 && !p.HostNetwork {
						p.NodeName = benchNode
						local++
					}
				}
				rs := benchCompile(b, selectors.FromSnapshot(snap))
				b.ReportMetric(float64(local), "local-pods")
				b.ReportMetric(float64(len(rs.Sets)), "sets")
			})
		}
	}
}

// BenchmarkPartialSyncOps measures, on the 10,000-pod / 2,000-policy
// cluster, what one change costs the agent: recompiling the node with its
// long-lived Compiler and diffing against the previous ruleset, and the number
// of kernel operations the diff holds (ops/change: exactly what policy/nft
// writes in its one batch).
func BenchmarkPartialSyncOps(b *testing.B) {
	snap := selectorstest.Synthetic(10000, 2000, 100, 1)
	stride := len(snap.Pods) / 100
	var local []*cluster.Pod
	for i, p := range snap.Pods {
		if i%stride == 0 && !p.HostNetwork && len(p.IPs) > 0 {
			p.NodeName = benchNode
			local = append(local, p)
		}
	}
	victim := local[len(local)/2]
	var donor *cluster.Pod // another pod of the victim's namespace with other labels
	for _, p := range snap.Pods {
		if p.Namespace == victim.Namespace && !p.HostNetwork && !labels.Equals(p.Labels, victim.Labels) {
			donor = p
			break
		}
	}
	if donor == nil {
		b.Fatal("no donor pod with other labels")
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: victim.Namespace, Name: "bench-new-policy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string(victim.Labels)},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string(donor.Labels)}}},
				Ports: []networkingv1.NetworkPolicyPort{tcp(8443)},
			}},
		},
	}
	newPolicy, errs := cluster.ConvertPolicy(np)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	added := *victim
	added.Name = "bench-added"
	added.IPs = []netip.Addr{netip.MustParseAddr("10.250.0.1")}

	changes := []partialChange{
		{"pod-add",
			func(ix *selectors.Index) { ix.UpsertPod(&added) },
			func(ix *selectors.Index) { ix.DeletePod(added.Namespace, added.Name) }},
		{"pod-relabel",
			func(ix *selectors.Index) { p := *victim; p.Labels = donor.Labels; ix.UpsertPod(&p) },
			func(ix *selectors.Index) { ix.UpsertPod(victim) }},
		{"policy-add",
			func(ix *selectors.Index) { ix.UpsertPolicy(newPolicy) },
			func(ix *selectors.Index) { ix.DeletePolicy(newPolicy.Namespace, newPolicy.Name) }},
	}
	runPartialSyncs(b, func() *selectors.Index { return selectors.FromSnapshot(snap) }, changes)
}

// partialChange is one change of a partial-sync benchmark and its undo.
type partialChange struct {
	name        string
	apply, undo func(*selectors.Index)
}

// runPartialSyncs measures, for each change, recompiling the benchmark node
// with a long-lived Compiler (as the agent does) on an index newIndex
// builds, and diffing against the ruleset before it; it reports the kernel
// operations the diff holds.
func runPartialSyncs(b *testing.B, newIndex func() *selectors.Index, changes []partialChange) {
	for _, ch := range changes {
		b.Run(ch.name, func(b *testing.B) {
			ix := newIndex()
			cc := &compile.Compiler{Options: benchOptions} // long-lived, as in the agent
			before, err := cc.Compile(ix, benchNode)
			if err != nil {
				b.Fatal(err)
			}
			ops := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ch.apply(ix)
				after, err := cc.Compile(ix, benchNode)
				if err != nil {
					b.Fatal(err)
				}
				ops = ruleset.Diff(before, ruleset.KeepSizes(before, after)).Ops() // what the Backend sends
				b.StopTimer()
				ch.undo(ix)
				b.StartTimer()
			}
			if ops == 0 {
				b.Fatalf("%s changed nothing on the node: the benchmark does not measure what it says", ch.name)
			}
			b.ReportMetric(float64(ops), "ops/change")
		})
	}
}

// benchClusterPolicies returns n Admin and n Baseline ClusterNetworkPolicies
// over the synthetic cluster's namespaces: policy i selects the pods of
// namespace i%(namespaces/2) (so the benchmark node's pods are selected by
// two of each tier) and has an ingress Deny (Admin) or Accept
// (Baseline) from the next namespace on one TCP port, a Pass from every
// namespace on another, and an egress Accept to a network.
func benchClusterPolicies(b *testing.B, snap *cluster.Snapshot, n int, tweak func(i int, c *npav1beta1.ClusterNetworkPolicy)) []*cluster.ClusterPolicy {
	b.Helper()
	var names []string
	for name := range snap.Namespaces {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []*cluster.ClusterPolicy
	for _, tier := range []npav1beta1.Tier{npav1beta1.AdminTier, npav1beta1.BaselineTier} {
		for i := range n {
			ns, next := names[i%(len(names)/2)], names[(i+1)%len(names)] // two of each tier per namespace
			action := npav1beta1.ClusterNetworkPolicyRuleActionDeny
			if tier == npav1beta1.BaselineTier {
				action = npav1beta1.ClusterNetworkPolicyRuleActionAccept
			}
			c := &npav1beta1.ClusterNetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%03d", strings.ToLower(string(tier)), i)},
				Spec: npav1beta1.ClusterNetworkPolicySpec{
					Tier: tier, Priority: int32(i % 1000),
					Subject: npav1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
					Ingress: []npav1beta1.ClusterNetworkPolicyIngressRule{
						{Name: "from-next", Action: action,
							From:      []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": next}}}},
							Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: int32(9000 + i)}}}}},
						{Name: "pass-all", Action: npav1beta1.ClusterNetworkPolicyRuleActionPass,
							From:      []npav1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}},
							Protocols: []npav1beta1.ClusterNetworkPolicyProtocol{{TCP: &npav1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &npav1beta1.Port{Number: 8443}}}}},
					},
					Egress: []npav1beta1.ClusterNetworkPolicyEgressRule{{Name: "to-net", Action: npav1beta1.ClusterNetworkPolicyRuleActionAccept,
						To: []npav1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []npav1beta1.CIDR{npav1beta1.CIDR(fmt.Sprintf("192.168.%d.0/24", i%256))}}}}},
				},
			}
			if tweak != nil {
				tweak(i, c)
			}
			cp, errs := cluster.ConvertClusterPolicy(c)
			if len(errs) > 0 {
				b.Fatal(errs)
			}
			out = append(out, cp)
		}
	}
	return out
}

// BenchmarkCompileClusterPolicies compiles the 10,000-pod / 2,000-policy
// cluster's benchmark node without ClusterNetworkPolicies (the baseline, in
// the same run) and with 100 Admin + 100 Baseline ones.
func BenchmarkCompileClusterPolicies(b *testing.B) {
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprintf("pods=10000/policies=2000/cnps=%d", 2*n), func(b *testing.B) {
			snap := selectorstest.Synthetic(10000, 2000, 100, 1)
			stride := len(snap.Pods) / 100
			for i, p := range snap.Pods {
				if i%stride == 0 && !p.HostNetwork {
					p.NodeName = benchNode
				}
			}
			ix := selectors.FromSnapshot(snap)
			for _, cp := range benchClusterPolicies(b, snap, n, nil) {
				ix.UpsertClusterPolicy(cp)
			}
			benchCompile(b, ix)
		})
	}
}

// BenchmarkPartialSyncOpsClusterPolicies: on the 10k/2k cluster with 100
// Admin + 100 Baseline CNPs, what a pod add, a CNP action change and a CNP
// priority change cost (recompile + diff) and write (ops/change).
func BenchmarkPartialSyncOpsClusterPolicies(b *testing.B) {
	snap := selectorstest.Synthetic(10000, 2000, 100, 1)
	stride := len(snap.Pods) / 100
	var local []*cluster.Pod
	for i, p := range snap.Pods {
		if i%stride == 0 && !p.HostNetwork && len(p.IPs) > 0 {
			p.NodeName = benchNode
			local = append(local, p)
		}
	}
	cps := benchClusterPolicies(b, snap, 100, nil)
	// The first Admin CNP selecting a local pod's namespace, edited.
	var victim *cluster.Pod
	var target *cluster.ClusterPolicy
	for _, p := range local {
		for _, cp := range cps {
			if cp.SelectsPod(p, snap.NamespaceLabels(p.Namespace)) {
				victim, target = p, cp
				break
			}
		}
		if target != nil {
			break
		}
	}
	if target == nil {
		b.Fatal("no CNP selects a local pod")
	}
	edit := func(f func(*cluster.ClusterPolicy)) *cluster.ClusterPolicy {
		c := *target
		c.Ingress = slices.Clone(target.Ingress)
		f(&c)
		return &c
	}
	denied := edit(func(c *cluster.ClusterPolicy) { c.Ingress[1].Action = cluster.ActionDeny })
	moved := edit(func(c *cluster.ClusterPolicy) { c.Priority = 999 })
	added := *victim
	added.Name = "bench-added"
	added.IPs = []netip.Addr{netip.MustParseAddr("10.250.0.1")}
	changes := []partialChange{
		{"pod-add", func(ix *selectors.Index) { ix.UpsertPod(&added) }, func(ix *selectors.Index) { ix.DeletePod(added.Namespace, added.Name) }},
		{"cnp-action-change", func(ix *selectors.Index) { ix.UpsertClusterPolicy(denied) }, func(ix *selectors.Index) { ix.UpsertClusterPolicy(target) }},
		{"cnp-priority-change", func(ix *selectors.Index) { ix.UpsertClusterPolicy(moved) }, func(ix *selectors.Index) { ix.UpsertClusterPolicy(target) }},
	}
	runPartialSyncs(b, func() *selectors.Index {
		ix := selectors.FromSnapshot(snap)
		for _, cp := range cps {
			ix.UpsertClusterPolicy(cp)
		}
		return ix
	}, changes)
}

// benchOptions are the options the benchmarks compile with: the agent's
// default budgets (policyd run's), so that the count made before every
// compile is measured too.
var benchOptions = compile.Options{Budget: compile.DefaultBudget(0)}

// benchCompile times compiling the benchmark node from ix and reports the
// ruleset's elements, chains and rules, and the objects the budget
// quarantines (none at these sizes); it returns the ruleset.
func benchCompile(b *testing.B, ix *selectors.Index) *ruleset.Ruleset {
	b.Helper()
	cc := &compile.Compiler{Options: benchOptions}
	rs, err := cc.Compile(ix, benchNode)
	if err != nil {
		b.Fatal(err)
	}
	elems, rules := 0, 0
	for _, s := range rs.Sets {
		elems += s.Len()
	}
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := (&compile.Compiler{Options: benchOptions}).Compile(ix, benchNode); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(elems), "elements")
	b.ReportMetric(float64(len(rs.Chains)), "chains")
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(float64(len(cc.Quarantined())), "quarantined")
	return rs
}

// BenchmarkCompileHostile compiles the worst single objects the hostile
// generator makes at the API server's 1.5 MB limit (policy/compile/hostile,
// the inputs hack/hostile writes), each the only policy of its node, with
// the default budgets (the object is quarantined) and with the budgets
// lifted (the compile's own cost, which grows at most as n log n). It
// reports the time, the peak of the live heap over the compile (sampled),
// and what was built.
func BenchmarkCompileHostile(b *testing.B) {
	lifted := compile.Budget{Object: compile.Cost{Rules: 1 << 30, Elements: 1 << 30, Chains: 1 << 30}, Node: compile.Cost{Rules: 1 << 30, Elements: 1 << 30, Chains: 1 << 30}}
	for _, s := range WorstHostile {
		objs := hostile.Build(s)
		snap, errs := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
		errs = append(errs, snap.AddClusterPolicies(objs.ClusterPolicies, objs.Nodes)...)
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		ix := selectors.FromSnapshot(snap)
		for _, budget := range []struct {
			name string
			b    compile.Budget
		}{{"default", compile.DefaultBudget(0)}, {"lifted", lifted}} {
			b.Run(fmt.Sprintf("%s-%d-%d/budget=%s", s.Shape, s.N, s.M, budget.name), func(b *testing.B) {
				var rs *ruleset.Ruleset
				var q int
				peak := heapPeak(func() {
					for b.Loop() {
						cc := &compile.Compiler{Options: compile.Options{Budget: budget.b}}
						var err error
						if rs, err = cc.Compile(ix, hostile.Node); err != nil {
							b.Fatal(err)
						}
						q = len(cc.Quarantined())
					}
				})
				c := compile.Count(rs)
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(c.Rules), "rules")
				b.ReportMetric(float64(c.Elements), "elements")
				b.ReportMetric(float64(q), "quarantined")
			})
		}
	}
}

// WorstHostile are the largest single objects of each hostile shape that
// fit the API server's 1.5 MB request limit (about 1.5 MB of JSON each).
var WorstHostile = []hostile.Spec{
	{Shape: hostile.PeersByNamedPorts, N: 6400, M: 7500, Pods: 2},
	{Shape: hostile.RangeBesidePorts, N: 9000, M: 3200, Pods: 2},
	{Shape: hostile.LongExcepts, N: 41000, Pods: 2},
	{Shape: hostile.WidePeers, N: 4400, M: 50},
	{Shape: hostile.CNPPeersByNamedPorts, N: 5700, M: 5000, Pods: 2},
	{Shape: hostile.CNPStaggered, N: 6200, Pods: 2},
}

// heapPeak runs f and returns the peak of the live heap above the heap
// before it, sampled every 100 µs.
func heapPeak(f func()) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
					peak = ms.HeapAlloc - base
				}
			}
		}
	}()
	f()
	close(stop)
	return <-done
}
