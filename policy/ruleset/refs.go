package ruleset

import (
	"errors"
	"fmt"
	"strings"
)

// This file holds each shape's contract, in Shape order: Refs, what the rule
// refers to and what it needs of each object, and Validate, what it requires
// of its own fields. CheckRule and Check (check.go) apply them; the
// lowering (policy/nft) and the tracer (policy/trace) then only build and
// interpret.

// checkFamily reports whether f is an address family a rule can match.
func checkFamily(f int) error {
	if f != 4 && f != 6 {
		return fmt.Errorf("family %d is not 4 or 6", f)
	}
	return nil
}

// checkField reports whether f names an address of the packet; what names
// the field in the error.
func checkField(what string, f Field) error {
	if f != Saddr && f != Daddr {
		return fmt.Errorf("invalid %s %d", what, f)
	}
	return nil
}

// addrSet is the need of a plain address lookup of family fam.
func addrSet(fam int) SetNeed { return SetNeed{Key: AddrKey(fam)} }

// Refs implements Rule: the chain its verdict jumps to, if any.
func (r *CtRule) Refs() []Ref { return verdictRefs(r.Verdict) }

// Validate implements Rule.
func (r *CtRule) Validate() error {
	if r.States == 0 {
		return errors.New("ct rule matches no state")
	}
	return r.Verdict.Validate()
}

// Refs implements Rule: the chain its verdict jumps to, if any.
func (r *FibLocalRule) Refs() []Ref { return verdictRefs(r.Verdict) }

// Validate implements Rule.
func (r *FibLocalRule) Validate() error { return r.Verdict.Validate() }

// Refs implements Rule: the chain its verdict jumps to, if any (its
// ICMPv6 types are an anonymous set of its own).
func (r *NDRule) Refs() []Ref { return verdictRefs(r.Verdict) }

// Validate implements Rule.
func (r *NDRule) Validate() error { return r.Verdict.Validate() }

// Refs implements Rule: the verdict map, keyed by the family's address
// (masked to Prefix bits: then an exact map of networks), or by the
// address, protocol and port with Ports. The map's entries name the chains.
func (r *DispatchRule) Refs() []Ref {
	need := SetNeed{Key: AddrKey(r.Family), Map: true}
	switch {
	case r.Prefix != 0:
		need.Exact, need.Networks = true, r.Prefix
	case r.Ports:
		need.Key = AddrProtoPortKey(r.Family)
	}
	return []Ref{setRef("map", r.Map, need)}
}

// Validate implements Rule. A masked address matches network addresses:
// an interval map or one keyed by ports would make no sense of it.
func (r *DispatchRule) Validate() error {
	if err := checkFamily(r.Family); err != nil {
		return err
	}
	if err := checkField("field", r.Field); err != nil {
		return err
	}
	if r.Prefix != 0 && (!r.Mask().IsValid() || r.Ports) {
		return fmt.Errorf("address mask /%d on an ipv%d dispatch (ports %v): want 1 to %d bits without ports", r.Prefix, r.Family, r.Ports, AddrBits(r.Family)-1)
	}
	return nil
}

// Refs implements Rule: the port set, the peer set and the named-port set
// it uses, in the order of its text, and the chain its verdict jumps to.
func (r *AllowRule) Refs() []Ref {
	n := len(verdictRefs(r.Verdict))
	for _, name := range []string{r.PortSet, r.PeerSet, r.NamedPortSet} {
		if name != "" {
			n++
		}
	}
	out := make([]Ref, 0, n)
	if r.PortSet != "" {
		out = append(out, setRef("port", r.PortSet, SetNeed{Key: KeyProtoPort}))
	}
	if r.PeerSet != "" {
		out = append(out, setRef("peer", r.PeerSet, addrSet(r.Family)))
	}
	if r.NamedPortSet != "" {
		out = append(out, setRef("named port", r.NamedPortSet, SetNeed{Key: AddrProtoPortKey(r.Family)}))
	}
	return verdictRefs(r.Verdict, out...)
}

// Validate implements Rule: a rule with an address set has a family, one
// without may match both (Family 0); a literal port has a protocol with
// ports and comes instead of a port set.
func (r *AllowRule) Validate() error {
	if r.PeerSet != "" || r.NamedPortSet != "" {
		if err := checkFamily(r.Family); err != nil {
			return err
		}
	} else if r.Family != 0 && r.Family != 4 && r.Family != 6 {
		return fmt.Errorf("family %d is not 0, 4 or 6", r.Family)
	}
	if r.PeerSet != "" {
		if err := checkField("peer field", r.PeerField); err != nil {
			return err
		}
	}
	switch {
	case r.Proto != 0 && r.PortSet != "":
		return errors.New("allow rule with both a port set and a literal port")
	case r.Proto != 0 && r.Proto != 6 && r.Proto != 17 && r.Proto != 132:
		return fmt.Errorf("literal port of protocol %d, not tcp, udp or sctp", r.Proto)
	case r.Proto == 0 && r.Port != 0:
		return errors.New("literal port without a protocol")
	}
	return r.Verdict.Validate()
}

