// Package trace walks a compiled ruleset.Ruleset for one packet, the way the
// kernel would: base chain, verdict-map dispatch, the pod's chain, verdict.
// It reports every rule it passed and whether it matched. It knows exactly the
// rule shapes of package ruleset and returns an error on any other: it never
// guesses.
//
// The tracer serves the unit tests (compiled rulesets are checked against the
// semantics model on the upstream matrix and on random clusters), `policyd
// explain --trace`, and the conformance lab's diagnostics.
package trace

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/policyd/policyd/policy/ruleset"
)

// Packet is the first packet of a connection as a hook sees it.
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is the IANA protocol number (6, 17, 132, 58, …).
	Protocol uint8
	// Port is the destination port (TCP, UDP, SCTP).
	Port uint16
	// ICMPv6Type is the ICMPv6 type when Protocol is 58.
	ICMPv6Type uint8
	// State is the conntrack state; the zero value means CtNew.
	State ruleset.CtState
	// SrcLocal says the source address is local to the node (fib saddr type local).
	SrcLocal bool
	// Pickup says a TCP packet carries no SYN: conntrack picks the
	// connection up in mid-stream. The zero value is a SYN.
	Pickup bool
}

// Step is one rule the packet was checked against.
type Step struct {
	Chain   string `json:"chain"`
	Rule    int    `json:"rule"`
	Text    string `json:"text"`
	Comment string `json:"comment,omitempty"`
	Matched bool   `json:"matched"`
}

// Result is the outcome of one hook.
type Result struct {
	// Verdict is Accept or Drop.
	Verdict ruleset.VerdictKind `json:"-"`
	Steps   []Step              `json:"steps"`
	// Decider is the rule that gave the final verdict; nil when the chain
	// policy did.
	Decider *Step `json:"decider,omitempty"`
	// Logged lists the prefixes (decider ids) of the LogRules the packet
	// matched, in order: what the kernel would count and, within its rate
	// limit, log.
	Logged []string `json:"logged,omitempty"`
}

// Allowed reports whether the hook accepted the packet.
func (r *Result) Allowed() bool { return r.Verdict == ruleset.Accept }

