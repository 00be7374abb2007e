package explain

import (
	"fmt"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
	"github.com/policyd/policyd/selectors"
)

// CompileNodes compiles the rulesets of the nodes the endpoints' pods run on,
// keyed by node name. Endpoints that are not pods, or pods not scheduled on a
// node, need none.
func CompileNodes(snap *cluster.Snapshot, eps ...model.Endpoint) (map[string]*ruleset.Ruleset, error) {
	return CompileNodesWith(snap, compile.Options{}, eps...)
}

// CompileNodesWith is CompileNodes with opts (a budget: the nodes then
// quarantine what the agent would).
func CompileNodesWith(snap *cluster.Snapshot, opts compile.Options, eps ...model.Endpoint) (map[string]*ruleset.Ruleset, error) {
	ix := selectors.FromSnapshot(snap)
	out := map[string]*ruleset.Ruleset{}
	for _, ep := range eps {
		if ep.Pod == nil || ep.Pod.NodeName == "" {
			continue
		}
		if _, ok := out[ep.Pod.NodeName]; ok {
			continue
		}
		rs, err := (&compile.Compiler{Options: opts}).Compile(ix, ep.Pod.NodeName)
		if err != nil {
			return nil, fmt.Errorf("compile node %s: %w", ep.Pod.NodeName, err)
		}
		out[ep.Pod.NodeName] = rs
	}
	return out, nil
}

// CheckTrace walks the first packet of pkt through rulesets (by node name,
// as CompileNodes returns them) along its path, and compares the rulesets'
// verdict with the model's decision d on the same packet. A node on the path
// without a ruleset, or a rule the tracer does not know, is an error.
//
// A packet from a pod to its own address never leaves the pod (unless it
// is a hairpin through a Service, model.Packet.Hairpin): no table sees it,
// also when another pod claims the address too.
func CheckTrace(rulesets map[string]*ruleset.Ruleset, pkt model.Packet, d model.Decision) (*Trace, error) {
	if pkt.Src.Pod != nil && !pkt.Src.Pod.HostNetwork && !pkt.Src.Node && !pkt.Hairpin && pkt.Src.IP.IsValid() && pkt.Src.IP.Unmap() == pkt.Dst.IP.Unmap() {
		return &Trace{Allowed: true, Agrees: d.Allowed}, nil
	}
	src, dst := traceEndpoint(pkt.Src), traceEndpoint(pkt.Dst)
	if pkt.Src.Node && dst.Node != "" {
		// Node traffic comes from an address local to the destination's node.
		src.Node, src.NodeLocal = dst.Node, true
	}
	hops, allowed, err := trace.Path(rulesets, src, dst, uint8(pkt.Protocol), uint16(pkt.Port))
	if err != nil {
		return nil, err
	}
	t := &Trace{Allowed: allowed, Agrees: allowed == d.Allowed}
	for _, h := range hops {
		t.Hops = append(t.Hops, Hop{Node: h.Node, Hook: h.Hook.String(), Verdict: ruleset.Verdict{Kind: h.Verdict}.String(), Rules: h.Steps})
	}
	return t, nil
}

func traceEndpoint(ep model.Endpoint) trace.Endpoint {
	te := trace.Endpoint{Addr: ep.IP}
	if ep.Pod != nil {
		te.Node = ep.Pod.NodeName
		te.NodeLocal = ep.Pod.HostNetwork
	}
	return te
}
