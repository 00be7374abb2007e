// Package ruleset owns the plain-data description of the nftables state policyd
// programs on one node: one inet table, its sets, verdict maps and chains, and a
// small closed set of rule shapes.
//
// A Ruleset is produced by policy/compile, held to the contract its shapes
// state (Check) and printed as `nft -f` text here, diffed into a Plan here,
// lowered to netlink by policy/nft and walked by policy/trace. Nothing in
// this package talks to the kernel.
package ruleset

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/policyd/policyd/policy/decider"
)

// TableName is the name of the inet table policyd owns. policyd never touches
// any other table.
const TableName = "policyd"

// Ruleset is the whole state of policyd's table.
type Ruleset struct {
	// Sets holds sets and verdict maps, sorted by name.
	Sets []*Set
	// Chains holds base and regular chains, sorted by name.
	Chains []*Chain
	// Limits holds the named limit objects, sorted by name.
	Limits []*Limit
	// Deciders maps the id every LogRule carries as its prefix to what it
	// stands for, its rule's name included (compile writes it). It is
	// metadata: it is neither printed, diffed nor written, and ids are
	// content hashes (of decider.Decider.Key), so one id means one decider
	// in every Ruleset.
	Deciders map[string]decider.Decider
}

// Set returns the set or map called name, or nil.
func (r *Ruleset) Set(name string) *Set {
	i := sort.Search(len(r.Sets), func(i int) bool { return r.Sets[i].Name >= name })
	if i < len(r.Sets) && r.Sets[i].Name == name {
		return r.Sets[i]
	}
	return nil
}

// Chain returns the chain called name, or nil.
func (r *Ruleset) Chain(name string) *Chain {
	i := sort.Search(len(r.Chains), func(i int) bool { return r.Chains[i].Name >= name })
	if i < len(r.Chains) && r.Chains[i].Name == name {
		return r.Chains[i]
	}
	return nil
}

