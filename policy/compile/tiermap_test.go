package compile

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/policy/ruleset"
)

var (
	vDrop   = ruleset.Verdict{Kind: ruleset.Drop}
	vAccept = ruleset.Verdict{Kind: ruleset.Accept}
	vGoto   = ruleset.Verdict{Kind: ruleset.Goto, Chain: "next"}
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestFirstMatchAddrs: a point inside an earlier range keeps the range's
// verdict; a point before a later range cuts it; adjacent pieces of one
// verdict merge.
func TestFirstMatchAddrs(t *testing.T) {
	t.Parallel()
	boxes := []tierBox{
		{lo: addr("10.0.0.0"), hi: addr("10.0.0.255"), order: 0}, // drop 10.0.0.0/24
		{lo: addr("10.0.0.7"), hi: addr("10.0.0.7"), order: 1},   // accept, shadowed
		{lo: addr("10.0.1.5"), hi: addr("10.0.1.5"), order: 1},   // accept
		{lo: addr("10.0.1.0"), hi: addr("10.0.1.255"), order: 2}, // goto, cut around .5
		{lo: addr("10.0.2.0"), hi: addr("10.0.2.255"), order: 2}, // goto, merges with the above
		{lo: addr("10.0.0.128"), hi: addr("10.0.1.3"), order: 3}, // goto where nothing earlier covers
	}
	got := firstMatchAddrs(boxes, []ruleset.Verdict{vDrop, vAccept, vGoto, vGoto})
	want := []ruleset.Element{
		{Addr: addr("10.0.0.0"), AddrEnd: addr("10.0.0.255"), Verdict: vDrop},
		{Addr: addr("10.0.1.0"), AddrEnd: addr("10.0.1.4"), Verdict: vGoto},
		{Addr: addr("10.0.1.5"), AddrEnd: addr("10.0.1.5"), Verdict: vAccept},
		{Addr: addr("10.0.1.6"), AddrEnd: addr("10.0.2.255"), Verdict: vGoto},
	}
	assert.Equal(t, want, got)
}

// TestFirstMatchPorts: per address and protocol, the first box covering a
// port decides; boxes of other protocols do not interfere; addresses cut
// the same way merge.
func TestFirstMatchPorts(t *testing.T) {
	t.Parallel()
	boxes := []tierBox{
		{lo: addr("10.0.0.1"), hi: addr("10.0.0.1"), proto: 6, plo: 80, phi: 80, order: 0},
		{lo: addr("10.0.0.0"), hi: addr("10.0.0.3"), proto: 6, plo: 0, phi: 65535, order: 1},
		{lo: addr("10.0.0.0"), hi: addr("10.0.0.3"), proto: 17, plo: 53, phi: 53, order: 2},
	}
	got := firstMatchPorts(boxes, []ruleset.Verdict{vAccept, vDrop, vGoto})
	want := []ruleset.Element{
		{Addr: addr("10.0.0.0"), AddrEnd: addr("10.0.0.0"), Proto: 6, Port: 0, PortEnd: 65535, Verdict: vDrop},
		{Addr: addr("10.0.0.0"), AddrEnd: addr("10.0.0.0"), Proto: 17, Port: 53, PortEnd: 53, Verdict: vGoto},
		{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.1"), Proto: 6, Port: 0, PortEnd: 79, Verdict: vDrop},
		{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.1"), Proto: 6, Port: 80, PortEnd: 80, Verdict: vAccept},
		{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.1"), Proto: 6, Port: 81, PortEnd: 65535, Verdict: vDrop},
		{Addr: addr("10.0.0.1"), AddrEnd: addr("10.0.0.1"), Proto: 17, Port: 53, PortEnd: 53, Verdict: vGoto},
		{Addr: addr("10.0.0.2"), AddrEnd: addr("10.0.0.3"), Proto: 6, Port: 0, PortEnd: 65535, Verdict: vDrop},
		{Addr: addr("10.0.0.2"), AddrEnd: addr("10.0.0.3"), Proto: 17, Port: 53, PortEnd: 53, Verdict: vGoto},
	}
	assert.Equal(t, want, got)
}

// TestFirstMatch_EqualsRuleOrder checks both layouts against the rules'
// meaning on random boxes: for every address, protocol and port probed, the
// map's element (at most one: they are disjoint) carries the verdict of the
// first box that covers the key, and no element exists where no box does.
func TestFirstMatch_EqualsRuleOrder(t *testing.T) {
	t.Parallel()
	verdicts := []ruleset.Verdict{vDrop, vAccept, vGoto, {Kind: ruleset.Goto, Chain: "log-x"}, vDrop, vAccept}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		var boxes []tierBox
		for range 1 + rng.IntN(12) {
			lo := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(40))})
			hi := lo
			if rng.IntN(3) == 0 {
				hi = netip.AddrFrom4([4]byte{10, 0, 0, byte(min(255, int(lo.As4()[3])+rng.IntN(20)))})
			}
			plo := uint16(rng.IntN(20))
			boxes = append(boxes, tierBox{lo: lo, hi: hi, proto: []uint8{6, 17}[rng.IntN(2)], plo: plo, phi: plo + uint16(rng.IntN(8)), order: rng.IntN(len(verdicts))})
		}
		ported := firstMatchPorts(boxes, verdicts)
		flat := firstMatchAddrs(boxes, verdicts)
		for a := range 64 {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(a)})
			// Address-keyed: the first box covering the address.
			want, ok := firstCovering(boxes, func(b tierBox) bool { return inBox(b, ip) })
			got, found := lookup(flat, func(e ruleset.Element) bool { return inRange(e, ip) })
			require.Equal(t, ok, found, "seed %d %s: covered %v, element %v", seed, ip, ok, found)
			if ok {
				require.Equal(t, verdicts[want], got, "seed %d %s", seed, ip)
			}
			for _, proto := range []uint8{6, 17} {
				for port := range uint16(30) {
					want, ok := firstCovering(boxes, func(b tierBox) bool {
						return inBox(b, ip) && b.proto == proto && port >= b.plo && port <= b.phi
					})
					got, found := lookup(ported, func(e ruleset.Element) bool {
						return inRange(e, ip) && e.Proto == proto && port >= e.Port && port <= e.PortEnd
					})
					require.Equal(t, ok, found, "seed %d %s %d/%d", seed, ip, proto, port)
					if ok {
						require.Equal(t, verdicts[want], got, "seed %d %s %d/%d", seed, ip, proto, port)
					}
				}
			}
		}
	}
}

