package ruleset

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Text renders the Ruleset as `nft -f` input that creates the table from
// nothing. The order is fixed: limit objects, sets, regular chains, maps, base chains, so that
// every name is declared before it is referenced.
func (r *Ruleset) Text() string { return r.TextAs(TableName) }

// TextAs is Text for a table of another name (policyd compile prints a
// preview table that cannot replace the agent's own when loaded).
func (r *Ruleset) TextAs(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for _, l := range r.Limits {
		fmt.Fprintf(&b, "\t%s\n", l.Text())
	}
	for _, s := range r.Sets {
		if !s.Map {
			s.writeText(&b)
		}
	}
	for _, c := range r.Chains {
		if c.Base == nil {
			c.writeText(&b)
		}
	}
	for _, s := range r.Sets {
		if s.Map {
			s.writeText(&b)
		}
	}
	for _, c := range r.Chains {
		if c.Base != nil {
			c.writeText(&b)
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func (s *Set) writeText(b *strings.Builder) {
	kind := "set"
	typ := s.Key.NftType()
	if s.Map {
		kind = "map"
		typ += " : verdict"
	}
	fmt.Fprintf(b, "\t%s %s {\n\t\ttype %s\n", kind, s.Name, typ)
	if s.Interval {
		b.WriteString("\t\tflags interval\n")
	}
	if s.Size != 0 {
		fmt.Fprintf(b, "\t\tsize %d\n", s.Size)
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %s\n", quote(s.Comment))
	}
	if s.Len() > 0 {
		b.WriteString("\t\telements = { ")
		for i := range s.Len() {
			e := s.At(i)
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(s.ElementText(e))
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

// ElementKey renders an element's key as nft text. It identifies the element
// within its set.
func (s *Set) ElementKey(e Element) string {
	var parts []string
	if s.Key.HasAddr() {
		parts = append(parts, addrText(e.Addr, e.AddrEnd, s.Interval))
	}
	if s.Key.HasPort() {
		parts = append(parts, ProtoText(e.Proto), portText(e.Port, e.PortEnd))
	}
	return strings.Join(parts, " . ")
}

// ElementText renders an element as nft text: its key, and for maps its verdict.
func (s *Set) ElementText(e Element) string {
	if s.Map {
		return s.ElementKey(e) + " : " + e.Verdict.String()
	}
	return s.ElementKey(e)
}

func addrText(a, end netip.Addr, interval bool) string {
	if !interval || !end.IsValid() || end == a {
		return a.String()
	}
	if p, ok := RangePrefix(a, end); ok {
		return p.String()
	}
	return a.String() + "-" + end.String()
}

// RangePrefix reports whether [from, to] is exactly one CIDR prefix.
func RangePrefix(from, to netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= from.BitLen(); bits++ {
		p := netip.PrefixFrom(from, bits).Masked()
		if p.Addr() == from && LastAddr(p) == to {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// LastAddr returns the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				a[i] |= 0x80 >> bit
			}
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// ProtoText renders an IANA protocol number as nft does (tcp, udp, sctp).
func ProtoText(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

func portText(from, to uint16) string {
	if to == from {
		return strconv.Itoa(int(from))
	}
	return strconv.Itoa(int(from)) + "-" + strconv.Itoa(int(to))
}

func (c *Chain) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	if c.Base != nil {
		fmt.Fprintf(b, "\t\ttype filter hook %s priority %d; policy %s;\n", c.Base.Hook, c.Base.Priority, Verdict{Kind: c.Base.Policy})
	}
	for _, r := range c.Rules {
		fmt.Fprintf(b, "\t\t%s\n", RuleText(r))
	}
	b.WriteString("\t}\n")
}

// RuleText renders a rule with its comment.
func RuleText(r Rule) string {
	if c := r.RuleComment(); c != "" {
		return r.Text() + " comment " + quote(c)
	}
	return r.Text()
}

func quote(s string) string { return strconv.Quote(s) }

func familyWord(f int) string {
	if f == 6 {
		return "ip6"
	}
	return "ip"
}

// Text implements Rule.
func (r *CtRule) Text() string {
	var states []string
	for _, st := range []struct {
		bit  CtState
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"}} {
		if r.States&st.bit != 0 {
			states = append(states, st.name)
		}
	}
	return "ct state " + strings.Join(states, ",") + " " + r.Verdict.String()
}

// Text implements Rule.
func (r *FibLocalRule) Text() string { return "fib saddr type local " + r.Verdict.String() }

// Text implements Rule.
func (r *NDRule) Text() string {
	return "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } " + r.Verdict.String()
}

// Text implements Rule.
func (r *DispatchRule) Text() string {
	if r.Ports {
		return fmt.Sprintf("%s %s . meta l4proto . th dport vmap @%s", familyWord(r.Family), r.Field, r.Map)
	}
	if m := r.Mask(); m.IsValid() {
		return fmt.Sprintf("%s %s & %s vmap @%s", familyWord(r.Family), r.Field, m, r.Map)
	}
	return fmt.Sprintf("%s %s vmap @%s", familyWord(r.Family), r.Field, r.Map)
}

// Text implements Rule.
func (r *PortDispatchRule) Text() string { return "meta l4proto . th dport vmap @" + r.Map }

// Text implements Rule.
func (r *AllowRule) Text() string {
	var parts []string
	if r.PortSet != "" {
		parts = append(parts, "meta l4proto . th dport @"+r.PortSet)
	}
	if r.Proto != 0 {
		parts = append(parts, fmt.Sprintf("%s dport %d", ProtoText(r.Proto), r.Port))
	}
	if r.PeerSet != "" {
		parts = append(parts, fmt.Sprintf("%s %s @%s", familyWord(r.Family), r.PeerField, r.PeerSet))
	}
	if r.NamedPortSet != "" {
		parts = append(parts, fmt.Sprintf("%s daddr . meta l4proto . th dport @%s", familyWord(r.Family), r.NamedPortSet))
	}
	parts = append(parts, r.Verdict.String())
	return strings.Join(parts, " ")
}

// Text implements Rule.
func (r *VerdictRule) Text() string { return r.Verdict.String() }

// Text implements Rule.
func (r *UnknownAddrRule) Text() string {
	fw := familyWord(r.Family)
	return fmt.Sprintf("%s %s @%s %s %s != @%s %s", fw, r.Field, r.CIDRSet, fw, r.Field, r.KnownSet, r.Verdict)
}

// Text implements Rule. It is an nft comment, never the text of a rule
// policyd writes, so a chain holding a KernelRule never equals a wanted one.
func (r *KernelRule) Text() string {
	return fmt.Sprintf("# unmatched kernel rule handle %d", r.Handle)
}

// Text implements Rule.
func (r *CtMarkRule) Text() string {
	return fmt.Sprintf("%s %s @%s ct mark set ct mark | 0x%08x", familyWord(r.Family), r.Field, r.Set, r.Mark)
}

// Text implements Rule, in the form nft lists it.
func (r *CutMarkRule) Text() string {
	return fmt.Sprintf("ct mark & 0x%08x == 0x%08x %s", r.Mark, r.Mark, r.Verdict)
}

// Text implements Rule, in the form nft lists it.
func (r *TCPPickupRule) Text() string {
	return fmt.Sprintf("%s %s @%s tcp flags != syn / fin,syn,rst,ack %s", familyWord(r.Family), r.Field, r.Set, r.Verdict)
}