// Limit returns the limit object called name, or nil.
func (r *Ruleset) Limit(name string) *Limit {
	for _, l := range r.Limits {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Sort puts sets, chains and set elements in canonical order. Compile calls it;
// anything that builds a Ruleset by hand must too.
func (r *Ruleset) Sort() {
	sort.Slice(r.Sets, func(i, j int) bool { return r.Sets[i].Name < r.Sets[j].Name })
	sort.Slice(r.Chains, func(i, j int) bool { return r.Chains[i].Name < r.Chains[j].Name })
	sort.Slice(r.Limits, func(i, j int) bool { return r.Limits[i].Name < r.Limits[j].Name })
	for _, s := range r.Sets {
		s.SortElements()
	}
}

// KeyType is the key type of a set or map. The zero value is invalid.
type KeyType uint8

// Key types.
const (
	KeyInvalid KeyType = iota
	// KeyIPv4 is ipv4_addr.
	KeyIPv4
	// KeyIPv6 is ipv6_addr.
	KeyIPv6
	// KeyProtoPort is inet_proto . inet_service (with flags interval when it
	// holds a range or a protocol-wide entry, a hash set otherwise).
	KeyProtoPort
	// KeyIPv4ProtoPort is ipv4_addr . inet_proto . inet_service.
	KeyIPv4ProtoPort
	// KeyIPv6ProtoPort is ipv6_addr . inet_proto . inet_service.
	KeyIPv6ProtoPort
)

// NftType returns the nft type expression for the key.
func (k KeyType) NftType() string {
	switch k {
	case KeyIPv4:
		return "ipv4_addr"
	case KeyIPv6:
		return "ipv6_addr"
	case KeyProtoPort:
		return "inet_proto . inet_service"
	case KeyIPv4ProtoPort:
		return "ipv4_addr . inet_proto . inet_service"
	case KeyIPv6ProtoPort:
		return "ipv6_addr . inet_proto . inet_service"
	}
	return "invalid"
}

// HasAddr reports whether the key starts with an address.
func (k KeyType) HasAddr() bool { return k != KeyProtoPort && k != KeyInvalid }

// HasPort reports whether the key has a protocol and port.
func (k KeyType) HasPort() bool {
	return k == KeyProtoPort || k == KeyIPv4ProtoPort || k == KeyIPv6ProtoPort
}

// Family returns 4 or 6 for address keys, 0 otherwise.
func (k KeyType) Family() int {
	switch k {
	case KeyIPv4, KeyIPv4ProtoPort:
		return 4
	case KeyIPv6, KeyIPv6ProtoPort:
		return 6
	}
	return 0
}

// AddrBits returns the length of an address of family fam (4 or 6), in bits.
func AddrBits(fam int) int {
	if fam == 6 {
		return 128
	}
	return 32
}

// AddrKey returns the address key of family fam (4 or 6).
func AddrKey(fam int) KeyType {
	if fam == 6 {
		return KeyIPv6
	}
	return KeyIPv4
}

// AddrProtoPortKey returns the address . inet_proto . inet_service key of
// family fam (4 or 6).
func AddrProtoPortKey(fam int) KeyType {
	if fam == 6 {
		return KeyIPv6ProtoPort
	}
	return KeyIPv4ProtoPort
}

// Set is a named set or, when Map is true, a verdict map (key : verdict).
type Set struct {
	Name string
	Key  KeyType
	// Interval sets hold ranges (ipBlocks, port ranges).
	Interval bool
	// Map makes this a verdict map.
	Map bool
	// Comment says what the set is for (a peer selector, an ipBlock, …).
	Comment string
	// Elements, sorted by SortElements. A plain address set (KeyIPv4 or
	// KeyIPv6, neither interval nor map) keeps its elements in Addrs
	// instead, packed at 4 or 16 bytes an address rather than an Element's
	// 80: peer sets hold most of a node's elements. So does a plain
	// named-port set (address . protocol . port, neither interval nor
	// map), at 7 or 19 bytes an element: one that egress rules use lists
	// every pod of the cluster that resolves the name. SortElements moves
	// them there; Len, At and Elems read either form.
	Elements []Element
	// Addrs holds a packed set's elements; see Elements.
	Addrs AddrList
	// Size, when not 0, is the most elements the kernel set is created to
	// hold (NFTA_SET_DESC_SIZE). A sized set that is not an interval set
	// gets the kernel's fixed-size hash (nft_hash; nft_hash_fast for a
	// 4-byte key), whose lookup costs a judged packet less than the
	// resizable rhashtable an unsized one gets (BENCHMARKS.md). The kernel
	// refuses an element beyond the size, so Diff recreates a set whose
	// size changed, and KeepSizes keeps a committed size that still fits.
	// Interval sets stay unsized: the kernel sizes their trees itself.
	Size uint32
}

// MinSetSize is the smallest size SizeFor gives.
const MinSetSize = 16

// maxSetSize bounds SizeFor (a power of two the u32 attribute holds).
const maxSetSize = 1 << 31

// SizeFor returns the size a hash set of n elements is created with: room
// for half as many again, rounded up to a power of two and at least
// MinSetSize. A set grows by recreation only when it outgrows that, at most
// once per doubling of its elements; the kernel hash's buckets (about 1.3 a
// slot) cost 8 bytes each.
func SizeFor(n int) uint32 {
	want := uint64(n) + uint64(n)/2
	size := uint64(MinSetSize)
	for size < want && size < maxSetSize {
		size <<= 1
	}
	return uint32(size)
}

// SizeSets gives every set that is not an interval set the size SizeFor
// its elements, and interval sets none. The compiler calls it last, so
// that a ruleset's text and its netlink form create the same sets.
func (r *Ruleset) SizeSets() {
	for _, s := range r.Sets {
		s.Size = 0
		if !s.Interval {
			s.Size = SizeFor(s.Len())
		}
	}
}

// KeepSizes returns want with the sizes of the sets committed in old kept
// wherever they still fit: a set of the same name and type whose committed
// size holds want's elements, and is not more than shrinkFactor times what
// SizeFor would give, keeps it, so that a pod joining or leaving a set
// near a power of two does not recreate it. want is not modified: sets
// whose size changes are copied (their elements are shared), and want
// itself is returned when none does. The Backend syncs the result and keeps
// it as the kernel's state.
func KeepSizes(old, want *Ruleset) *Ruleset {
	if old == nil || want == nil {
		return want
	}
	var out *Ruleset
	for i, s := range want.Sets {
		o := old.Set(s.Name)
		if o == nil || o.Size == s.Size || s.Size == 0 || o.Size == 0 || !sameSetType(o, s) {
			continue
		}
		n := s.Len()
		if uint64(o.Size) < uint64(n) || uint64(o.Size) > shrinkFactor*uint64(SizeFor(n)) {
			continue
		}
		if out == nil {
			cp := *want
			cp.Sets = slices.Clone(want.Sets)
			out = &cp
		}
		kept := *s
		kept.Size = o.Size
		out.Sets[i] = &kept
	}
	if out == nil {
		return want
	}
	return out
}

// shrinkFactor is how many times larger than SizeFor a committed size may
// be and still be kept (KeepSizes): a set that lost most of its elements is
// recreated smaller.
const shrinkFactor = 8

// Packed reports whether s is a plain address or named-port set, whose
// elements SortElements keeps in Addrs.
func (s *Set) Packed() bool {
	switch s.Key {
	case KeyIPv4, KeyIPv6, KeyIPv4ProtoPort, KeyIPv6ProtoPort:
		return !s.Interval && !s.Map
	}
	return false
}

// Len returns the number of elements.
func (s *Set) Len() int { return len(s.Elements) + s.Addrs.Len() }

// At returns element i, 0 <= i < Len(): those in Elements first, then those
// in Addrs (only one of them is non-empty once sorted).
func (s *Set) At(i int) Element {
	if i < len(s.Elements) {
		return s.Elements[i]
	}
	i -= len(s.Elements)
	e := Element{Addr: s.Addrs.At(i)}
	if s.Addrs.ported {
		e.Proto, e.Port = s.Addrs.ProtoPort(i)
		e.PortEnd = e.Port
	}
	return e
}

// Replace makes elems the set's elements, dropping those in either form;
// assigning to Elements alone would keep those already packed in Addrs.
func (s *Set) Replace(elems []Element) {
	s.Elements, s.Addrs = elems, AddrList{}
}

// Elems returns every element as a new slice.
func (s *Set) Elems() []Element {
	out := make([]Element, s.Len())
	for i := range out {
		out[i] = s.At(i)
	}
	return out
}

// AddrList is an immutable, sorted list of distinct addresses of one
// family, packed: 4 bytes an IPv4 address, 16 an IPv6 one. Being immutable,
// one list is shared by the rulesets of successive syncs. A ported list
// (PackAddrPorts) holds a protocol and a port after each address, 3 bytes
// more, and is sorted and distinct by address, protocol and port.
type AddrList struct {
	v6     bool
	ported bool
	data   string
}

// stride is the bytes an entry takes.
func (l AddrList) stride() int {
	n := 4
	if l.v6 {
		n = 16
	}
	if l.ported {
		n += 3
	}
	return n
}

// PackAddrPorts returns the elements (address, protocol, port) of family
// fam (4 or 6) among elems as a ported list, sorted, without duplicates. It
// reports false if elems holds an element of another family, an address
// range or a port range, which it leaves out.
func PackAddrPorts(fam int, elems []Element) (AddrList, bool) {
	if !slices.IsSortedFunc(elems, CompareAddrPort) {
		elems = slices.SortedFunc(slices.Values(elems), CompareAddrPort)
	}
	l := AddrList{v6: fam == 6, ported: true}
	var buf strings.Builder
	buf.Grow(len(elems) * l.stride())
	ok := true
	var last Element
	for i, e := range elems {
		if !e.Addr.IsValid() || e.Addr.Is4() != (fam == 4) || e.AddrEnd.IsValid() || (e.PortEnd != e.Port && e.PortEnd != 0) {
			ok = false
			continue
		}
		if i > 0 && CompareAddrPort(e, last) == 0 {
			continue
		}
		last = e
		writeAddr(&buf, e.Addr)
		buf.WriteByte(e.Proto)
		buf.WriteByte(byte(e.Port >> 8))
		buf.WriteByte(byte(e.Port))
	}
	l.data = buf.String()
	return l, ok
}

// CompareAddrPort orders elements by address, protocol and port: the order
// of Element.Less for elements that are one address, protocol and port.
func CompareAddrPort(a, b Element) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
}

// writeAddr appends a's 4 or 16 bytes.
func writeAddr(b *strings.Builder, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		b.Write(v[:])
		return
	}
	v := a.As16()
	b.Write(v[:])
}

