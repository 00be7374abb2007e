package ruleset

import (
	"errors"
	"strings"
	"testing"
)

// TestCheck_ShapesRuleset: the sample of every shape, with the sets and
// limit they name, keeps the contract.
func TestCheck_ShapesRuleset(t *testing.T) {
	t.Parallel()
	if err := Check(ShapesRuleset()); err != nil {
		t.Fatalf("Check(ShapesRuleset()) = %v", err)
	}
}

// TestCheck_Rejects breaks ShapesRuleset one way at a time: each must be
// refused with an error naming what is wrong, a missing object as a
// MissingError and nothing else as one.
func TestCheck_Rejects(t *testing.T) {
	t.Parallel()
	accept := Verdict{Kind: Accept}
	jump := func(c string) Verdict { return Verdict{Kind: Jump, Chain: c} }
	add := func(r Rule) func(*Ruleset) {
		return func(rs *Ruleset) { rs.Chain("shapes").Rules = append(rs.Chain("shapes").Rules, r) }
	}
	tests := []struct {
		name    string
		tweak   func(*Ruleset)
		err     string
		missing bool
	}{
		{"missing peer set", add(&AllowRule{Family: 4, PeerField: Saddr, PeerSet: "nope", Verdict: accept}), `peer: set "nope" does not exist`, true},
		{"missing dispatch map", add(&DispatchRule{Family: 4, Field: Daddr, Map: "nope"}), `map: set "nope" does not exist`, true},
		{"peer set of the other family", add(&AllowRule{Family: 6, PeerField: Saddr, PeerSet: "shape-peer4", Verdict: accept}), "want an ipv6_addr set", false},
		{"dispatch through a set", add(&DispatchRule{Family: 4, Field: Daddr, Map: "shape-peer4"}), "want an ipv4_addr verdict map", false},
		{"peer lookup in a map", add(&AllowRule{Family: 4, PeerField: Saddr, PeerSet: "shape-map4", Verdict: accept}), "want an ipv4_addr set", false},
		{"named-port lookup in a port set", add(&AllowRule{Family: 4, NamedPortSet: "shape-ports", Verdict: accept}), "want an ipv4_addr . inet_proto . inet_service set", false},
		{"dispatch with ports through an address map", add(&DispatchRule{Family: 4, Field: Daddr, Map: "shape-map4", Ports: true}), "want an ipv4_addr . inet_proto . inet_service verdict map", false},
		{"port dispatch through an interval map", func(rs *Ruleset) { rs.Set("shape-pmap").Interval = true }, "want an inet_proto . inet_service verdict map without flags interval", false},
		{"masked dispatch over an address with host bits", add(&DispatchRule{Family: 4, Field: Daddr, Map: "shape-map4", Prefix: 16}), "holds 10.0.0.1, want an ipv4_addr verdict map without flags interval whose addresses are /16 networks", false},
		{"jump to a missing chain", add(&VerdictRule{Verdict: jump("nope")}), "jump to missing chain nope", true},
		{"goto a missing chain", add(&VerdictRule{Verdict: Verdict{Kind: Goto, Chain: "nope"}}), "goto missing chain nope", true},
		{"jump to a base chain", add(&CtRule{States: CtNew, Verdict: jump("shapes")}), "jump to base chain shapes", false},
		{"map entry jumps to a missing chain", func(rs *Ruleset) { rs.Set("shape-map4").Elements[0].Verdict = jump("nope") }, "set shape-map4 element 10.0.0.1: jump to missing chain nope", true},
		{"log rule names a missing limit", func(rs *Ruleset) { rs.Limits = nil }, "limit shape-limit does not exist", true},
		{"limit of rate 0", func(rs *Ruleset) { rs.Limits[0].Rate = 0 }, "limit shape-limit: rate 0", false},
		{"ct rule without states", add(&CtRule{Verdict: accept}), "ct rule matches no state", false},
		{"dispatch of family 5", add(&DispatchRule{Family: 5, Field: Daddr, Map: "shape-map4"}), "family 5 is not 4 or 6", false},
		{"invalid verdict", add(&VerdictRule{}), "invalid verdict kind 0", false},
		{"comment too long", add(&VerdictRule{Verdict: accept, Comment: strings.Repeat("x", 129)}), "comment longer than 128 bytes", false},
		{"kernel rule", add(&KernelRule{Handle: 3}), "rule handle 3 was read back from the kernel", false},
		{"sized interval set", func(rs *Ruleset) { rs.Set("shape-cidr4").Size = 16 }, "set shape-cidr4: an interval set has no size", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := ShapesRuleset()
			tt.tweak(rs)
			err := Check(rs)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Check error = %v, want one containing %q", err, tt.err)
			}
			var missing *MissingError
			if errors.As(err, &missing) != tt.missing {
				t.Errorf("Check error %q is a MissingError: %v, want %v", err, !tt.missing, tt.missing)
			}
		})
	}
}

