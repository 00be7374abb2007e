package ctcut_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ctcut"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/selectors"
	"github.com/policyd/policyd/selectors/selectorstest"
)

// BenchmarkPass measures one strict-mode pass on a node whose conntrack
// table holds 100,000 entries, on the 10,000-pod / 2,000-policy cluster
// (100 pods on the node): the kernel-side mark filter's dump, the judging of
// every marked flow through the committed ruleset, and the (here empty)
// cuts. Each entry is a distinct UDP flow from a remote pod to a local pod
// (1,000 sources x 100 destinations), so no two share a judgement: the worst
// case of the per-pass memo. marked=100000 marks them all; marked=1000 marks
// 1% (the rest are flows the table never judged, e.g. node traffic), which
// is what the kernel filter saves.
func BenchmarkPass(b *testing.B) {
	netnstest.RequireRoot(b)
	snap := selectorstest.Synthetic(10000, 2000, 100, 1)
	var local, remote []netip.Addr
	stride := len(snap.Pods) / 100
	for i, p := range snap.Pods {
		if p.HostNetwork || len(p.IPs) == 0 || !p.IPs[0].Is4() {
			continue
		}
		if i%stride == 0 && len(local) < 100 {
			p.NodeName = "bench-node"
			local = append(local, p.IPs[0])
		} else if len(remote) < 1000 {
			remote = append(remote, p.IPs[0])
		}
	}
	cc := &compile.Compiler{Options: compile.Options{FlowMark: flowMark, CutMark: cutMark}}
	rs, err := cc.Compile(selectors.FromSnapshot(snap), "bench-node")
	if err != nil {
		b.Fatal(err)
	}
	for _, marked := range []int{100000, 1000} {
		b.Run(fmt.Sprintf("entries=100000/marked=%d", marked), func(b *testing.B) {
			_, h := netnstest.New(b, "pdctb")
			// The table's ct expressions turn conntrack on in the namespace.
			be, err := nft.New(nft.Options{NetNS: int(h)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := be.Sync(context.Background(), rs); err != nil {
				b.Fatal(err)
			}
			k, err := ctcut.NewKernel(int(h))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = k.Close() }()
			start := time.Now()
			n := 0
			for _, src := range remote {
				for _, dst := range local {
					mark := uint32(0)
					if n%(100000/marked) == 0 {
						mark = flowMark
					}
					f := conntrack.NewFlow(17, 0, src, dst, 40000, 53, 600, mark)
					if err := k.Conn().Create(f); err != nil {
						b.Fatalf("creating entry %d: %v", n, err)
					}
					n++
				}
			}
			b.Logf("created %d conntrack entries (%d marked) in %v", n, marked, time.Since(start).Round(time.Millisecond))
			ctx := context.Background()
			var res ctcut.Result
			b.ResetTimer()
			for range b.N {
				res, err = ctcut.Pass(ctx, k, rs, "bench-node", flowMark, cutMark)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if len(res.Errors) > 0 {
				b.Fatalf("%d errors, first: %v", len(res.Errors), res.Errors[0])
			}
			if res.Judged != marked {
				b.Fatalf("judged %d flows, want the %d marked", res.Judged, marked)
			}
			b.ReportMetric(float64(res.Judged), "judged")
			b.ReportMetric(float64(len(res.Cuts)), "cut")
		})
	}
}
