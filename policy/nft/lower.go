package nft

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// This file lowers rule shapes, sets and elements to google/nftables values.
// Each shape produces exactly the expressions nft 1.0.6 generates for the text
// ruleset.Rule.Text renders (see `nft --debug=netlink`), so that both list
// the same; the kernel test TestLower_MatchesNftText proves it.

// Rule userdata TLV types. nft reads type 0 as the rule's comment and
// ignores types it does not know, so the hash is invisible to `nft list`.
const (
	udataRuleComment = 0
	// udataRuleHash holds ruleHash of the rule: it identifies the rule of
	// any chain when the table is read back, without reading the rule's
	// expressions.
	udataRuleHash = 0xd0
)

// lowerVersion is part of every rule hash: bump it when a shape's lowering
// changes, so that adopted chains written by an older lowering are refilled.
const lowerVersion = "policyd-nft-1"

// ruleHash identifies a rule by its full text (with comment).
func ruleHash(r ruleset.Rule) []byte {
	h := sha256.Sum256([]byte(lowerVersion + "\x00" + ruleset.RuleText(r)))
	return h[:8]
}

// ruleUserData returns the userdata TLVs of a rule: the comment as nft writes
// it, then the rule hash.
func ruleUserData(r ruleset.Rule) []byte {
	var b []byte
	if c := r.RuleComment(); c != "" {
		b = append(b, udataRuleComment, byte(len(c)+1))
		b = append(b, c...)
		b = append(b, 0)
	}
	h := ruleHash(r)
	b = append(b, udataRuleHash, byte(len(h)))
	return append(b, h...)
}

// parseUserData splits userdata into TLVs by type. It returns false on
// malformed input instead of panicking.
func parseUserData(b []byte) (map[byte][]byte, bool) {
	out := map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return out, false
		}
		out[b[0]] = b[2 : 2+int(b[1])]
		b = b[2+int(b[1]):]
	}
	return out, true
}

// udataComment returns the comment TLV value without its terminating NUL.
func udataComment(tlv map[byte][]byte) string {
	c := tlv[udataRuleComment]
	if n := len(c); n > 0 && c[n-1] == 0 {
		c = c[:n-1]
	}
	return string(c)
}

// nftReg returns the register number nft uses for the 32-bit slot i of the
// register file: 128-bit names (NFT_REG_1..4) where aligned, NFT_REG32_xx
// otherwise. The kernel maps both to the same storage.
func nftReg(slot int) uint32 {
	if slot%4 == 0 {
		return uint32(unix.NFT_REG_1 + slot/4)
	}
	return uint32(unix.NFT_REG32_00 + slot)
}

// nfproto returns the NFPROTO_* value of an address family (4 or 6).
func nfproto(family int) byte {
	if family == 6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// addrOffset returns the network header offset and length of the source or
// destination address.
func addrOffset(family int, f ruleset.Field) (off, n uint32) {
	if family == 6 {
		if f == ruleset.Saddr {
			return 8, 16
		}
		return 24, 16
	}
	if f == ruleset.Saddr {
		return 12, 4
	}
	return 16, 4
}

func nfprotoMatch(family int) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto(family)}},
	}
}

func loadAddr(family int, f ruleset.Field, reg uint32) expr.Any { //nolint:unparam // each caller names the register beside the Lookup that reads it
	off, n := addrOffset(family, f)
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// loadProtoPort loads `meta l4proto . th dport` into the registers starting at
// 32-bit slot, swapping l4proto to network order for interval sets as nft
// does.
func loadProtoPort(slot int, interval bool) []expr.Any {
	out := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: nftReg(slot)}}
	if interval {
		out = append(out, &expr.Byteorder{SourceRegister: nftReg(slot), DestRegister: nftReg(slot), Op: expr.ByteorderHton, Len: 1, Size: 2})
	}
	return append(out, &expr.Payload{DestRegister: nftReg(slot + 1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
}

// verdictLookup looks the key in register 1 up in verdict map m, whose
// entry's verdict becomes the rule's.
func verdictLookup(m string) expr.Any {
	return &expr.Lookup{SourceRegister: 1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: m}
}

func lowerVerdict(v ruleset.Verdict) (*expr.Verdict, error) {
	switch v.Kind {
	case ruleset.Accept:
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case ruleset.Drop:
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case ruleset.Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case ruleset.Jump:
		if v.Chain == "" {
			return nil, errors.New("jump without a target chain")
		}
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}, nil
	case ruleset.Goto:
		if v.Chain == "" {
			return nil, errors.New("goto without a target chain")
		}
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}, nil
	}
	return nil, fmt.Errorf("invalid verdict kind %d", v.Kind)
}

