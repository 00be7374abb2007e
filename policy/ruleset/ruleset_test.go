package ruleset

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestSortElements_PacksPlainAddressSets(t *testing.T) {
	t.Parallel()
	elems := []Element{{Addr: addr("10.0.0.9")}, {Addr: addr("10.0.0.1")}, {Addr: addr("10.0.0.9")}, {Addr: addr("10.0.1.0")}}
	s := &Set{Name: "p", Key: KeyIPv4, Elements: append([]Element(nil), elems...)}
	unpacked := &Set{Name: "p", Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.1")}, {Addr: addr("10.0.0.9")}, {Addr: addr("10.0.1.0")}}}
	s.SortElements()
	if len(s.Elements) != 0 || s.Addrs.Len() != 3 {
		t.Fatalf("after SortElements: %d in Elements, %d in Addrs; want 0 and 3 (duplicates dropped)", len(s.Elements), s.Addrs.Len())
	}
	for i, want := range []string{"10.0.0.1", "10.0.0.9", "10.0.1.0"} {
		if got := s.At(i); got != (Element{Addr: addr(want)}) {
			t.Errorf("At(%d) = %v, want %s", i, got, want)
		}
	}
	// The packed form prints as the unpacked one would.
	var a, b strings.Builder
	s.writeText(&a)
	unpacked.writeText(&b)
	if a.String() != b.String() {
		t.Errorf("packed set prints\n%s\nunpacked\n%s", a.String(), b.String())
	}

	// Appending to Elements adds; Replace replaces.
	s.Elements = append(s.Elements, Element{Addr: addr("10.0.0.5")})
	s.SortElements()
	if got := len(s.Elems()); got != 4 || s.At(1).Addr != addr("10.0.0.5") {
		t.Errorf("after an append: %v, want 4 elements with 10.0.0.5 second", s.Elems())
	}
	s.Replace([]Element{{Addr: addr("10.0.0.2")}})
	s.SortElements()
	if s.Len() != 1 || s.At(0).Addr != addr("10.0.0.2") {
		t.Errorf("after Replace: %v, want [10.0.0.2]", s.Elems())
	}

	// IPv6 packs at 16 bytes.
	s6 := &Set{Name: "p6", Key: KeyIPv6, Elements: []Element{{Addr: addr("fd00::2")}, {Addr: addr("fd00::1")}}}
	s6.SortElements()
	if s6.Addrs.Len() != 2 || s6.At(0).Addr != addr("fd00::1") || s6.At(1).Addr != addr("fd00::2") {
		t.Errorf("IPv6 set: %v", s6.Elems())
	}
}

func TestSortElements_PacksNamedPortSets(t *testing.T) {
	t.Parallel()
	np := func(a string, proto uint8, port uint16) Element {
		return Element{Addr: addr(a), Proto: proto, Port: port, PortEnd: port}
	}
	want := []Element{np("10.0.0.1", 6, 80), np("10.0.0.1", 6, 8080), np("10.0.0.1", 17, 53), np("10.0.0.2", 6, 80), np("10.0.1.0", 132, 65535)}
	in := []Element{want[3], want[2], want[4], want[0], want[3], want[1]} // shuffled, one duplicate
	s := &Set{Name: "n", Key: KeyIPv4ProtoPort, Elements: append([]Element(nil), in...)}
	unpacked := &Set{Name: "n", Key: KeyIPv4ProtoPort, Elements: append([]Element(nil), want...)}
	s.SortElements()
	if len(s.Elements) != 0 || s.Addrs.Len() != len(want) {
		t.Fatalf("after SortElements: %d in Elements, %d packed; want 0 and %d", len(s.Elements), s.Addrs.Len(), len(want))
	}
	for i, w := range want {
		if got := s.At(i); got != w {
			t.Errorf("At(%d) = %+v, want %+v", i, got, w)
		}
	}
	var a, b strings.Builder
	s.writeText(&a)
	unpacked.writeText(&b)
	if a.String() != b.String() {
		t.Errorf("packed set prints\n%s\nunpacked\n%s", a.String(), b.String())
	}
	if add, del := diffElements(unpacked, s); len(add)+len(del) != 0 {
		t.Errorf("packed and unpacked sets differ by +%v -%v", add, del)
	}
	// Appending merges with what is packed.
	s.Elements = append(s.Elements, np("10.0.0.1", 6, 81))
	s.SortElements()
	if s.Len() != len(want)+1 || s.At(1) != np("10.0.0.1", 6, 81) {
		t.Errorf("after an append: %v", s.Elems())
	}

	s6 := &Set{Name: "n6", Key: KeyIPv6ProtoPort, Elements: []Element{np("fd00::2", 6, 443), np("fd00::1", 17, 5353)}}
	s6.SortElements()
	if s6.Addrs.Len() != 2 || s6.At(0) != np("fd00::1", 17, 5353) || s6.At(1) != np("fd00::2", 6, 443) {
		t.Errorf("IPv6 named-port set: %v", s6.Elems())
	}

	// What a packed named-port element cannot be stays unpacked.
	for name, s := range map[string]*Set{
		"a port range":   {Key: KeyIPv4ProtoPort, Elements: []Element{{Addr: addr("10.0.0.1"), Proto: 6, Port: 80, PortEnd: 90}}},
		"no protocol":    {Key: KeyIPv4ProtoPort, Elements: []Element{{Addr: addr("10.0.0.1")}}},
		"an open end":    {Key: KeyIPv4ProtoPort, Elements: []Element{{Addr: addr("10.0.0.1"), Proto: 6, Port: 80}}},
		"wrong family":   {Key: KeyIPv4ProtoPort, Elements: []Element{np("fd00::1", 6, 80)}},
		"an interval":    {Key: KeyIPv4ProtoPort, Interval: true, Elements: []Element{np("10.0.0.1", 6, 80)}},
		"a verdict map":  {Key: KeyIPv4ProtoPort, Map: true, Elements: []Element{{Addr: addr("10.0.0.1"), Proto: 6, Port: 80, PortEnd: 80, Verdict: Verdict{Kind: Accept}}}},
		"an address set": {Key: KeyIPv4, Elements: []Element{np("10.0.0.1", 6, 80)}},
	} {
		before := append([]Element(nil), s.Elements...)
		s.SortElements()
		if s.Addrs.Len() != 0 || len(s.Elements) != len(before) {
			t.Errorf("%s: packed %d, kept %d of %d elements; want all kept", name, s.Addrs.Len(), len(s.Elements), len(before))
		}
	}
}

func TestSortElements_KeepsWhatCannotBePacked(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*Set{
		"wrong family": {Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.1")}, {Addr: addr("fd00::1")}}},
		"a range":      {Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.3")}}},
		"a port":       {Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.1"), Proto: 6, Port: 80, PortEnd: 80}}},
		"a verdict":    {Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.1"), Verdict: Verdict{Kind: Accept}}}},
		"a map":        {Key: KeyIPv4, Map: true, Elements: []Element{{Addr: addr("10.0.0.1"), Verdict: Verdict{Kind: Accept}}}},
		"an interval":  {Key: KeyIPv4, Interval: true, Elements: []Element{{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.3")}}},
	} {
		before := append([]Element(nil), s.Elements...)
		s.SortElements()
		if s.Addrs.Len() != 0 || len(s.Elements) != len(before) {
			t.Errorf("%s: packed %d, kept %d of %d elements; want all kept", name, s.Addrs.Len(), len(s.Elements), len(before))
		}
	}
}

func TestSortElements_UnpacksAddrsOfOtherSets(t *testing.T) {
	t.Parallel()
	l, _ := PackAddrs(4, []netip.Addr{addr("10.0.0.1")})
	s := &Set{Key: KeyIPv4, Interval: true, Addrs: l}
	s.SortElements()
	if s.Addrs.Len() != 0 || len(s.Elements) != 1 || s.Elements[0].Addr != addr("10.0.0.1") {
		t.Errorf("an interval set with Addrs: Elements %v, Addrs %d; want the address moved to Elements", s.Elements, s.Addrs.Len())
	}
}

func TestPackAddrs(t *testing.T) {
	t.Parallel()
	l, ok := PackAddrs(4, []netip.Addr{addr("10.0.0.3"), addr("fd00::1"), addr("10.0.0.1"), {}, addr("10.0.0.3")})
	if ok {
		t.Error("PackAddrs reported ok with an IPv6 and an invalid address in an IPv4 list")
	}
	if l.Len() != 2 || l.At(0) != addr("10.0.0.1") || l.At(1) != addr("10.0.0.3") {
		t.Errorf("PackAddrs = %d addresses, want 10.0.0.1 and 10.0.0.3", l.Len())
	}
	if l2, ok := PackAddrs(4, []netip.Addr{addr("10.0.0.1"), addr("10.0.0.3")}); !ok || l2 != l {
		t.Error("equal address lists do not compare equal")
	}
}

// TestMergeAddrs: the union of lists is what packing all their addresses at
// once gives, whatever the number of lists and their overlap, in both
// families; a list of the other family is reported and left out.
func TestMergeAddrs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fam := range []int{4, 6} {
		for round := range 200 {
			var all []netip.Addr
			var lists []AddrList
			for range rng.IntN(9) {
				var addrs []netip.Addr
				for range rng.IntN(20) {
					a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(3)), byte(rng.IntN(40))})
					if fam == 6 {
						a = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(rng.IntN(3)), 15: byte(rng.IntN(40))})
					}
					addrs = append(addrs, a)
				}
				all = append(all, addrs...)
				l, _ := PackAddrs(fam, addrs)
				lists = append(lists, l)
			}
			want, _ := PackAddrs(fam, all)
			got, ok := MergeAddrs(fam, lists)
			if !ok || got != want {
				t.Fatalf("family %d round %d: MergeAddrs of %d lists = %d addresses (ok %v), want %d", fam, round, len(lists), got.Len(), ok, want.Len())
			}
		}
	}
	v6, _ := PackAddrs(6, []netip.Addr{addr("fd00::1")})
	v4, _ := PackAddrs(4, []netip.Addr{addr("10.0.0.1")})
	if got, ok := MergeAddrs(4, []AddrList{v4, v6}); ok || got != v4 {
		t.Errorf("MergeAddrs with an IPv6 list in an IPv4 merge = %d addresses, ok %v; want the IPv4 list and false", got.Len(), ok)
	}
}

// TestPatchAddrs: patching a list is the set arithmetic (l minus remove)
// plus add, also where remove names addresses l lacks and add addresses l
// has, in both families.
func TestPatchAddrs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, fam := range []int{4, 6} {
		random := func() []netip.Addr {
			var out []netip.Addr
			for range rng.IntN(30) {
				a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(2)), byte(rng.IntN(50))})
				if fam == 6 {
					a = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(rng.IntN(2)), 15: byte(rng.IntN(50))})
				}
				out = append(out, a)
			}
			return out
		}
		for round := range 500 {
			base, remove, add := random(), random(), random()
			gone := map[netip.Addr]bool{}
			for _, a := range remove {
				gone[a] = true
			}
			var want []netip.Addr
			for _, a := range base {
				if !gone[a] {
					want = append(want, a)
				}
			}
			want = append(want, add...)
			wantList, _ := PackAddrs(fam, want)
			l, _ := PackAddrs(fam, base)
			r, _ := PackAddrs(fam, remove)
			a, _ := PackAddrs(fam, add)
			got, ok := PatchAddrs(l, r, a)
			if !ok || got != wantList {
				t.Fatalf("family %d round %d: PatchAddrs = %d addresses (ok %v), want %d", fam, round, got.Len(), ok, wantList.Len())
			}
		}
	}
	v4, _ := PackAddrs(4, []netip.Addr{addr("10.0.0.1")})
	v6, _ := PackAddrs(6, []netip.Addr{addr("fd00::1")})
	if got, ok := PatchAddrs(v4, AddrList{}, v6); ok || got != v4 {
		t.Error("PatchAddrs added an IPv6 list to an IPv4 one")
	}
}

func TestSizeFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want uint32
	}{
		{0, MinSetSize}, {1, MinSetSize}, {11, MinSetSize}, {12, 32}, {21, 32}, {22, 64},
		{10000, 16384}, {10923, 16384}, {10924, 32768}, {1 << 40, maxSetSize},
	} {
		if got := SizeFor(tc.n); got != tc.want {
			t.Errorf("SizeFor(%d) = %d, want %d", tc.n, got, tc.want)
		}
		if got := SizeFor(tc.n); tc.n < maxSetSize && uint64(got) < uint64(tc.n) {
			t.Errorf("SizeFor(%d) = %d holds fewer than %d", tc.n, got, tc.n)
		}
	}
}

func TestSizeSets_IntervalSetsStayUnsized(t *testing.T) {
	t.Parallel()
	r := &Ruleset{Sets: []*Set{
		{Name: "a", Key: KeyIPv4, Interval: true, Elements: []Element{{Addr: netip.MustParseAddr("10.0.0.0"), AddrEnd: netip.MustParseAddr("10.0.0.255")}}},
		{Name: "b", Key: KeyIPv4, Elements: []Element{{Addr: netip.MustParseAddr("10.0.0.1")}}},
		{Name: "c", Key: KeyProtoPort, Map: true},
	}}
	r.SizeSets()
	if got := []uint32{r.Sets[0].Size, r.Sets[1].Size, r.Sets[2].Size}; got[0] != 0 || got[1] != MinSetSize || got[2] != MinSetSize {
		t.Errorf("sizes %v, want [0 %d %d]", got, MinSetSize, MinSetSize)
	}
	if !strings.Contains(r.Text(), "\t\ttype ipv4_addr\n\t\tsize 16\n") {
		t.Errorf("text lacks the size:\n%s", r.Text())
	}
}