// Refs implements Rule: the pod network set, then the known pods set, and
// the chain its verdict jumps to.
func (r *UnknownAddrRule) Refs() []Ref {
	refs := append(make([]Ref, 0, 3),
		setRef("pod network", r.CIDRSet, addrSet(r.Family)),
		setRef("known pods", r.KnownSet, addrSet(r.Family)))
	return verdictRefs(r.Verdict, refs...)
}

// Validate implements Rule.
func (r *UnknownAddrRule) Validate() error {
	if err := checkFamily(r.Family); err != nil {
		return err
	}
	if err := checkField("field", r.Field); err != nil {
		return err
	}
	return r.Verdict.Validate()
}

// Refs implements Rule: the chain its verdict jumps to, if any.
func (r *VerdictRule) Refs() []Ref { return verdictRefs(r.Verdict) }

// Validate implements Rule.
func (r *VerdictRule) Validate() error { return r.Verdict.Validate() }

// Refs implements Rule: none policyd knows.
func (r *KernelRule) Refs() []Ref { return nil }

// Validate implements Rule: never valid. policyd knows neither the rule's
// expressions nor what it refers to, so it can be neither written nor
// traced.
func (r *KernelRule) Validate() error {
	return fmt.Errorf("rule handle %d was read back from the kernel: its expressions are unknown, it cannot be written or traced", r.Handle)
}

// Refs implements Rule: the address set.
func (r *CtMarkRule) Refs() []Ref { return []Ref{setRef("address", r.Set, addrSet(r.Family))} }

// Validate implements Rule.
func (r *CtMarkRule) Validate() error {
	if r.Mark == 0 {
		return errors.New("ct mark rule sets no bit")
	}
	if err := checkFamily(r.Family); err != nil {
		return err
	}
	return checkField("field", r.Field)
}

// Refs implements Rule: the address set, and the chain its verdict jumps
// to.
func (r *TCPPickupRule) Refs() []Ref {
	return verdictRefs(r.Verdict, append(make([]Ref, 0, 2), setRef("address", r.Set, addrSet(r.Family)))...)
}

// Validate implements Rule.
func (r *TCPPickupRule) Validate() error {
	if err := checkFamily(r.Family); err != nil {
		return err
	}
	if err := checkField("field", r.Field); err != nil {
		return err
	}
	return r.Verdict.Validate()
}

// Refs implements Rule: the limit object gating its log, if it names one.
func (r *LogRule) Refs() []Ref {
	if r.Limit == "" {
		return nil
	}
	return []Ref{{Kind: RefLimit, Name: r.Limit, Role: "log"}}
}

// Validate implements Rule: a prefix the kernel keeps whole, and a prefix
// and limit name nft can print and read back.
func (r *LogRule) Validate() error {
	switch {
	case r.Prefix == "":
		return errors.New("log rule without a prefix")
	case len(r.Prefix) > MaxLogPrefix:
		return fmt.Errorf("log prefix longer than %d bytes", MaxLogPrefix)
	case strings.ContainsAny(r.Prefix, "\"\x00\n"):
		return fmt.Errorf("log prefix %q holds a quote, newline or NUL", r.Prefix)
	case strings.ContainsAny(r.Limit, "\"\x00\n"):
		return fmt.Errorf("limit name %q holds a quote, newline or NUL", r.Limit)
	}
	return nil
}

// Refs implements Rule: the chain its verdict jumps to, if any.
func (r *CutMarkRule) Refs() []Ref { return verdictRefs(r.Verdict) }

// Validate implements Rule.
func (r *CutMarkRule) Validate() error {
	if r.Mark == 0 {
		return errors.New("cut mark rule matches no bit")
	}
	return r.Verdict.Validate()
}

// Refs implements Rule: the verdict map, keyed by protocol and port
// without intervals.
func (r *PortDispatchRule) Refs() []Ref {
	return []Ref{setRef("map", r.Map, SetNeed{Key: KeyProtoPort, Map: true, Exact: true})}
}

// Validate implements Rule: it has no fields of its own to get wrong.
func (r *PortDispatchRule) Validate() error { return nil }
