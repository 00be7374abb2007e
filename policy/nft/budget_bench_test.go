package nft

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/ruleset"
)

// budgetShape builds a table of n units of one kind: rules (allow rules of
// the common shape, a literal port and a peer lookup, in one chain),
// elements (IPv4 addresses in one peer set, as most of a node's elements
// are) or chains (each with one rule, a jump to it from a map).
func budgetShape(kind string, n int) *ruleset.Ruleset {
	rs := &ruleset.Ruleset{}
	peer := &ruleset.Set{Name: "peer4", Key: ruleset.KeyIPv4}
	peer.Elements = append(peer.Elements, ruleset.Element{Addr: netip.MustParseAddr("10.0.0.1")})
	rs.Sets = append(rs.Sets, peer)
	base := &ruleset.Chain{Name: "postrouting", Base: &ruleset.Base{Hook: ruleset.HookPostrouting, Priority: 95, Policy: ruleset.Accept}}
	rs.Chains = append(rs.Chains, base)
	switch kind {
	case "rules":
		ch := &ruleset.Chain{Name: "ingress-x"}
		for i := range n {
			ch.Rules = append(ch.Rules, &ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "peer4", Proto: 6, Port: uint16(1 + i%65535),
				Verdict: ruleset.Verdict{Kind: ruleset.Accept}, Comment: fmt.Sprintf("tenant/policy-%d ingress[0]", i%100)})
		}
		rs.Chains = append(rs.Chains, ch)
	case "elements":
		peer.Elements = nil
		for i := range n {
			peer.Elements = append(peer.Elements, ruleset.Element{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})})
		}
	case "chains":
		m := &ruleset.Set{Name: "ingress4", Key: ruleset.KeyIPv4, Map: true}
		for i := range n {
			name := fmt.Sprintf("ingress-%016x", i)
			rs.Chains = append(rs.Chains, &ruleset.Chain{Name: name, Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Drop}}}})
			m.Elements = append(m.Elements, ruleset.Element{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: name}})
		}
		rs.Sets = append(rs.Sets, m)
	}
	rs.SizeSets()
	rs.Sort()
	return rs
}

// BenchmarkBudgetBytes measures what one rule, one set element and one
// chain cost the agent in memory (the figures compile.DefaultBudget derives
// the budgets from): the Go heap a compiled Ruleset holds (retained-B), and
// the peak of the live heap while a full Sync of it into a fresh network
// namespace runs, over the heap before the Ruleset was built (peak-B: the
// Ruleset, the diff and the netlink batch, sampled every 100 µs with the
// collector at GOGC=25, so that little garbage is counted). B/unit, the
// figure the budgets use, is peak-B plus retained-B: the agent keeps the
// last committed table beside the new one. alloc-B is everything the Sync
// allocated (mostly the acknowledgements it reads back, garbage at once).
// A chain is measured with its one rule and map entry: an upper bound.
func BenchmarkBudgetBytes(b *testing.B) {
	n := 20000
	if s := os.Getenv("POLICYD_BUDGET_UNITS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, kind := range []string{"rules", "elements", "chains"} {
		b.Run(kind, func(b *testing.B) {
			netnstest.RequireRoot(b)
			_, h := netnstest.New(b, "pdbudget")
			be, err := New(Options{NetNS: int(h)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			old := debug.SetGCPercent(25)
			defer debug.SetGCPercent(old)
			var perUnit float64
			for range b.N {
				var m0, m1, m2 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				rs := budgetShape(kind, n)
				runtime.GC()
				runtime.ReadMemStats(&m1)
				retained := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
				stop := make(chan struct{})
				peak := make(chan uint64)
				go func() {
					var max uint64
					var ms runtime.MemStats
					t := time.NewTicker(100 * time.Microsecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							peak <- max
							return
						case <-t.C:
							runtime.ReadMemStats(&ms)
							if ms.HeapAlloc > max {
								max = ms.HeapAlloc
							}
						}
					}
				}()
				if _, err := be.Sync(ctx, rs); err != nil {
					close(stop)
					<-peak
					b.Fatal(err)
				}
				runtime.ReadMemStats(&m2)
				close(stop)
				p := int64(<-peak) - int64(m0.HeapAlloc)
				perUnit = float64(p+retained) / float64(n)
				b.ReportMetric(float64(retained)/float64(n), "retained-B/unit")
				b.ReportMetric(float64(p)/float64(n), "peak-B/unit")
				b.ReportMetric(float64(m2.TotalAlloc-m1.TotalAlloc)/float64(n), "alloc-B/unit")
				if _, err := be.Sync(ctx, &ruleset.Ruleset{}); err != nil {
					b.Fatal(err)
				}
				runtime.KeepAlive(rs)
			}
			b.ReportMetric(perUnit, "B/unit")
		})
	}
}