// setLookup finds the set a rule refers to, as it will exist once the batch
// is committed.
type setLookup func(name string) *ruleset.Set

// lowerRule returns the expressions of r, in the order of its text. It
// only builds: ruleset.CheckRule has held r to its shape's contract, and
// sets resolves the sets r looks up (whose interval flag decides how a key
// is loaded). anon is non-nil when the rule needs an anonymous set. A
// KernelRule, which cannot be written, is an error.
func lowerRule(r ruleset.Rule, sets setLookup) (exprs []expr.Any, anon *anonSet, err error) {
	switch r := r.(type) {
	case *ruleset.CtRule:
		exprs = ctStateMatch(r.States)
	case *ruleset.FibLocalRule:
		exprs = lowerFibLocal()
	case *ruleset.NDRule:
		exprs, anon = lowerND()
	case *ruleset.DispatchRule:
		return lowerDispatch(r, sets), nil, nil // the map's entry is the verdict
	case *ruleset.AllowRule:
		exprs = lowerAllow(r, sets)
	case *ruleset.UnknownAddrRule:
		exprs = lowerUnknownAddr(r)
	case *ruleset.VerdictRule:
		// The verdict alone.
	case *ruleset.KernelRule:
		return nil, nil, r.Validate()
	case *ruleset.CtMarkRule:
		return lowerCtMark(r), nil, nil // no verdict: the packet continues
	case *ruleset.TCPPickupRule:
		exprs = lowerTCPPickup(r)
	case *ruleset.LogRule:
		return lowerLog(r), nil, nil // no verdict: the packet continues
	case *ruleset.CutMarkRule:
		exprs = lowerCutMark(r)
	case *ruleset.PortDispatchRule:
		return append(loadProtoPort(0, false), verdictLookup(r.Map)), nil, nil
	default:
		return nil, nil, fmt.Errorf("unknown rule shape %T", r)
	}
	ve, err := lowerVerdict(r.RuleVerdict())
	if err != nil {
		return nil, nil, err
	}
	return append(exprs, ve), anon, nil
}

// ctStateMatch matches `ct state` against any of the bits of states.
func ctStateMatch(states ruleset.CtState) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(uint32(states)), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// lowerFibLocal matches `fib saddr type local`.
func lowerFibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ndTypes are the ICMPv6 types of NDRule: router solicitation and
// advertisement, neighbour solicitation and advertisement.
var ndTypes = []byte{133, 134, 135, 136}

// anonSet is an anonymous constant set a rule needs, created in the same
// batch right before the rule.
type anonSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// lowerND matches the ICMPv6 types of ndTypes, through an anonymous set.
func lowerND() ([]expr.Any, *anonSet) {
	anon := &anonSet{set: &nftables.Set{
		Name:      "__set%d",
		Anonymous: true,
		Constant:  true,
		KeyType:   nftables.TypeICMP6Type,
	}}
	for _, t := range ndTypes {
		anon.elems = append(anon.elems, nftables.SetElement{Key: []byte{t}})
	}
	return append(nfprotoMatch(6),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		// SetID is filled in when the set gets its batch ID.
		&expr.Lookup{SourceRegister: 1, SetName: "__set%d"},
	), anon
}

// lowerDispatch looks the (masked) address, with Ports its protocol and
// port too, up in the verdict map, whose entry supplies the verdict.
func lowerDispatch(r *ruleset.DispatchRule, sets setLookup) []expr.Any {
	exprs := append(nfprotoMatch(r.Family), loadAddr(r.Family, r.Field, 1))
	if m := r.Mask(); m.IsValid() {
		mask := m.AsSlice()
		exprs = append(exprs, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))})
	}
	if r.Ports {
		_, n := addrOffset(r.Family, r.Field)
		exprs = append(exprs, loadProtoPort(int(n/4), sets(r.Map).Interval)...)
	}
	return append(exprs, verdictLookup(r.Map))
}

