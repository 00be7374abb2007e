// Package ctcut is strict mode: after a commit it ends the conntrack flows
// of this node's pods that the committed ruleset would no longer admit as
// new connections, and only those.
//
// The compiled table (compile.Options.FlowMark) ORs a mark bit into every
// connection to or from a pod of this node when it judges its first packet,
// so a pass dumps only those flows (the kernel filters by mark). Each flow is
// judged with policy/trace on this node's committed ruleset as a new
// connection from the original source to the real destination: after DNAT,
// the reply tuple's source (a ClusterIP flow is judged as the endpoint pod it
// reached), on the reply's source port; egress of the source and ingress of
// the destination, as the kernel judges a first packet. TCP, UDP and SCTP
// flows are judged; others (ICMP) are left to expire.
//
// A denied TCP flow is deleted: the table drops a TCP connection's first
// packet without SYN to or from such pods, so neither end can revive it by
// a mid-stream pickup. A denied UDP or SCTP flow is kept and given the cut
// mark bit (compile.Options.CutMark), which the first rule of each base
// chain drops in both directions: had the entry been deleted, a reply the
// destination sent before the source's next datagram would have started a
// reverse flow, judged as a new connection from the destination (which
// policies usually admit), and the source's datagrams would then ride it as
// replies. The kept entry expires when its traffic stops (conntrack's UDP
// timeout); a later pass that finds a cut flow allowed again (the policy
// came back) deletes it, so its next packet is judged as new.
//
// What a pass does not see: flows established before the mark rule existed
// (strict mode turned on, or a table of an older policyd), flows of a pod
// before this node knew it, and flows whose mark bit someone else cleared.
package ctcut

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/policy/trace"
)

// Flow is one conntrack entry as a pass judges it.
type Flow struct {
	Proto uint8
	// Src is the original direction's source, SrcPort its port.
	Src     netip.Addr
	SrcPort uint16
	// Dst is the real destination: the reply direction's source (the
	// original destination after DNAT), DstPort its port.
	Dst     netip.Addr
	DstPort uint16
	// Mark is the entry's conntrack mark.
	Mark uint32
	// Ref is the backend's handle on the entry, for Delete and SetMark.
	Ref any
}

func (f Flow) String() string {
	return fmt.Sprintf("%s %s -> %s", protoName(f.Proto), netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort))
}

// Table is the node's conntrack table, as a pass needs it.
type Table interface {
	// Flows returns the entries whose mark has every bit of mark set.
	Flows(ctx context.Context, mark uint32) ([]Flow, error)
	// Delete ends one entry; an entry already gone is not an error.
	Delete(ctx context.Context, f Flow) error
	// SetMark sets the conntrack mark of an entry to mark; an entry
	// already gone is not an error.
	SetMark(ctx context.Context, f Flow, mark uint32) error
	// LocalAddrs returns the node's own addresses (fib saddr type local).
	LocalAddrs(ctx context.Context) (map[netip.Addr]bool, error)
}

// Reasons a flow is cut, the label of the cut metric.
const (
	ReasonEgress             = "egress"
	ReasonIngress            = "ingress"
	ReasonUnknownSource      = "unknown-source"
	ReasonUnknownDestination = "unknown-destination"
	ReasonOther              = "other"
)

// Verdict is the judgement of one flow.
type Verdict struct {
	Allowed bool
	// Reason is the direction that denies it (Reason* constants).
	Reason string
	// Rule is the deciding rule's chain, text and comment.
	Rule string
}

