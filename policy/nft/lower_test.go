package nft

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/policyd/policyd/policy/ruleset"
)

// TestElements_RoundTrip encodes every set of the fixture as the kernel
// stores it and decodes it back.
func TestElements_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range fullRuleset().Sets {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			elems, err := lowerElements(s, s.Elems())
			if err != nil {
				t.Fatal(err)
			}
			raw := make([]kElem, 0, len(elems))
			for _, e := range elems {
				k := kElem{key: e.Key, keyEnd: e.KeyEnd, intervalEnd: e.IntervalEnd}
				if e.VerdictData != nil {
					k.hasVerdict = true
					k.code = int32(e.VerdictData.Kind)
					k.chain = e.VerdictData.Chain
				}
				raw = append(raw, k)
			}
			// The kernel dumps in its own order; nft adds an interval end at 0.
			for i, j := 0, len(raw)-1; i < j; i, j = i+1, j-1 {
				raw[i], raw[j] = raw[j], raw[i]
			}
			if s.Interval && !s.Key.HasPort() {
				raw = append(raw, kElem{key: make([]byte, len(raw[0].key)), intervalEnd: true})
			}
			got, err := decodeElements(s, raw)
			if err != nil {
				t.Fatal(err)
			}
			gs := &ruleset.Set{Name: s.Name, Key: s.Key, Interval: s.Interval, Map: s.Map, Comment: s.Comment, Elements: got}
			gs.SortElements()
			if p := ruleset.Diff(&ruleset.Ruleset{Sets: []*ruleset.Set{gs}}, &ruleset.Ruleset{Sets: []*ruleset.Set{s}}); !p.Empty() {
				t.Errorf("decoded set differs: %+v", p)
			}
		})
	}
}