// lowerAllow matches, in the order of the text, the port set or literal
// port, nft's implicit meta nfproto dependency right before the first
// address, the peer set, the named-port set.
func lowerAllow(r *ruleset.AllowRule, sets setLookup) []expr.Any {
	var exprs []expr.Any
	if r.PortSet != "" {
		exprs = append(exprs, loadProtoPort(0, sets(r.PortSet).Interval)...)
		exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: r.PortSet})
	}
	if r.Proto != 0 {
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Port)},
		)
	}
	if r.Family != 0 && (r.PeerSet != "" || r.NamedPortSet != "") {
		exprs = append(exprs, nfprotoMatch(r.Family)...)
	}
	if r.PeerSet != "" {
		exprs = append(exprs,
			loadAddr(r.Family, r.PeerField, 1),
			&expr.Lookup{SourceRegister: 1, SetName: r.PeerSet})
	}
	if r.NamedPortSet != "" {
		_, n := addrOffset(r.Family, ruleset.Daddr)
		exprs = append(exprs, loadAddr(r.Family, ruleset.Daddr, 1))
		exprs = append(exprs, loadProtoPort(int(n/4), sets(r.NamedPortSet).Interval)...)
		exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: r.NamedPortSet})
	}
	return exprs
}

// lowerUnknownAddr matches an address in the pod network set and not in the
// known pods set.
func lowerUnknownAddr(r *ruleset.UnknownAddrRule) []expr.Any {
	return append(nfprotoMatch(r.Family),
		loadAddr(r.Family, r.Field, 1),
		&expr.Lookup{SourceRegister: 1, SetName: r.CIDRSet},
		loadAddr(r.Family, r.Field, 1),
		&expr.Lookup{SourceRegister: 1, SetName: r.KnownSet, Invert: true},
	)
}

// lowerCtMark sets the bits of Mark in the conntrack mark of a connection
// whose address is in the set, keeping its other bits.
func lowerCtMark(r *ruleset.CtMarkRule) []expr.Any {
	return append(nfprotoMatch(r.Family),
		loadAddr(r.Family, r.Field, 1),
		&expr.Lookup{SourceRegister: 1, SetName: r.Set},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^r.Mark), Xor: binaryutil.NativeEndian.PutUint32(r.Mark)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	)
}

// lowerCutMark matches a connection carrying every bit of Mark.
func lowerCutMark(r *ruleset.CutMarkRule) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(r.Mark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(r.Mark)},
	}
}

// lowerTCPPickup matches a TCP packet without a SYN (of fin, syn, rst and
// ack) whose address is in the set.
func lowerTCPPickup(r *ruleset.TCPPickupRule) []expr.Any {
	return append(nfprotoMatch(r.Family),
		loadAddr(r.Family, r.Field, 1),
		&expr.Lookup{SourceRegister: 1, SetName: r.Set},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0x02}},
	)
}

// keyType returns the nftables key datatype of a set.
func keyType(k ruleset.KeyType) (nftables.SetDatatype, error) {
	switch k {
	case ruleset.KeyIPv4:
		return nftables.TypeIPAddr, nil
	case ruleset.KeyIPv6:
		return nftables.TypeIP6Addr, nil
	case ruleset.KeyProtoPort:
		return nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	case ruleset.KeyIPv4ProtoPort:
		return nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	case ruleset.KeyIPv6ProtoPort:
		return nftables.ConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	}
	return nftables.TypeInvalid, fmt.Errorf("invalid key type %d", k)
}

// lowerSet returns the nftables set for s, without elements; s.Validate
// has accepted it. Concatenated interval sets get the concat flag and field
// lengths the kernel's pipapo backend needs; like nft, other
// concatenations do not.
func lowerSet(table *nftables.Table, s *ruleset.Set) (*nftables.Set, error) {
	kt, err := keyType(s.Key)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	ns := &nftables.Set{
		Table:         table,
		Name:          s.Name,
		KeyType:       kt,
		Interval:      s.Interval,
		Concatenation: s.Interval && s.Key.HasPort(),
		IsMap:         s.Map,
		Comment:       s.Comment,
		Size:          s.Size,
	}
	if !s.Key.HasPort() {
		ns.KeyByteOrder = binaryutil.BigEndian
	}
	if s.Map {
		ns.DataType = nftables.TypeVerdict
	}
	return ns, nil
}

