package compile

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
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

// TestFirstMatchPrefixes_EqualsRuleOrder: on random CIDRs of at most three
// lengths (a /0 among them at times), looking an address up masked to each
// length, longest first, finds the verdict of the first rule whose prefix
// covers it, and nothing where none does; every list is sorted and unique.
func TestFirstMatchPrefixes_EqualsRuleOrder(t *testing.T) {
	t.Parallel()
	verdicts := []ruleset.Verdict{vDrop, vAccept, vGoto, {Kind: ruleset.Goto, Chain: "log-x"}, vDrop, vAccept}
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 17))
		pool := []int{0, 24, 25, 27, 28, 30, 31, 32}
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		lens := slices.Clone(pool[:1+rng.IntN(3)])
		slices.SortFunc(lens, func(a, b int) int { return b - a })
		var claims []prefixClaim
		for range 1 + rng.IntN(16) {
			l := lens[rng.IntN(len(lens))]
			a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(2)), byte(rng.IntN(256))})
			claims = append(claims, prefixClaim{netip.PrefixFrom(a, l).Masked(), rng.IntN(len(verdicts))})
		}
		elems, err := firstMatchPrefixes(claims, lens, verdicts)
		require.NoError(t, err)
		require.Len(t, elems, len(lens))
		for i, l := range lens {
			for j, e := range elems[i] {
				p, _ := e.Addr.Prefix(l)
				require.Equal(t, p.Addr(), e.Addr, "seed %d: %s in the /%d map has host bits", seed, e.Addr, l)
				require.True(t, j == 0 || elems[i][j-1].Addr.Less(e.Addr), "seed %d: /%d map out of order or repeated at %d", seed, l, j)
			}
		}
		for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(256))}), netip.AddrFrom4([4]byte{10, 0, 1, byte(rng.IntN(256))}), addr("192.168.0.1")} {
			want, ok := -1, false
			for _, c := range claims {
				if c.prefix.Contains(a) && (!ok || c.order < want) {
					want, ok = c.order, true
				}
			}
			var got ruleset.Verdict
			found := false
			for i, l := range lens {
				m, _ := a.Prefix(l)
				if v, hit := lookup(elems[i], func(e ruleset.Element) bool { return e.Addr == m.Addr() }); hit {
					got, found = v, true
					break
				}
			}
			require.Equal(t, ok, found, "seed %d %s: covered %v, found %v (lens %v, claims %v)", seed, a, ok, found, lens, claims)
			if ok {
				require.Equal(t, verdicts[want], got, "seed %d %s (lens %v, claims %v)", seed, a, lens, claims)
			}
		}
	}
	_, err := firstMatchPrefixes([]prefixClaim{{netip.MustParsePrefix("10.0.0.0/16"), 0}}, []int{24}, verdicts)
	require.Error(t, err, "a prefix of a length the rules did not give")
}

// TestRangeCIDRs: a range is cut into the fewest CIDRs, in order, that
// cover it exactly, up to the end of the address space.
func TestRangeCIDRs(t *testing.T) {
	t.Parallel()
	pfx := netip.MustParsePrefix
	assert.Equal(t, []netip.Prefix{pfx("10.0.0.0/24")}, rangeCIDRs(addr("10.0.0.0"), addr("10.0.0.255")))
	assert.Equal(t, []netip.Prefix{pfx("10.0.0.1/32"), pfx("10.0.0.2/31"), pfx("10.0.0.4/30"), pfx("10.0.0.8/32")}, rangeCIDRs(addr("10.0.0.1"), addr("10.0.0.8")))
	assert.Equal(t, []netip.Prefix{pfx("0.0.0.0/0")}, rangeCIDRs(addr("0.0.0.0"), addr("255.255.255.255")))
	assert.Equal(t, []netip.Prefix{pfx("255.255.255.254/31")}, rangeCIDRs(addr("255.255.255.254"), addr("255.255.255.255")))
	assert.Equal(t, []netip.Prefix{pfx("fd00::/127"), pfx("fd00::2/128")}, rangeCIDRs(addr("fd00::"), addr("fd00::2")))
	// The except cut of 10.0.0.0/24 minus 10.0.0.64/26 is a /26 and a /25.
	var got []netip.Prefix
	for _, r := range subtractPrefixes(pfx("10.0.0.0/24"), []netip.Prefix{pfx("10.0.0.64/26")}) {
		got = append(got, rangeCIDRs(r[0], r[1])...)
	}
	assert.Equal(t, []netip.Prefix{pfx("10.0.0.0/26"), pfx("10.0.0.128/25")}, got)
}

// TestPrefixLengths: pods and nodes are full-length prefixes, ipBlocks the
// lengths of their CIDRs minus excepts, longest first; more than
// maxPrefixLookups lengths, or a verdict that does not end the chain,
// keep the interval map.
func TestPrefixLengths(t *testing.T) {
	t.Parallel()
	pfx := netip.MustParsePrefix
	block := func(cidr string, except ...string) cluster.Peer {
		p := cluster.Peer{Kind: cluster.PeerIPBlock, CIDR: pfx(cidr)}
		for _, e := range except {
			p.Except = append(p.Except, pfx(e))
		}
		return p
	}
	entry := func(v ruleset.Verdict, peers ...cluster.Peer) tierEntry {
		return tierEntry{rule: &cluster.ClusterRule{Peers: peers}, verdict: v, class: tierAllPorts}
	}
	pods := cluster.Peer{Kind: cluster.PeerPods}
	assert.Equal(t, []int{32, 24, 16}, prefixLengths([]tierEntry{entry(vDrop, block("10.1.0.0/16")), entry(vAccept, pods, block("10.2.3.0/24"), block("fd00::/64"))}, 4))
	assert.Equal(t, []int{64}, prefixLengths([]tierEntry{entry(vDrop, block("10.1.0.0/16")), entry(vAccept, block("fd00::/64"))}, 6))
	assert.Equal(t, []int{26, 25}, prefixLengths([]tierEntry{entry(vDrop, block("10.0.0.0/24", "10.0.0.64/26"))}, 4))
	assert.Equal(t, []int{24, 0}, prefixLengths([]tierEntry{entry(vAccept, block("10.0.0.0/24")), entry(vDrop, block("0.0.0.0/0"))}, 4))
	assert.Nil(t, prefixLengths([]tierEntry{entry(vDrop, block("10.1.0.0/16"), block("10.2.0.0/20")), entry(vAccept, pods, block("10.2.3.0/24"))}, 4), "four lengths")
	assert.Nil(t, prefixLengths([]tierEntry{entry(vDrop, block("10.0.0.0/24", "10.0.0.1/32"))}, 4), "an except cutting eight lengths")
	assert.Nil(t, prefixLengths([]tierEntry{entry(ruleset.Verdict{Kind: ruleset.Jump, Chain: "x"}, block("10.1.0.0/16"))}, 4), "a jump returns to the next lookup")
	assert.Nil(t, prefixLengths([]tierEntry{entry(vDrop, block("fd00::/64"))}, 4), "nothing of the family")
}