// Judge judges f as a new connection through rs, the ruleset committed on
// this node. local holds the node's own addresses.
func Judge(rs *ruleset.Ruleset, node string, local map[netip.Addr]bool, f Flow) (Verdict, error) {
	endpoint := func(a netip.Addr) trace.Endpoint {
		switch {
		case local[a]:
			return trace.Endpoint{Addr: a, Node: node, NodeLocal: true}
		case isLocalPod(rs, a):
			return trace.Endpoint{Addr: a, Node: node}
		}
		return trace.Endpoint{Addr: a}
	}
	hops, ok, err := trace.Judge(map[string]*ruleset.Ruleset{node: rs}, endpoint(f.Src), endpoint(f.Dst), f.Proto, f.DstPort)
	if err != nil {
		return Verdict{}, err
	}
	if ok {
		return Verdict{Allowed: true}, nil
	}
	v := Verdict{Reason: ReasonOther}
	last := hops[len(hops)-1]
	if d := last.Decider; d != nil {
		v.Rule = d.Chain + ": " + d.Text
		if d.Comment != "" {
			v.Rule += " # " + d.Comment
		}
		switch {
		case strings.HasPrefix(d.Chain, "egress-"):
			v.Reason = ReasonEgress
		case strings.HasPrefix(d.Chain, "ingress-"), strings.HasPrefix(d.Chain, "invalid-"):
			v.Reason = ReasonIngress
		default:
			if c := rs.Chain(d.Chain); c != nil && d.Rule < len(c.Rules) {
				if u, isU := c.Rules[d.Rule].(*ruleset.UnknownAddrRule); isU {
					v.Reason = ReasonUnknownSource
					if u.Field == ruleset.Daddr {
						v.Reason = ReasonUnknownDestination
					}
				}
			}
		}
	}
	return v, nil
}

func isLocalPod(rs *ruleset.Ruleset, a netip.Addr) bool {
	name := compile.SetLocalPods4
	if a.Is6() {
		name = compile.SetLocalPods6
	}
	s := rs.Set(name)
	if s == nil {
		return false
	}
	if len(s.Elements) == 0 {
		return s.Addrs.Contains(a)
	}
	for _, e := range s.Elements {
		if e.Addr == a {
			return true
		}
	}
	return false
}

// Cut is a flow a pass ended.
type Cut struct {
	Flow    Flow
	Verdict Verdict
}

// Result is what one pass did.
type Result struct {
	Judged int
	// Cuts are the flows this pass ended: deleted (TCP) or given the cut
	// mark (UDP, SCTP).
	Cuts []Cut
	// Restored counts the flows cut earlier that the ruleset admits again:
	// their entries are deleted, so their next packet is judged as new.
	Restored int
	// Errors are flows the pass could not judge or delete.
	Errors []error
}

type judgeKey struct {
	proto    uint8
	src, dst netip.Addr
	port     uint16
}

// Pass dumps the flows carrying mark, judges each against rs and ends those
// rs denies: TCP flows (and all flows when cutMark is 0) are deleted, UDP and
// SCTP flows get the cutMark bit, which the table drops. A flow with the
// cutMark bit that rs admits again is deleted. Flows with equal (protocol,
// source, destination, destination port) are judged once.
func Pass(ctx context.Context, t Table, rs *ruleset.Ruleset, node string, mark, cutMark uint32) (Result, error) {
	var res Result
	flows, err := t.Flows(ctx, mark)
	if err != nil {
		return res, fmt.Errorf("ctcut: dumping conntrack: %w", err)
	}
	local, err := t.LocalAddrs(ctx)
	if err != nil {
		return res, fmt.Errorf("ctcut: node addresses: %w", err)
	}
	judged := map[judgeKey]Verdict{}
	for _, f := range flows {
		if f.Proto != 6 && f.Proto != 17 && f.Proto != 132 {
			continue
		}
		res.Judged++
		k := judgeKey{f.Proto, f.Src, f.Dst, f.DstPort}
		v, ok := judged[k]
		if !ok {
			v, err = Judge(rs, node, local, f)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Errorf("%s: %w", f, err))
				continue
			}
			judged[k] = v
		}
		wasCut := cutMark != 0 && f.Mark&cutMark == cutMark
		switch {
		case v.Allowed && wasCut:
			if err := t.Delete(ctx, f); err != nil {
				res.Errors = append(res.Errors, fmt.Errorf("deleting %s: %w", f, err))
				continue
			}
			res.Restored++
			continue
		case v.Allowed, wasCut:
			continue
		case f.Proto == 6 || cutMark == 0:
			if err := t.Delete(ctx, f); err != nil {
				res.Errors = append(res.Errors, fmt.Errorf("deleting %s: %w", f, err))
				continue
			}
		default:
			if err := t.SetMark(ctx, f, f.Mark|cutMark); err != nil {
				res.Errors = append(res.Errors, fmt.Errorf("marking %s cut: %w", f, err))
				continue
			}
		}
		res.Cuts = append(res.Cuts, Cut{Flow: f, Verdict: v})
	}
	return res, nil
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", p)
}