// TestKeepSizes: a committed size that still holds the wanted elements is
// kept (in a copy: want is not modified), one too small or far too large is
// not, and a set of another type or one without a size is left alone.
func TestKeepSizes(t *testing.T) {
	t.Parallel()
	peers := func(size uint32, n int, key KeyType) *Set {
		s := &Set{Name: "p", Key: key, Size: size}
		for i := range n {
			s.Elements = append(s.Elements, Element{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})})
		}
		return s
	}
	for _, tc := range []struct {
		name      string
		old, want *Set
		size      uint32
	}{
		{"fits", peers(64, 40, KeyIPv4), peers(16, 5, KeyIPv4), 64},
		{"outgrown", peers(16, 16, KeyIPv4), peers(32, 17, KeyIPv4), 32},
		{"far too large", peers(256, 200, KeyIPv4), peers(16, 1, KeyIPv4), 16},
		{"just large enough to keep", peers(128, 100, KeyIPv4), peers(16, 1, KeyIPv4), 128},
		{"other type", peers(64, 40, KeyIPv6), peers(16, 5, KeyIPv4), 16},
		{"committed unsized", peers(0, 40, KeyIPv4), peers(16, 5, KeyIPv4), 16},
		{"wanted unsized", peers(64, 40, KeyIPv4), peers(0, 5, KeyIPv4), 0},
	} {
		old := &Ruleset{Sets: []*Set{tc.old}}
		want := &Ruleset{Sets: []*Set{tc.want}}
		before := tc.want.Size
		got := KeepSizes(old, want)
		if s := got.Set("p"); s.Size != tc.size {
			t.Errorf("%s: size %d, want %d", tc.name, s.Size, tc.size)
		}
		if tc.want.Size != before {
			t.Errorf("%s: want modified", tc.name)
		}
		if (got == want) != (tc.size == before) {
			t.Errorf("%s: returned want itself = %v, though the size went %d -> %d", tc.name, got == want, before, tc.size)
		}
	}
}
