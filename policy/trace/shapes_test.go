package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/policyd/policyd/policy/ruleset"
)

// TestRule_EveryShape walks the sample of every shape of ruleset.Shapes with
// one packet: each writable shape must have a tracer step that gives the
// rule's own verdict (a dispatch rule's comes from its map),
// and a KernelRule must be an error, never a guess.
func TestRule_EveryShape(t *testing.T) {
	t.Parallel()
	rs := ruleset.ShapesRuleset()
	pkt := Packet{
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.1"),
		Protocol: 58, Port: 80, ICMPv6Type: 135, State: ruleset.CtEstablished, SrcLocal: true,
	}
	for _, r := range ruleset.Shapes() {
		tr := &tracer{rs: rs, pkt: pkt, res: &Result{}}
		_, v, err := tr.rule(r)
		switch {
		case !ruleset.ShapeOf(r).Writable():
			if err == nil || !strings.Contains(err.Error(), "read back from the kernel") {
				t.Errorf("%T: trace error = %v, want a refusal of a kernel rule", r, err)
			}
		case err != nil:
			t.Errorf("%T has no tracer step: %v", r, err)
		case ruleset.ShapeOf(r) != ruleset.ShapeDispatch && ruleset.ShapeOf(r) != ruleset.ShapePortDispatch && v != r.RuleVerdict():
			t.Errorf("%T: tracer verdict %s, want the rule's %s", r, v, r.RuleVerdict())
		}
	}
	// The whole chain traces too.
	if _, err := Trace(rs, ruleset.HookInput, pkt); err != nil {
		t.Errorf("Trace of the shapes chain: %v", err)
	}
}

// TestRule_HoldsRulesToTheirContract: the tracer refuses a rule that breaks
// its shape's contract (ruleset.CheckRule) instead of guessing what the
// kernel would do with it: a lookup in a set of the other family, a jump
// to a missing chain, a log gated by a missing limit.
func TestRule_HoldsRulesToTheirContract(t *testing.T) {
	t.Parallel()
	pkt := Packet{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), Protocol: 6, Port: 80}
	for _, tt := range []struct {
		rule ruleset.Rule
		err  string
	}{
		{&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "shape-peer4", Verdict: ruleset.Verdict{Kind: ruleset.Accept}}, "want an ipv6_addr set"},
		{&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Jump, Chain: "nope"}}, "jump to missing chain nope"},
		{&ruleset.LogRule{Prefix: "pd:1", Group: 1, Limit: "nope"}, "limit nope does not exist"},
	} {
		rs := ruleset.ShapesRuleset()
		c := rs.Chain("shapes")
		c.Rules = append([]ruleset.Rule{tt.rule}, c.Rules...)
		if _, err := Trace(rs, ruleset.HookInput, pkt); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: Trace error = %v, want one containing %q", ruleset.RuleText(tt.rule), err, tt.err)
		}
	}
}