// lowerElements encodes elements of s. For interval sets of plain addresses
// (the kernel's rbtree) a range is a start element and an interval-end
// element one past its last address (none when it ends at the last address);
// concatenated interval sets (pipapo) carry the inclusive end as KeyEnd.
func lowerElements(s *ruleset.Set, elems []ruleset.Element) ([]nftables.SetElement, error) {
	out := make([]nftables.SetElement, 0, len(elems))
	for _, e := range elems {
		start, end, err := encodeKey(s, e)
		if err != nil {
			return nil, fmt.Errorf("set %s element %s: %w", s.Name, s.ElementText(e), err)
		}
		el := nftables.SetElement{Key: start}
		if s.Interval && s.Key.HasPort() {
			el.KeyEnd = end
		}
		if s.Map {
			v, err := lowerVerdict(e.Verdict)
			if err != nil {
				return nil, fmt.Errorf("set %s element %s: %w", s.Name, s.ElementText(e), err)
			}
			el.VerdictData = v
		}
		out = append(out, el)
		if s.Interval && !s.Key.HasPort() {
			if next, ok := addrAfter(end); ok {
				out = append(out, nftables.SetElement{Key: next, IntervalEnd: true})
			}
		}
	}
	return out, nil
}

// addrAfter returns the big-endian address one past b, or false when b is
// the last address.
func addrAfter(b []byte) ([]byte, bool) {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// encodeKey returns the start and inclusive end key of e in s's layout:
// address bytes, then for port keys the protocol and the big-endian port,
// each padded to 4 bytes.
func encodeKey(s *ruleset.Set, e ruleset.Element) (start, end []byte, err error) {
	if s.Key.HasAddr() {
		from, to := e.Addr, e.AddrEnd
		if !s.Interval || !to.IsValid() {
			to = from
		}
		a, err := addrBytes(from, s.Key.Family())
		if err != nil {
			return nil, nil, err
		}
		b, err := addrBytes(to, s.Key.Family())
		if err != nil {
			return nil, nil, err
		}
		if to.Less(from) {
			return nil, nil, fmt.Errorf("range end %s before start %s", to, from)
		}
		start, end = a, b
	}
	if s.Key.HasPort() {
		if !s.Interval && e.PortEnd != e.Port {
			return nil, nil, fmt.Errorf("port range %d-%d in a set without flags interval", e.Port, e.PortEnd)
		}
		if e.PortEnd < e.Port {
			return nil, nil, fmt.Errorf("port range end %d before start %d", e.PortEnd, e.Port)
		}
		start = append(start, e.Proto, 0, 0, 0, byte(e.Port>>8), byte(e.Port), 0, 0)
		end = append(end, e.Proto, 0, 0, 0, byte(e.PortEnd>>8), byte(e.PortEnd), 0, 0)
	}
	if start == nil {
		return nil, nil, fmt.Errorf("invalid key type %d", s.Key)
	}
	return start, end, nil
}

func addrBytes(a netip.Addr, family int) ([]byte, error) {
	switch {
	case !a.IsValid():
		return nil, errors.New("missing address")
	case family == 4 && a.Is4():
		b := a.As4()
		return b[:], nil
	case family == 6 && a.Is6():
		b := a.As16()
		return b[:], nil
	}
	return nil, fmt.Errorf("address %s is not IPv%d", a, family)
}

// lowerBaseChain returns the nftables chain of a base chain.
func lowerBaseChain(table *nftables.Table, c *ruleset.Chain) (*nftables.Chain, error) {
	nc := &nftables.Chain{Table: table, Name: c.Name, Type: nftables.ChainTypeFilter}
	switch c.Base.Hook {
	case ruleset.HookInput:
		nc.Hooknum = nftables.ChainHookInput
	case ruleset.HookPostrouting:
		nc.Hooknum = nftables.ChainHookPostrouting
	default:
		return nil, fmt.Errorf("chain %s: invalid hook %d", c.Name, c.Base.Hook)
	}
	nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Base.Priority))
	var pol nftables.ChainPolicy
	switch c.Base.Policy {
	case ruleset.Accept:
		pol = nftables.ChainPolicyAccept
	case ruleset.Drop:
		pol = nftables.ChainPolicyDrop
	default:
		return nil, fmt.Errorf("chain %s: policy must be accept or drop, not %s", c.Name, ruleset.Verdict{Kind: c.Base.Policy})
	}
	nc.Policy = &pol
	return nc, nil
}