// ProtoPort returns the protocol and port of entry i of a ported list.
func (l AddrList) ProtoPort(i int) (proto uint8, port uint16) {
	n := l.stride()
	e := l.data[n*i+n-3 : n*i+n]
	return e[0], uint16(e[1])<<8 | uint16(e[2])
}

// PackAddrs returns the addresses of family fam (4 or 6) among addrs,
// sorted, without duplicates. It reports false if addrs holds an address of
// another family (or an invalid one), which it leaves out.
func PackAddrs(fam int, addrs []netip.Addr) (AddrList, bool) {
	size := 4
	if fam == 6 {
		size = 16
	}
	sorted := slices.IsSortedFunc(addrs, netip.Addr.Compare)
	if !sorted {
		addrs = slices.SortedFunc(slices.Values(addrs), netip.Addr.Compare)
	}
	var buf strings.Builder
	buf.Grow(len(addrs) * size)
	ok := true
	var last netip.Addr
	for i, a := range addrs {
		if !a.IsValid() || (a.Is4() != (fam == 4)) {
			ok = false
			continue
		}
		if i > 0 && a == last {
			continue
		}
		last = a
		writeAddr(&buf, a)
	}
	return AddrList{v6: fam == 6, data: buf.String()}, ok
}

// MergeAddrs returns the union of plain (not ported) lists of family fam
// (4 or 6), sorted, without duplicates. It reports false, leaving the list
// out, for a list of another family or a ported one. A single list is
// returned as it is: lists are immutable, so the result may share it.
func MergeAddrs(fam int, lists []AddrList) (AddrList, bool) {
	ok := true
	parts := make([]string, 0, len(lists))
	for _, l := range lists {
		if l.v6 != (fam == 6) || l.ported {
			ok = false
			continue
		}
		if len(l.data) > 0 {
			parts = append(parts, l.data)
		}
	}
	size := AddrList{v6: fam == 6}.stride()
	// Merge neighbours pairwise until one is left: every byte is copied
	// once per level, log2(len(parts)) levels.
	for len(parts) > 1 {
		next := parts[:0]
		for i := 0; i < len(parts); i += 2 {
			if i+1 == len(parts) {
				next = append(next, parts[i])
				continue
			}
			next = append(next, mergePacked(parts[i], parts[i+1], size))
		}
		parts = next
	}
	l := AddrList{v6: fam == 6}
	if len(parts) == 1 {
		l.data = parts[0]
	}
	return l, ok
}

