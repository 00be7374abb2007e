package cnp_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/cnp"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// TestSuite_ModelAndTracer runs every step of every transcribed test through
// the semantics model and through the compiled rulesets of every node,
// walked by the tracer, and requires both to give each probe's expected
// verdict.
func TestSuite_ModelAndTracer(t *testing.T) {
	t.Parallel()
	tests, err := cnp.Tests()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"node-1", "node-2", "node-3"}
	totals := map[string][2]int{}
	for _, tc := range tests {
		base, err := cnp.Base(nodes)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cnp.NewState(base, tc)
		if err != nil {
			t.Fatal(err)
		}
		for si, step := range tc.Steps {
			for gi, stage := range step.Stages() {
				if err := st.Apply(stage); err != nil {
					t.Fatalf("%s step %d stage %d: %v", tc.Name, si, gi, err)
				}
				if len(stage.Probes) == 0 {
					continue
				}
				snap, err := st.Snapshot()
				if err != nil {
					t.Fatalf("%s step %d: %v", tc.Name, si, err)
				}
				ix := selectors.FromSnapshot(snap)
				rulesets := map[string]*ruleset.Ruleset{}
				for _, n := range nodes {
					if rulesets[n], err = compile.Compile(ix, n); err != nil {
						t.Fatal(err)
					}
				}
				for _, pr := range stage.Probes {
					got := totals[tc.Profile]
					got[1]++
					mAllowed, tAllowed, why, err := probe(snap, base, rulesets, pr)
					if err != nil {
						t.Fatalf("%s step %d %+v: %v", tc.Name, si, pr, err)
					}
					if mAllowed != pr.Allowed || tAllowed != pr.Allowed {
						t.Errorf("%s step %d (%s): %s -> %s %s/%s: want allowed=%v, model %v, tracer %v\n%s",
							tc.Name, si, step.Name, pr.From, pr.To, pr.Protocol, pr.Port, pr.Allowed, mAllowed, tAllowed, why)
						continue
					}
					got[0]++
					totals[tc.Profile] = got
				}
			}
		}
	}
	for profile, n := range totals {
		t.Logf("%s: %d of %d probes agree in model and tracer", profile, n[0], n[1])
	}
}

func probe(snap *cluster.Snapshot, base *cnp.Cluster, rulesets map[string]*ruleset.Ruleset, pr cnp.Probe) (bool, bool, string, error) {
	ipStr, port, err := base.Target(pr)
	if err != nil {
		return false, false, "", err
	}
	dstIP := netip.MustParseAddr(ipStr)
	src := snap.Pod(pr.From)
	srcIP, ok := src.IP(4)
	if !ok {
		return false, false, "", fmt.Errorf("%s has no IPv4 address", pr.From)
	}
	dstEP := model.Endpoint{IP: dstIP}
	dstTrace := trace.Endpoint{Addr: dstIP}
	if p := snap.Pod(pr.To); p != nil {
		dstEP.Pod = p
		dstTrace.Node, dstTrace.NodeLocal = p.NodeName, p.HostNetwork
	}
	proto, err := cluster.ParseAPIProtocol(string(pr.Protocol))
	if err != nil {
		return false, false, "", err
	}
	srcEP := model.Endpoint{Pod: src, IP: srcIP}
	if src.HostNetwork && dstEP.Pod != nil && !dstEP.Pod.HostNetwork && dstEP.Pod.NodeName == src.NodeName {
		srcEP.Node = true
	}
	d := model.Evaluate(snap, model.Packet{Src: srcEP, Dst: dstEP, Protocol: proto, Port: port})
	hops, allowed, err := trace.Path(rulesets, trace.Endpoint{Addr: srcIP, Node: src.NodeName, NodeLocal: src.HostNetwork}, dstTrace, uint8(proto), uint16(port))
	if err != nil {
		return false, false, "", err
	}
	why := fmt.Sprintf("  model egress: %s\n  model ingress: %s\n", d.Egress.Reason, d.Ingress.Reason)
	for _, h := range hops {
		why += fmt.Sprintf("  node %s %s:\n%s", h.Node, h.Hook, h.Result)
	}
	return d.Allowed, allowed, why, nil
}