// String renders the path, one matched rule a line.
func (r *Result) String() string {
	var b strings.Builder
	for _, s := range r.Steps {
		if !s.Matched {
			continue
		}
		fmt.Fprintf(&b, "  %s[%d]: %s", s.Chain, s.Rule, s.Text)
		if s.Comment != "" {
			fmt.Fprintf(&b, "  # %s", s.Comment)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  => %s\n", ruleset.Verdict{Kind: r.Verdict})
	return b.String()
}

// maxDepth bounds jumps; compiled rulesets jump exactly one level.
const maxDepth = 8

// Trace walks the base chain attached to hook with pkt.
func Trace(rs *ruleset.Ruleset, hook ruleset.Hook, pkt Packet) (*Result, error) {
	return trace(rs, hook, pkt, false)
}

// trace is Trace; quiet records no Steps, only the Decider.
func trace(rs *ruleset.Ruleset, hook ruleset.Hook, pkt Packet, quiet bool) (*Result, error) {
	if pkt.State == 0 {
		pkt.State = ruleset.CtNew
	}
	var base *ruleset.Chain
	for _, c := range rs.Chains {
		if c.Base != nil && c.Base.Hook == hook {
			if base != nil {
				return nil, fmt.Errorf("trace: two base chains on hook %s (%s, %s)", hook, base.Name, c.Name)
			}
			base = c
		}
	}
	res := &Result{}
	if base == nil {
		res.Verdict = ruleset.Accept // no chain on this hook: policyd does not interfere
		return res, nil
	}
	t := &tracer{rs: rs, pkt: pkt, res: res, quiet: quiet}
	v, err := t.chain(base, 0)
	if err != nil {
		return nil, err
	}
	switch v.Kind {
	case ruleset.Accept, ruleset.Drop:
		res.Verdict = v.Kind
	case ruleset.VerdictInvalid, ruleset.Return:
		res.Verdict = base.Base.Policy
		res.Decider = nil
	default:
		return nil, fmt.Errorf("trace: base chain %s ended with %s", base.Name, v)
	}
	return res, nil
}

type tracer struct {
	rs  *ruleset.Ruleset
	pkt Packet
	res *Result
	// quiet records no Steps: only the Decider's text is rendered.
	quiet bool
}

// chain evaluates c and returns the terminal verdict (Accept or Drop), Return,
// or the zero Verdict when the chain ran off its end.
func (t *tracer) chain(c *ruleset.Chain, depth int) (ruleset.Verdict, error) {
	if depth > maxDepth {
		return ruleset.Verdict{}, fmt.Errorf("trace: jumps nested deeper than %d at chain %s", maxDepth, c.Name)
	}
	for i, r := range c.Rules {
		matched, v, err := t.rule(r)
		if err != nil {
			return ruleset.Verdict{}, fmt.Errorf("trace: chain %s rule %d: %w", c.Name, i, err)
		}
		if t.quiet && !matched {
			continue
		}
		step := Step{Chain: c.Name, Rule: i, Text: r.Text(), Comment: r.RuleComment(), Matched: matched}
		if !t.quiet {
			t.res.Steps = append(t.res.Steps, step)
		}
		if !matched {
			continue
		}
		switch v.Kind {
		case ruleset.VerdictInvalid:
			// Only a non-terminal shape (a log or ct mark statement)
			// matches without a verdict; rule has recorded what it did.
			if sh := ruleset.ShapeOf(r); sh != ruleset.ShapeLog && sh != ruleset.ShapeCtMark {
				return ruleset.Verdict{}, fmt.Errorf("trace: chain %s rule %d matched without a verdict", c.Name, i)
			}
		case ruleset.Accept, ruleset.Drop:
			t.res.Decider = &step
			return v, nil
		case ruleset.Return:
			return v, nil
		case ruleset.Jump:
			target := t.rs.Chain(v.Chain)
			if target == nil {
				return ruleset.Verdict{}, fmt.Errorf("trace: chain %s rule %d jumps to missing chain %q", c.Name, i, v.Chain)
			}
			sub, err := t.chain(target, depth+1)
			if err != nil {
				return ruleset.Verdict{}, err
			}
			if sub.Kind == ruleset.Accept || sub.Kind == ruleset.Drop {
				return sub, nil
			}
			// return or end of the jumped-to chain: continue here.
		case ruleset.Goto:
			target := t.rs.Chain(v.Chain)
			if target == nil {
				return ruleset.Verdict{}, fmt.Errorf("trace: chain %s rule %d goes to missing chain %q", c.Name, i, v.Chain)
			}
			// The target replaces this chain: its verdict, return or end
			// included, is this chain's.
			return t.chain(target, depth+1)
		default:
			return ruleset.Verdict{}, fmt.Errorf("trace: chain %s rule %d: unknown verdict %s", c.Name, i, v)
		}
	}
	return ruleset.Verdict{}, nil
}

// rule reports whether r matches and the verdict it applies (for a dispatch
// rule, the map entry's verdict). It first holds r to its shape's contract
// against the traced Ruleset (ruleset.CheckRule): every set r looks up
// exists with the type r needs, so each step below only interprets. A rule
// the kernel could not hold, a KernelRule among them, is an error, never a
// guess.
func (t *tracer) rule(r ruleset.Rule) (bool, ruleset.Verdict, error) {
	if err := ruleset.CheckRule(r, t.rs); err != nil {
		return false, ruleset.Verdict{}, err
	}
	p := t.pkt
	switch r := r.(type) {
	case *ruleset.CtRule:
		return p.State&r.States != 0, r.Verdict, nil
	case *ruleset.FibLocalRule:
		return p.SrcLocal, r.Verdict, nil
	case *ruleset.NDRule:
		nd := p.Protocol == 58 && p.Src.Is6() && p.ICMPv6Type >= 133 && p.ICMPv6Type <= 136
		return nd, r.Verdict, nil
	case *ruleset.DispatchRule:
		return t.dispatch(r)
	case *ruleset.AllowRule:
		return t.allow(r), r.Verdict, nil
	case *ruleset.UnknownAddrRule:
		in := familyMatches(r.Family, p) && t.addrIn(r.Field, r.CIDRSet) && !t.addrIn(r.Field, r.KnownSet)
		return in, r.Verdict, nil
	case *ruleset.VerdictRule:
		return true, r.Verdict, nil
	case *ruleset.KernelRule:
		// CheckRule has refused it: its expressions are unknown.
	case *ruleset.CtMarkRule:
		// Marking changes no verdict: matched or not, the packet goes on.
		return familyMatches(r.Family, p) && t.addrIn(r.Field, r.Set), ruleset.Verdict{}, nil
	case *ruleset.TCPPickupRule:
		// A traced packet is a connection's first; Pickup says whether it
		// lacks the SYN.
		in := familyMatches(r.Family, p) && t.addrIn(r.Field, r.Set)
		return in && p.Protocol == 6 && p.Pickup, r.Verdict, nil
	case *ruleset.LogRule:
		return t.log(r)
	case *ruleset.CutMarkRule:
		// A traced packet is a connection's first, whose mark is 0: only
		// the later packets of a connection strict mode cut match.
		return false, r.Verdict, nil
	case *ruleset.PortDispatchRule:
		return t.portDispatch(r)
	}
	return false, ruleset.Verdict{}, fmt.Errorf("unknown rule shape %T", r)
}

// addr returns the packet's address that field names.
func (t *tracer) addr(field ruleset.Field) netip.Addr {
	if field == ruleset.Daddr {
		return t.pkt.Dst
	}
	return t.pkt.Src
}

// addrIn reports whether the packet's field address is in the address set
// name.
func (t *tracer) addrIn(field ruleset.Field, name string) bool {
	return containsAddr(t.rs.Set(name), t.addr(field))
}

// dispatch is the step of a DispatchRule: the verdict of the map's entry
// for the packet's address (masked to its network with Prefix), with Ports
// its protocol and port too.
func (t *tracer) dispatch(r *ruleset.DispatchRule) (bool, ruleset.Verdict, error) {
	if !familyMatches(r.Family, t.pkt) {
		return false, ruleset.Verdict{}, nil
	}
	m := t.rs.Set(r.Map)
	addr := t.addr(r.Field)
	if r.Prefix != 0 {
		// The kernel looks the masked address up: its network.
		pfx, err := addr.Prefix(r.Prefix)
		if err != nil {
			return false, ruleset.Verdict{}, fmt.Errorf("dispatch masked to /%d: %w", r.Prefix, err)
		}
		addr = pfx.Addr()
	}
	for i := range m.Len() {
		if e := m.At(i); inAddrRange(m, e, addr) && (!r.Ports || portMatches(e, t.pkt)) {
			return true, e.Verdict, nil
		}
	}
	return false, ruleset.Verdict{}, nil
}

// portDispatch is the step of a PortDispatchRule: the verdict of the map's
// entry for the packet's protocol and port.
func (t *tracer) portDispatch(r *ruleset.PortDispatchRule) (bool, ruleset.Verdict, error) {
	m := t.rs.Set(r.Map)
	for i := range m.Len() {
		if e := m.At(i); portMatches(e, t.pkt) {
			return true, e.Verdict, nil
		}
	}
	return false, ruleset.Verdict{}, nil
}

// allow is the step of an AllowRule: every part it has must match.
func (t *tracer) allow(r *ruleset.AllowRule) bool {
	p := t.pkt
	// The family is matched (meta nfproto) only in front of an address
	// lookup: a rule without one matches both families, in its text and in
	// the kernel (a content-named chain holding it serves both).
	if r.Family != 0 && (r.PeerSet != "" || r.NamedPortSet != "") && !familyMatches(r.Family, p) {
		return false
	}
	if r.PeerSet != "" && !t.addrIn(r.PeerField, r.PeerSet) {
		return false
	}
	if r.PortSet != "" && !contains(t.rs.Set(r.PortSet), func(e ruleset.Element) bool { return portMatches(e, p) }) {
		return false
	}
	if r.Proto != 0 && (p.Protocol != r.Proto || p.Port != r.Port) {
		return false
	}
	if r.NamedPortSet != "" {
		s := t.rs.Set(r.NamedPortSet)
		return contains(s, func(e ruleset.Element) bool { return inAddrRange(s, e, p.Dst) && portMatches(e, p) })
	}
	return true
}

// containsAddr reports whether address a is in the address set s: a
// binary search when s is packed (the large peer sets), else a scan.
func containsAddr(s *ruleset.Set, a netip.Addr) bool {
	if len(s.Elements) == 0 && s.Addrs.Len() > 0 {
		return s.Addrs.Contains(a)
	}
	return contains(s, func(e ruleset.Element) bool { return inAddrRange(s, e, a) })
}

func contains(s *ruleset.Set, match func(ruleset.Element) bool) bool {
	for i := range s.Len() {
		if match(s.At(i)) {
			return true
		}
	}
	return false
}

func familyMatches(fam int, p Packet) bool {
	switch fam {
	case 4:
		return p.Dst.Is4()
	case 6:
		return p.Dst.Is6()
	}
	return false
}

func inAddrRange(s *ruleset.Set, e ruleset.Element, a netip.Addr) bool {
	if !s.Interval || !e.AddrEnd.IsValid() {
		return e.Addr == a
	}
	return e.Addr.BitLen() == a.BitLen() && e.Addr.Compare(a) <= 0 && a.Compare(e.AddrEnd) <= 0
}

// portMatches is `meta l4proto . th dport` against an element. th dport reads
// the second 16-bit word of the transport header, which is the destination
// port for TCP, UDP and SCTP; compiled sets only hold those protocols.
func portMatches(e ruleset.Element, p Packet) bool {
	if e.Proto != p.Protocol {
		return false
	}
	end := e.PortEnd
	if end < e.Port {
		end = e.Port
	}
	return p.Port >= e.Port && p.Port <= end
}
