package ruleset_test

import (
	"testing"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
)

// BenchmarkCheck measures ruleset.Check, which the Backend runs on every
// Sync before it reads or writes, on the node of the 10,000-pod /
// 2,000-policy synthetic cluster that holds every 100th pod (the node of
// policy/compile's partial-sync benchmarks).
func BenchmarkCheck(b *testing.B) {
	snap := selectorstest.Synthetic(10000, 2000, 100, 1)
	stride := len(snap.Pods) / 100
	for i, p := range snap.Pods {
		if i%stride == 0 && !p.HostNetwork {
			p.NodeName = "bench-node"
		}
	}
	rs, err := compile.Compile(selectors.FromSnapshot(snap), "bench-node")
	if err != nil {
		b.Fatal(err)
	}
	rules, elems := 0, 0
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	for _, s := range rs.Sets {
		elems += s.Len()
	}
	b.ResetTimer()
	for b.Loop() {
		if err := ruleset.Check(rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(float64(elems), "elements")
}
