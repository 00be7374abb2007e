package pktpath

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fullOptions are pktbench's defaults: the sizes issue 16 asks for.
func fullOptions() Options {
	return Options{
		Pods: 10000, Policies: 2000, Namespaces: DefaultNamespaces(10000), Seed: 1,
		ClusterPolicies: 100, CurvePolicies: []int{200, 2000, 10000}, CurvePods: []int{1000, 10000, 50000},
		CurveRounds: 5, Rounds: 5, Duration: time.Second,
	}
}

func TestCurvePoints_BothCurvesShareTheMainPoint(t *testing.T) {
	t.Parallel()
	var got []string
	for _, p := range CurvePoints(fullOptions()) {
		got = append(got, p.Curve+" "+p.ID)
	}
	want := []string{
		"policies b@10k/200", "policies b@10k/2k", "policies b@10k/10k",
		"pods b@1k/2k", "pods b@10k/2k", "pods b@50k/2k",
	}
	assert.Equal(t, want, got)
}

// TestPrepare_FullSize compiles every configuration at the sizes of the
// issue: the curve's points compile, carry the benchmark pods at the same
// addresses (prepare checks), meet exactly the rules (b) meets, and grow
// along their curve; both pods are selected by several policies of each
// kind.
func TestPrepare_FullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles clusters of up to 50,000 pods")
	}
	t.Parallel()
	rep, err := prepare(fullOptions())
	require.NoError(t, err)

	var ids []string
	for _, m := range rep.Results {
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"a", "ct", "f", "b", "b@10k/200", "b@10k/10k", "b@1k/2k", "b@50k/2k", "b+cnp", "b+log", "b+log-allowed", "c"}, ids)
	for _, r := range Ratios {
		assert.NotNil(t, rep.Result(r[0]), "ratio (%s)/(%s)", r[0], r[1])
		assert.NotNil(t, rep.Result(r[1]), "ratio (%s)/(%s)", r[0], r[1])
	}

	b := rep.Result("b")
	require.NotNil(t, b)
	assert.Greater(t, b.PathRules, FloorRules)
	assert.Equal(t, b.PathRules, rep.Result("b+log").PathRules, "drop logging changes the allowed packet's path")
	assert.Greater(t, rep.Result("b+log-allowed").PathRules, b.PathRules, "allowed logging adds no rule to the path")
	// The Admin rules of the CNPs selecting both pods are on the path: as
	// tier-map lookups (TestScenario_ClusterPoliciesOnThePath checks the
	// maps hold their Deny rules), so a few more rules than (b), not 20.
	assert.Greater(t, rep.Result("b+cnp").PathRules, b.PathRules, "the packet walks no Admin rules")
	assert.Contains(t, rep.Result("b+cnp").Text, "vmap @tmap4-", "the Admin rules are not looked up in a tier map")
	assert.Contains(t, rep.Result("b+log").Text, "log prefix")
	assert.Contains(t, rep.Result("b+log-allowed").Text, "ct state new counter limit name")

	require.Len(t, rep.Curve, 6)
	for _, curve := range []string{"policies", "pods"} {
		var elems []int
		for _, p := range rep.Curve {
			if p.Curve != curve {
				continue
			}
			m := rep.Result(p.ID)
			require.NotNil(t, m, p.ID)
			assert.Equal(t, b.PathRules, m.PathRules, "point %s: rules on the path", p.ID)
			assert.Positive(t, p.NodePods, p.ID)
			assert.Positive(t, p.EgressAllowAt, p.ID)
			assert.Positive(t, p.IngressAllowAt, p.ID)
			if p.ID != "b" {
				assert.Equal(t, CurveTraffic, m.Traffic, p.ID)
				assert.Equal(t, 5, m.Rounds, p.ID)
			}
			elems = append(elems, p.Compiled.Elements)
		}
		for i := 1; i < len(elems); i++ {
			assert.Greater(t, elems[i], elems[i-1], "%s curve: set elements %v do not grow with the size", curve, elems)
		}
	}

	for _, s := range []Selection{rep.SrcSelection, rep.DstSelection} {
		assert.Equal(t, Selection{NetworkPolicies: 3, Admin: 21, Baseline: 20}, s)
	}
}