// PatchAddrs returns (l minus remove) plus add, for plain lists of one
// family: the union of a peer's parts after some parts changed, in time
// linear in the bytes of l (copied in runs) and n log n in the entries of
// remove and add. It reports false, returning l, when the lists are not all
// plain lists of l's family.
func PatchAddrs(l, remove, add AddrList) (AddrList, bool) {
	for _, o := range []AddrList{remove, add} {
		if o.ported || l.ported || (o.v6 != l.v6 && len(o.data) > 0) {
			return l, false
		}
	}
	size := l.stride()
	var buf strings.Builder
	buf.Grow(len(l.data) + len(add.data))
	data, r, a := l.data, remove.data, add.data
	for len(r) > 0 || len(a) > 0 {
		k := a
		if len(a) == 0 || (len(r) > 0 && r[:size] <= a[:size]) {
			k = r
		}
		k = k[:size]
		i := sort.Search(len(data)/size, func(i int) bool { return data[i*size:i*size+size] >= k })
		buf.WriteString(data[:i*size])
		data = data[i*size:]
		inL := len(data) > 0 && data[:size] == k
		inR := len(r) > 0 && r[:size] == k
		inA := len(a) > 0 && a[:size] == k
		if inL {
			data = data[size:]
		}
		if inR {
			r = r[size:]
		}
		if inA {
			a = a[size:]
		}
		if inA || (inL && !inR) {
			buf.WriteString(k)
		}
	}
	buf.WriteString(data)
	return AddrList{v6: l.v6, data: buf.String()}, true
}

