package trace_test

import (
	"math/rand/v2"
	"testing"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
)

const judgeNode = "bench-node"

// judgeNodeRuleset compiles the node of the 10,000-pod / 2,000-policy
// synthetic cluster that holds every 100th pod, and returns it with its
// local and remote pods.
func judgeNodeRuleset(b *testing.B) (*ruleset.Ruleset, []*cluster.Pod, []*cluster.Pod) {
	b.Helper()
	snap := selectorstest.Synthetic(10000, 2000, 100, 1)
	stride := len(snap.Pods) / 100
	var local, remote []*cluster.Pod
	for i, p := range snap.Pods {
		switch {
		case p.HostNetwork || len(p.IPs) == 0:
		case i%stride == 0:
			p.NodeName = judgeNode
			local = append(local, p)
		default:
			remote = append(remote, p)
		}
	}
	rs, err := compile.Compile(selectors.FromSnapshot(snap), judgeNode)
	if err != nil {
		b.Fatal(err)
	}
	return rs, local, remote
}

// BenchmarkJudge measures what strict mode pays per marked flow on the
// 10k/2k node: trace.Judge of one TCP connection, half of them from a local
// pod to a remote one, half the other way.
func BenchmarkJudge(b *testing.B) {
	rs, local, remote := judgeNodeRuleset(b)
	rulesets := map[string]*ruleset.Ruleset{judgeNode: rs}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l := trace.Endpoint{Addr: local[rng.IntN(len(local))].IPs[0], Node: judgeNode}
		r := trace.Endpoint{Addr: remote[rng.IntN(len(remote))].IPs[0]}
		src, dst := l, r
		if i%2 == 1 {
			src, dst = r, l
		}
		if _, _, err := trace.Judge(rulesets, src, dst, 6, 80); err != nil {
			b.Fatal(err)
		}
	}
}
