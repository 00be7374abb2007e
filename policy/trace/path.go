package trace

import (
	"fmt"
	"net/netip"

	"github.com/policyd/policyd/policy/ruleset"
)

// Endpoint locates one end of a connection in the cluster.
type Endpoint struct {
	Addr netip.Addr
	// Node is the node the address lives on; "" for an address outside the
	// cluster's nodes.
	Node string
	// NodeLocal says the address belongs to the node itself (the node, or a
	// hostNetwork pod), not to a pod network namespace.
	NodeLocal bool
}

// Hop is one place on the path where policyd's table sees the packet.
type Hop struct {
	Node     string
	Hook     ruleset.Hook
	SrcLocal bool
}

// Hops returns where the first packet from src to dst meets a policyd table:
// the source pod's node on the way out (postrouting, or input when the
// destination is that node itself) and the destination pod's node on the way
// in (postrouting). A connection between two pods of one node meets the table
// once, in postrouting, where both the egress and the ingress maps are looked
// up.
func Hops(src, dst Endpoint) []Hop {
	var hops []Hop
	srcPod := src.Node != "" && !src.NodeLocal
	dstPod := dst.Node != "" && !dst.NodeLocal
	if srcPod {
		if dst.NodeLocal && dst.Node == src.Node {
			return []Hop{{Node: src.Node, Hook: ruleset.HookInput}}
		}
		hops = append(hops, Hop{Node: src.Node, Hook: ruleset.HookPostrouting})
	}
	if dstPod && !(srcPod && src.Node == dst.Node) {
		hops = append(hops, Hop{Node: dst.Node, Hook: ruleset.HookPostrouting, SrcLocal: src.NodeLocal && src.Node == dst.Node})
	}
	return hops
}

// HopResult is the trace of one hop.
type HopResult struct {
	Hop
	*Result
}

// Path traces the first packet of a connection from src to dst through the
// rulesets of every node on its path. rulesets maps node names to their
// compiled Ruleset; a node on the path without one is an error.
func Path(rulesets map[string]*ruleset.Ruleset, src, dst Endpoint, proto uint8, port uint16) ([]HopResult, bool, error) {
	return path(rulesets, src, dst, proto, port, false)
}

// Judge is Path for callers that need only the verdict and the deciding
// rule: each hop's Result holds its Decider (and Logged) but no Steps, and
// no other rule's text is rendered. Strict mode judges every marked flow of
// a node with it.
func Judge(rulesets map[string]*ruleset.Ruleset, src, dst Endpoint, proto uint8, port uint16) ([]HopResult, bool, error) {
	return path(rulesets, src, dst, proto, port, true)
}

func path(rulesets map[string]*ruleset.Ruleset, src, dst Endpoint, proto uint8, port uint16, quiet bool) ([]HopResult, bool, error) {
	allowed := true
	var out []HopResult
	for _, h := range Hops(src, dst) {
		rs, ok := rulesets[h.Node]
		if !ok {
			return nil, false, fmt.Errorf("trace: no ruleset for node %q", h.Node)
		}
		res, err := trace(rs, h.Hook, Packet{Src: src.Addr, Dst: dst.Addr, Protocol: proto, Port: port, SrcLocal: h.SrcLocal}, quiet)
		if err != nil {
			return nil, false, fmt.Errorf("node %s hook %s: %w", h.Node, h.Hook, err)
		}
		out = append(out, HopResult{Hop: h, Result: res})
		if !res.Allowed() {
			allowed = false
			break
		}
	}
	return out, allowed, nil
}