// TestCheck_NamesTheRule: a rule's error says which chain and rule broke the
// contract, and how it reads.
func TestCheck_NamesTheRule(t *testing.T) {
	t.Parallel()
	rs := ShapesRuleset()
	c := rs.Chain("shapes")
	c.Rules = append(c.Rules, &AllowRule{Family: 4, PeerField: Saddr, PeerSet: "nope", Verdict: Verdict{Kind: Drop}})
	want := `chain shapes rule 12 (ip saddr @nope drop): peer: set "nope" does not exist`
	if err := Check(rs); err == nil || err.Error() != want {
		t.Errorf("Check error = %v, want %q", err, want)
	}
}

// TestCheckRule_MaskedDispatch: a dispatch masked to a prefix needs an
// exact address map of its family whose addresses are networks of that
// length, and no ports; anything else is refused before the kernel sees it.
func TestCheckRule_MaskedDispatch(t *testing.T) {
	t.Parallel()
	accept := Verdict{Kind: Accept}
	rs := &Ruleset{Sets: []*Set{
		{Name: "nets", Map: true, Key: KeyIPv4, Elements: []Element{{Addr: addr("10.1.0.0"), Verdict: accept}}},
		{Name: "hostbits", Map: true, Key: KeyIPv4, Elements: []Element{{Addr: addr("10.1.0.1"), Verdict: accept}}},
		{Name: "interval", Map: true, Interval: true, Key: KeyIPv4, Elements: []Element{{Addr: addr("10.1.0.0"), AddrEnd: addr("10.1.255.255"), Verdict: accept}}},
		{Name: "ported", Map: true, Key: KeyIPv4ProtoPort, Elements: []Element{{Addr: addr("10.1.0.0"), Proto: 6, Port: 80, PortEnd: 80, Verdict: accept}}},
	}}
	rs.Sort()
	ok := &DispatchRule{Family: 4, Field: Daddr, Map: "nets", Prefix: 16}
	if err := CheckRule(ok, rs); err != nil {
		t.Fatalf("a /16 dispatch over /16 networks: %v", err)
	}
	if got := ok.Text(); got != "ip daddr & 255.255.0.0 vmap @nets" {
		t.Errorf("text %q", got)
	}
	for _, bad := range []*DispatchRule{
		{Family: 4, Field: Daddr, Map: "hostbits", Prefix: 16},
		{Family: 4, Field: Daddr, Map: "interval", Prefix: 16},
		{Family: 4, Field: Daddr, Map: "ported", Prefix: 16, Ports: true},
		{Family: 4, Field: Daddr, Map: "nets", Prefix: 32},
		{Family: 4, Field: Daddr, Map: "nets", Prefix: -1},
		{Family: 6, Field: Daddr, Map: "nets", Prefix: 16},
	} {
		if err := CheckRule(bad, rs); err == nil {
			t.Errorf("accepted a /%d ipv%d dispatch over %s (ports %v)", bad.Prefix, bad.Family, bad.Map, bad.Ports)
		}
	}
}

// TestRefs_SetRefsAreTheSetsAmongRefs: every sample's SetRefs names the
// sets of its Refs, in order, and every sample that jumps names its chain.
func TestRefs_SetRefsAreTheSetsAmongRefs(t *testing.T) {
	t.Parallel()
	for _, r := range Shapes() {
		var sets []string
		var chains []string
		for _, ref := range r.Refs() {
			switch ref.Kind {
			case RefSet:
				sets = append(sets, ref.Name)
			case RefChain:
				chains = append(chains, ref.Name)
			case RefLimit, RefInvalid:
			}
		}
		if strings.Join(sets, " ") != strings.Join(r.SetRefs(), " ") {
			t.Errorf("%T: SetRefs %q, the sets of Refs %q", r, r.SetRefs(), sets)
		}
		if j := JumpTarget(r); strings.Join(chains, " ") != j {
			t.Errorf("%T: chains of Refs %q, jump target %q", r, chains, j)
		}
	}
	jumping := &AllowRule{Family: 4, PeerSet: "p", PeerField: Saddr, Verdict: Verdict{Kind: Goto, Chain: "c"}}
	if refs := jumping.Refs(); len(refs) != 2 || refs[1] != (Ref{Kind: RefChain, Name: "c", Role: "goto"}) {
		t.Errorf("refs of a goto allow rule: %+v", refs)
	}
}