func inBox(b tierBox, a netip.Addr) bool { return b.lo.Compare(a) <= 0 && a.Compare(b.hi) <= 0 }

func inRange(e ruleset.Element, a netip.Addr) bool {
	return e.Addr.Compare(a) <= 0 && a.Compare(e.AddrEnd) <= 0
}

// firstCovering returns the order of the first box (lowest order) covering
// a key.
func firstCovering(boxes []tierBox, covers func(tierBox) bool) (int, bool) {
	best := -1
	for _, b := range boxes {
		if covers(b) && (best < 0 || b.order < best) {
			best = b.order
		}
	}
	return best, best >= 0
}

// lookup returns the verdict of the one element matching, failing on two.
func lookup(elems []ruleset.Element, match func(ruleset.Element) bool) (ruleset.Verdict, bool) {
	var v ruleset.Verdict
	n := 0
	for _, e := range elems {
		if match(e) {
			v = e.Verdict
			n++
		}
	}
	if n > 1 {
		panic("overlapping elements")
	}
	return v, n == 1
}

// TestFirstMatchPoints_EqualsRuleOrder: with every box a point (pods or
// nodes on single ports), each point of the exact map carries the verdict
// of the first box at it, and no point outside the boxes is in the map;
// elements are sorted and unique, as a set without intervals needs.
func TestFirstMatchPoints_EqualsRuleOrder(t *testing.T) {
	t.Parallel()
	verdicts := []ruleset.Verdict{vDrop, vAccept, vGoto, {Kind: ruleset.Goto, Chain: "log-x"}, vDrop, vAccept}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 13))
		var boxes []tierBox
		for range 1 + rng.IntN(20) {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(16))})
			port := uint16(rng.IntN(6))
			boxes = append(boxes, tierBox{lo: a, hi: a, proto: []uint8{6, 17}[rng.IntN(2)], plo: port, phi: port, order: rng.IntN(len(verdicts))})
		}
		elems := firstMatchPoints(boxes, verdicts)
		for i := 1; i < len(elems); i++ {
			p, e := elems[i-1], elems[i]
			require.True(t, p.Addr.Less(e.Addr) || p.Addr == e.Addr && (p.Proto < e.Proto || p.Proto == e.Proto && p.Port < e.Port), "seed %d: elements %d and %d out of order or repeated", seed, i-1, i)
		}
		for a := range 20 {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(a)})
			for _, proto := range []uint8{6, 17} {
				for port := range uint16(8) {
					want, ok := firstCovering(boxes, func(b tierBox) bool { return b.lo == ip && b.proto == proto && b.plo == port })
					got, found := lookup(elems, func(e ruleset.Element) bool {
						return e.Addr == ip && !e.AddrEnd.IsValid() && e.Proto == proto && e.Port == port && e.PortEnd == port
					})
					require.Equal(t, ok, found, "seed %d %s %d/%d", seed, ip, proto, port)
					if ok {
						require.Equal(t, verdicts[want], got, "seed %d %s %d/%d", seed, ip, proto, port)
					}
				}
			}
		}
	}
}
