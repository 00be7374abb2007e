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