// mergePacked merges two sorted, distinct lists of size-byte big-endian
// entries, dropping an entry both hold. Comparing the entries as strings is
// comparing the addresses.
func mergePacked(a, b string, size int) string {
	var buf strings.Builder
	buf.Grow(len(a) + len(b))
	for len(a) > 0 && len(b) > 0 {
		x, y := a[:size], b[:size]
		switch {
		case x < y:
			buf.WriteString(x)
			a = a[size:]
		case y < x:
			buf.WriteString(y)
			b = b[size:]
		default:
			buf.WriteString(x)
			a, b = a[size:], b[size:]
		}
	}
	buf.WriteString(a)
	buf.WriteString(b)
	return buf.String()
}

// Len returns the number of entries.
func (l AddrList) Len() int { return len(l.data) / l.stride() }

// Contains reports whether an entry of address a is in the list, by binary
// search: PackAddrs and PackAddrPorts keep the list sorted by address.
func (l AddrList) Contains(a netip.Addr) bool {
	if a.Is4() == l.v6 {
		return false
	}
	n := l.Len()
	i := sort.Search(n, func(i int) bool { return l.At(i).Compare(a) >= 0 })
	return i < n && l.At(i) == a
}

// At returns the address of entry i.
func (l AddrList) At(i int) netip.Addr {
	n := l.stride()
	if l.v6 {
		var b [16]byte
		copy(b[:], l.data[n*i:n*i+16])
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	copy(b[:], l.data[n*i:n*i+4])
	return netip.AddrFrom4(b)
}

// Element is one set element or map entry. Which fields are used depends on
// the set's KeyType; ranges are inclusive and only used in interval sets.
type Element struct {
	Addr    netip.Addr
	AddrEnd netip.Addr // interval sets only; equal to Addr for a single address
	Proto   uint8
	Port    uint16
	PortEnd uint16 // equal to Port for a single port
	// Verdict is the value of a map entry.
	Verdict Verdict
}

// SortElements sorts elements by key. An already sorted list is left as it
// is (compile reuses element lists across rulesets, so they must not be
// written to once shared).
//
// A plain address set's Elements move into Addrs (merged with any already
// there), unless one of them is not a lone address of the set's family:
// then all stay in Elements, so nothing is lost or changed.
func (s *Set) SortElements() {
	if s.Packed() && len(s.Elements) > 0 && s.packable() {
		if s.Key.HasPort() {
			elems := s.Elements
			if s.Addrs.Len() > 0 {
				elems = s.Elems()
			} else if !slices.IsSortedFunc(elems, CompareAddrPort) {
				slices.SortFunc(elems, CompareAddrPort) // unsorted: not shared (see above)
			}
			s.Addrs, _ = PackAddrPorts(s.Key.Family(), elems)
			s.Elements = nil
			return
		}
		addrs := make([]netip.Addr, 0, s.Len())
		for i := range s.Len() {
			addrs = append(addrs, s.At(i).Addr)
		}
		s.Addrs, _ = PackAddrs(s.Key.Family(), addrs)
		s.Elements = nil
		return
	}
	if s.Addrs.Len() > 0 && (len(s.Elements) > 0 || !s.Packed()) {
		// Elements that cannot be packed, or a set that is not a plain
		// address or named-port set: Addrs is only used for those.
		s.Elements, s.Addrs = s.Elems(), AddrList{}
	}
	less := func(i, j int) bool { return s.Elements[i].Less(s.Elements[j]) }
	if !sort.SliceIsSorted(s.Elements, less) {
		sort.Slice(s.Elements, less)
	}
}

// packable reports whether every element of s.Elements is what a packed
// set holds: a lone address of s's family, with one protocol and port in a
// named-port set.
func (s *Set) packable() bool {
	fam := s.Key.Family()
	ported := s.Key.HasPort()
	for _, e := range s.Elements {
		if !e.Addr.IsValid() || e.Addr.Is4() != (fam == 4) || e.AddrEnd.IsValid() || e.Verdict != (Verdict{}) {
			return false
		}
		// A named-port element is one protocol and one port (At gives it
		// back with PortEnd equal to Port); an address element has none.
		if ported && (e.Proto == 0 || e.PortEnd != e.Port) || !ported && (e.Proto != 0 || e.Port != 0 || e.PortEnd != 0) {
			return false
		}
	}
	return true
}

// Less orders elements by address, protocol, then port.
func (e Element) Less(o Element) bool {
	if c := e.Addr.Compare(o.Addr); c != 0 {
		return c < 0
	}
	if c := e.AddrEnd.Compare(o.AddrEnd); c != 0 {
		return c < 0
	}
	if e.Proto != o.Proto {
		return e.Proto < o.Proto
	}
	if e.Port != o.Port {
		return e.Port < o.Port
	}
	return e.PortEnd < o.PortEnd
}

// Hook is a netfilter hook. The zero value is invalid.
type Hook uint8

// Hooks policyd uses.
const (
	HookInvalid Hook = iota
	HookPostrouting
	HookInput
)

// String returns the nft name of the hook.
func (h Hook) String() string {
	switch h {
	case HookPostrouting:
		return "postrouting"
	case HookInput:
		return "input"
	}
	return "invalid"
}

// Base describes a base chain. Base chains are static: declared by compile as
// data, created once, and never deleted during a sync.
type Base struct {
	Hook     Hook
	Priority int32
	// Policy is the chain policy; Accept: policyd only drops what a policy
	// denies and leaves everything else to the CNI and other tables.
	Policy VerdictKind
}

// Chain is a chain and its ordered rules. Regular chains have content-derived
// names, so two chains with the same name have the same rules.
type Chain struct {
	Name  string
	Base  *Base // nil for a regular chain
	Rules []Rule
}

// VerdictKind is a verdict. The zero value is invalid.
type VerdictKind uint8

// Verdicts.
const (
	VerdictInvalid VerdictKind = iota
	Accept
	Drop
	Return
	Jump
	// Goto continues in the target chain and does not come back: a return
	// there returns to the chain that jumped to the goto's chain.
	Goto
)

// Verdict is a verdict with its target chain for Jump.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

// String renders the verdict as nft text.
func (v Verdict) String() string {
	switch v.Kind {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Return:
		return "return"
	case Jump:
		return "jump " + v.Chain
	case Goto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("invalid-verdict(%d)", v.Kind)
}

// Field selects the source or destination address of a packet.
type Field uint8

// Fields. The zero value is invalid.
const (
	FieldInvalid Field = iota
	Saddr
	Daddr
)

// String returns "saddr" or "daddr".
func (f Field) String() string {
	switch f {
	case Saddr:
		return "saddr"
	case Daddr:
		return "daddr"
	}
	return "invalid"
}

// CtState is a bit set of conntrack states, with the kernel's bit values.
type CtState uint32

// Conntrack states (NF_CT_STATE_* bits).
const (
	CtInvalid     CtState = 1
	CtEstablished CtState = 2
	CtRelated     CtState = 4
	CtNew         CtState = 8
	CtUntracked   CtState = 64
)