func TestCostOver_PairsRounds(t *testing.T) {
	t.Parallel()
	// Per-CPU-s rates: (ct) 1e6/s then 5e5/s (1000 and 2000 ns each);
	// the configuration 5e5/s then 4e5/s (2000 and 2500 ns): 1000 and 500
	// ns more, median 750; over the first round only, 1000.
	sample := func(rate float64) Sample {
		return Sample{Count: uint64(rate), CPU: time.Second, Elapsed: time.Second}
	}
	ct := &Measurement{Samples: map[Traffic][]Sample{UDPFlows: {sample(1e6), sample(5e5)}}}
	m := &Measurement{Samples: map[Traffic][]Sample{UDPFlows: {sample(5e5), sample(4e5)}}}
	ns, ok := m.CostOver(ct, UDPFlows, 0)
	require.True(t, ok)
	assert.InDelta(t, 750, ns, 1e-6)
	ns, ok = m.CostOver(ct, UDPFlows, 1)
	require.True(t, ok)
	assert.InDelta(t, 1000, ns, 1e-6)
	_, ok = m.CostOver(ct, TCPConnect, 0)
	assert.False(t, ok, "no samples, no cost")

	bulk := &Measurement{Samples: map[Traffic][]Sample{TCPBulk: {sample(1 << 30)}}}
	bulkCt := &Measurement{Samples: map[Traffic][]Sample{TCPBulk: {sample(1 << 31)}}}
	ns, ok = bulk.CostOver(bulkCt, TCPBulk, 0)
	require.True(t, ok)
	// 1 GiB/s against 2 GiB/s: a MiB takes 1/1024 s against 1/2048 s.
	assert.InDelta(t, 1e9/2048, ns, 1e-3)
}

// TestRun_TinyEveryConfigurationCarriesTheFlow runs the whole benchmark at
// tiny sizes: every configuration, the log ones with no one reading their
// group, carries every kind of traffic it measures, and the report has
// every table.
func TestRun_TinyEveryConfigurationCarriesTheFlow(t *testing.T) {
	skipUnlessRoot(t)
	opts := Options{
		Pods: testPods, Policies: testPolicies, Namespaces: testNamespaces, Seed: testSeed,
		ClusterPolicies: 20, CurvePolicies: []int{50, testPolicies}, CurvePods: []int{250, testPods},
		CurveRounds: 1, Rounds: 2, Duration: 100 * time.Millisecond, FlowSockets: 2000,
	}
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	for _, m := range rep.Results {
		want := 2
		if m.Rounds > 0 {
			want = m.Rounds
		}
		for _, k := range m.Traffic {
			require.Len(t, m.Samples[k], want, "(%s) %s", m.ID, k)
			for i, s := range m.Samples[k] {
				assert.Positive(t, s.Count, "(%s) %s round %d", m.ID, k, i+1)
			}
		}
	}
	assert.Positive(t, rep.ConntrackMax)
	assert.LessOrEqual(t, rep.ConntrackPeak, 2000+rep.ConntrackMax/10)

	md := rep.Markdown()
	for _, want := range []string{
		"#### Per sender CPU-s, medians", "#### Ratios", "| (b)/(ct) |", "| (b)/(f) |", "| (b)/(a) |", "| (b+cnp)/(ct) |", "| (b+log)/(b) |",
		"#### nft cost over (ct), ns", "#### Curve", "- policies curve (b@500/50, b)", "- pods curve (b@250/100, b)", "#### Inputs",
		"(b+log-allowed) as (b+log)",
	} {
		assert.Contains(t, md, want)
	}
	assert.NotContains(t, md, "NaN")
	assert.Equal(t, 1, strings.Count(md, "### Packet path"))
}
