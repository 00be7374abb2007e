package compile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/ruleset"
)

// Port dispatch: a group chain's rules on single ports as one lookup.
//
// A group chain tries its allow rules one after the other, and a packet
// pays a port probe for every rule before the one that admits it. When
// several rules name single ports (a literal port or a hash port set), the
// chain instead looks the packet's protocol and port up once, in a verdict
// map whose entries go to a chain per port: the peer lookups of the rules
// that name that port, then the rules that hold for any port, then the
// group's own end. Such a packet meets one map lookup and the peers of its
// own port, however many rules the group has.
//
// It changes neither what a chain allows nor what its peers hold: every
// allow rule of the chain has one verdict (the dispatch is only made then),
// a packet is allowed when any rule matches it, and a packet whose port no
// entry names goes on with the same rules, minus those whose port it does
// not have. The peer sets are the rules' own, so a pod that comes or goes
// is still an element of the same sets; the map and its chains depend on
// the rules only and change with them.

// A port chain ends with a copy of its group chain's end (the rules for
// any port, node traffic and the final verdict), unless the copies would
// be many: when the end is longer than maxCopiedRest rules and its copies
// over all ports would exceed maxCopiedRules, the end goes into a chain of
// its own (ingress-rest-…, egress-rest-…) that every port chain ends with a
// goto to. A group's port chains then grow with its rules plus its ports,
// not with their product (a rule of many ipBlocks on a port range beside
// rules on many single ports: millions of rules), while ordinary groups
// keep their copies, and their packets never pay for the goto.
const (
	maxCopiedRest  = 4
	maxCopiedRules = 256
)

// sharedEnd reports whether a group whose end holds after rules and whose
// port dispatch has points ports puts its end in a chain of its own.
func sharedEnd(after, points int) bool {
	return after > maxCopiedRest && after*points > maxCopiedRules
}

// minPortDispatch is the fewest rules on single ports for which a group
// chain dispatches on the port: below it, the one rule's own port test is
// as cheap as the map lookup and costs no extra chain.
const minPortDispatch = 2

// portPoint is one protocol and destination port.
type portPoint struct {
	proto uint8
	port  uint16
}

// comparePoints orders points by protocol, then port.
func comparePoints(a, b portPoint) int {
	return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}

// singlePorts returns the points rule r matches when all its ports are
// single ports (a literal port or a port hash set), and false when it has
// none, a range, a protocol-wide entry or named ports.
func (c *compiler) singlePorts(r *ruleset.AllowRule) ([]portPoint, bool) {
	switch {
	case r.NamedPortSet != "":
		return nil, false
	case r.Proto != 0:
		return []portPoint{{r.Proto, r.Port}}, true
	case r.PortSet == "":
		return nil, false
	}
	s := c.sets[r.PortSet]
	if s == nil || s.Interval || s.Len() == 0 {
		return nil, false
	}
	var out []portPoint
	for _, e := range s.Elems() {
		if e.PortEnd != e.Port && e.PortEnd != 0 {
			return nil, false
		}
		out = append(out, portPoint{e.Proto, e.Port})
	}
	return out, true
}

// portDispatch returns the body of a group chain of direction d whose allow
// rules are allows (in the order orderAllows gave them) followed by tail
// (the node-traffic rule and the final verdict): allows then tail as they
// are, or, when enough of them are on single ports and all share one
// verdict, a port dispatch rule, the other allow rules and tail, with the
// map and the per-port chains it goes to created.
func (c *compiler) portDispatch(d cluster.Direction, allows []*ruleset.AllowRule, tail []ruleset.Rule) []ruleset.Rule {
	plain := func() []ruleset.Rule {
		out := make([]ruleset.Rule, 0, len(allows)+len(tail))
		for _, r := range allows {
			out = append(out, r)
		}
		return append(out, tail...)
	}

	var keyed []*ruleset.AllowRule
	var keyedPoints [][]portPoint
	var rest []ruleset.Rule
	for _, r := range allows {
		if r.Verdict != allows[0].Verdict {
			return plain() // allowed logging: each rule has its own verdict
		}
		if pts, ok := c.singlePorts(r); ok {
			keyed = append(keyed, r)
			keyedPoints = append(keyedPoints, pts)
			continue
		}
		rest = append(rest, r)
	}
	if len(keyed) < minPortDispatch {
		return plain()
	}
	after := slices.Concat(rest, tail)

	// The rules of each point, in chain order (portChain keeps a rule
	// listed twice once).
	byPoint := map[portPoint][]*ruleset.AllowRule{}
	for i, r := range keyed {
		for _, pt := range keyedPoints[i] {
			byPoint[pt] = append(byPoint[pt], r)
		}
	}
	points := slices.SortedFunc(maps.Keys(byPoint), comparePoints)
	portAfter := after
	if sharedEnd(len(after), len(points)) {
		shared := c.addChain(d.String()+"-rest-"+chainHash(after), after)
		portAfter = []ruleset.Rule{&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Goto, Chain: shared}, Comment: "the group's rules for any port"}}
	}

	var elems []ruleset.Element
	var key strings.Builder
	for _, pt := range points {
		chain := c.portChain(d, byPoint[pt], portAfter)
		elems = append(elems, ruleset.Element{Proto: pt.proto, Port: pt.port, PortEnd: pt.port, Verdict: ruleset.Verdict{Kind: ruleset.Goto, Chain: chain}})
		fmt.Fprintf(&key, "%d.%d:%s,", pt.proto, pt.port, chain)
	}
	name := "gports-" + shortHash(key.String())
	m, ok := c.maps[name]
	if !ok {
		m = &ruleset.Set{Name: name, Key: ruleset.KeyProtoPort, Map: true, Elements: elems,
			Comment: "policyd port dispatch: protocol and port to the rules of a policy group on that port"}
		c.maps[name] = m
	}
	if c.rec != nil {
		c.rec.maps = append(c.rec.maps, m)
	}
	names := make([]string, 0, len(keyed))
	for _, r := range keyed {
		names = append(names, r.Comment)
	}
	dispatch := &ruleset.PortDispatchRule{Map: name, Comment: truncate("ports of " + strings.Join(names, ", "))}
	return append([]ruleset.Rule{dispatch}, after...)
}

// portChain returns the chain a port dispatch entry goes to, creating it on
// first use: the rules of that port without their port test (the map made
// it), then after (the group's end, or a goto to it). A rule left with no test at all admits every packet that
// reaches it, and ends the chain.
func (c *compiler) portChain(d cluster.Direction, rules []*ruleset.AllowRule, after []ruleset.Rule) string {
	var body []ruleset.Rule
	seen := map[string]bool{}
	all := false
	for _, r := range rules {
		peer := *r
		peer.PortSet, peer.Proto, peer.Port = "", 0, 0
		if peer.PeerSet == "" {
			peer.Family = 0 // no address test left: every packet of the port
		}
		if k := peer.Text(); !seen[k] {
			seen[k] = true
			body = append(body, &peer)
		}
		if peer.PeerSet == "" {
			all = true
			break
		}
	}
	if !all {
		body = append(body, after...)
	}
	return c.addChain(d.String()+"-port-"+chainHash(body), body)
}