func TestLowerElements_IntervalEnds(t *testing.T) {
	t.Parallel()
	s := &ruleset.Set{Name: "s", Key: ruleset.KeyIPv4, Interval: true}
	tests := []struct {
		name string
		e    ruleset.Element
		want []nftables.SetElement
	}{
		{"single address", ruleset.Element{Addr: ip("10.0.0.1")}, []nftables.SetElement{
			{Key: []byte{10, 0, 0, 1}}, {Key: []byte{10, 0, 0, 2}, IntervalEnd: true}}},
		{"range", rng("10.0.0.0", "10.0.0.255"), []nftables.SetElement{
			{Key: []byte{10, 0, 0, 0}}, {Key: []byte{10, 0, 1, 0}, IntervalEnd: true}}},
		{"range to the last address has no end", rng("10.0.0.0", "255.255.255.255"), []nftables.SetElement{
			{Key: []byte{10, 0, 0, 0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := lowerElements(s, []ruleset.Element{tt.e})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d elements, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if !bytes.Equal(got[i].Key, tt.want[i].Key) || got[i].IntervalEnd != tt.want[i].IntervalEnd {
					t.Errorf("element %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestLowerElements_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  *ruleset.Set
		e    ruleset.Element
		err  string
	}{
		{"v6 address in v4 set", &ruleset.Set{Name: "s", Key: ruleset.KeyIPv4}, ruleset.Element{Addr: ip("fd00::1")}, "not IPv4"},
		{"missing address", &ruleset.Set{Name: "s", Key: ruleset.KeyIPv6}, ruleset.Element{}, "missing address"},
		{"reversed range", &ruleset.Set{Name: "s", Key: ruleset.KeyIPv4, Interval: true}, rng("10.0.0.9", "10.0.0.1"), "before start"},
		{"reversed ports", &ruleset.Set{Name: "s", Key: ruleset.KeyProtoPort, Interval: true}, ruleset.Element{Proto: 6, Port: 9, PortEnd: 1}, "before start"},
		{"map without verdict", &ruleset.Set{Name: "s", Key: ruleset.KeyIPv4, Map: true}, ruleset.Element{Addr: ip("10.0.0.1")}, "invalid verdict"},
		{"jump without chain", &ruleset.Set{Name: "s", Key: ruleset.KeyIPv4, Map: true}, ruleset.Element{Addr: ip("10.0.0.1"), Verdict: ruleset.Verdict{Kind: ruleset.Jump}}, "without a target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := lowerElements(tt.set, []ruleset.Element{tt.e})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestChunkElements(t *testing.T) {
	t.Parallel()
	var elems []nftables.SetElement
	for range 5000 {
		elems = append(elems, nftables.SetElement{Key: make([]byte, 24), KeyEnd: make([]byte, 24)})
	}
	chunks := chunkElements(elems)
	if len(chunks) < 2 {
		t.Fatalf("5000 elements in %d chunk(s)", len(chunks))
	}
	n := 0
	for _, c := range chunks {
		n += len(c)
		if size := len(c) * (64 + 4*24); size > maxElemBytes {
			t.Errorf("chunk of %d elements is about %d bytes", len(c), size)
		}
	}
	if n != len(elems) {
		t.Errorf("chunks hold %d elements, want %d", n, len(elems))
	}
	if got := chunkElements(nil); len(got) != 0 {
		t.Errorf("chunkElements(nil) = %d chunks", len(got))
	}
}

func TestUserData(t *testing.T) {
	t.Parallel()
	r := &ruleset.VerdictRule{Verdict: accept(), Comment: "hello"}
	tlv, ok := parseUserData(ruleUserData(r))
	if !ok {
		t.Fatal("cannot parse our own userdata")
	}
	if got := udataComment(tlv); got != "hello" {
		t.Errorf("comment = %q", got)
	}
	if !bytes.Equal(tlv[udataRuleHash], ruleHash(r)) {
		t.Error("hash TLV missing")
	}
	if _, ok := parseUserData([]byte{0, 9, 'x'}); ok {
		t.Error("truncated userdata parsed as valid")
	}
	other := &ruleset.VerdictRule{Verdict: drop(), Comment: "hello"}
	if bytes.Equal(ruleHash(r), ruleHash(other)) {
		t.Error("rules with different verdicts hash the same")
	}
}

func TestRulesMatch(t *testing.T) {
	t.Parallel()
	want := []ruleset.Rule{
		&ruleset.CtRule{States: ruleset.CtEstablished, Verdict: accept(), Comment: "a"},
		&ruleset.VerdictRule{Verdict: drop()},
	}
	ours := []kRule{{udata: ruleUserData(want[0])}, {udata: ruleUserData(want[1])}}
	// As written by nft -f: only the comment TLV.
	theirs := []kRule{{udata: []byte{0, 2, 'a', 0}}, {}}
	tests := []struct {
		name string
		got  []kRule
		want bool
	}{
		{"our rules", ours, true},
		{"rules from nft -f, matched by comment", theirs, true},
		{"one rule missing", ours[:1], false},
		{"different hash", []kRule{ours[1], ours[0]}, false},
		{"different comment", []kRule{{udata: []byte{0, 2, 'b', 0}}, {}}, false},
		{"malformed userdata", []kRule{{udata: []byte{0, 9}}, {}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := rulesMatch(tt.got, want); got != tt.want {
				t.Errorf("rulesMatch = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMatchRules_Strict checks the matching of a table policyd wrote: a rule
// without policyd's hash matches nothing, even with the wanted comment.
func TestMatchRules_Strict(t *testing.T) {
	t.Parallel()
	want := []ruleset.Rule{
		&ruleset.CtRule{States: ruleset.CtEstablished, Verdict: accept(), Comment: "a"},
		&ruleset.VerdictRule{Verdict: drop()},
	}
	ours := []kRule{{udata: ruleUserData(want[0])}, {udata: ruleUserData(want[1])}}
	tests := []struct {
		name string
		got  []kRule
		want bool
	}{
		{"our rules", ours, true},
		{"rules from nft -f", []kRule{{udata: []byte{0, 2, 'a', 0}}, {}}, false},
		{"last rule replaced by one without hash", []kRule{ours[0], {}}, false},
		{"first rule replaced, same comment", []kRule{{udata: []byte{0, 2, 'a', 0}}, ours[1]}, false},
		{"reordered", []kRule{ours[1], ours[0]}, false},
		{"flushed", nil, false},
		{"rule inserted", []kRule{{}, ours[0], ours[1]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := matchRules(tt.got, want, true); got != tt.want {
				t.Errorf("matchRules(strict) = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAdopt_RegularChains checks how adopt represents regular chains: the
// wanted chain when the kernel's matches, KernelRules (one of handle 0 for
// an empty chain) when it does not, and an empty chain to delete when it is
// not wanted.
func TestAdopt_RegularChains(t *testing.T) {
	t.Parallel()
	want := fullRuleset()
	polA, polC := want.Chain("pol-a"), want.Chain("pol-c")
	udata := func(c *ruleset.Chain) []kRule {
		var out []kRule
		for i, r := range c.Rules {
			out = append(out, kRule{handle: uint64(i + 1), udata: ruleUserData(r)})
		}
		return out
	}
	kt := &kTable{exists: true, chains: []*kChain{
		{name: "pol-a", rules: udata(polA)},
		{name: "pol-b"}, // flushed
		{name: "pol-c", rules: append(udata(polC), kRule{handle: 9})},
		{name: "intruder"},
	}}
	got := adopt(kt, want)
	if got.Chain("pol-a") != polA {
		t.Error("matching chain pol-a is not the wanted chain")
	}
	wantKernelRules := func(name string, handles ...uint64) {
		t.Helper()
		c := got.Chain(name)
		if c == nil || len(c.Rules) != len(handles) {
			t.Fatalf("chain %s = %+v, want %d kernel rules", name, c, len(handles))
		}
		for i, r := range c.Rules {
			kr, ok := r.(*ruleset.KernelRule)
			if !ok || kr.Handle != handles[i] {
				t.Errorf("chain %s rule %d = %#v, want kernel rule of handle %d", name, i, r, handles[i])
			}
		}
	}
	wantKernelRules("pol-b", 0)
	wantKernelRules("pol-c", 1, 9)
	if c := got.Chain("intruder"); c == nil || len(c.Rules) != 0 {
		t.Errorf("unwanted chain = %+v, want an empty chain", c)
	}
	p := ruleset.Diff(got, want)
	if names := chainNames(p.RefillChains); names != "pol-b pol-c" {
		t.Errorf("RefillChains = %q, want pol-b pol-c", names)
	}
	if names := chainNames(p.DelChains); names != "intruder" {
		t.Errorf("DelChains = %q, want intruder", names)
	}
}

func chainNames(cs []*ruleset.Chain) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, " ")
}

func TestNftReg(t *testing.T) {
	t.Parallel()
	for slot, want := range map[int]uint32{0: 1, 1: 9, 2: 10, 4: 2, 5: 13} {
		if got := nftReg(slot); got != want {
			t.Errorf("nftReg(%d) = %d, want %d", slot, got, want)
		}
	}
}
