package trace

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/policyd/policyd/policy/ruleset"
)

// TestTrace_LogRuleIsNonTerminal goes through a log chain: the LogRule
// records its prefix and the next rule decides.
func TestTrace_LogRuleIsNonTerminal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		states ruleset.CtState
		pkt    ruleset.CtState
		logged []string
	}{
		{name: "every packet", logged: []string{"pd:1"}},
		{name: "new only, new packet", states: ruleset.CtNew, pkt: ruleset.CtNew, logged: []string{"pd:1"}},
		{name: "new only, invalid packet", states: ruleset.CtNew, pkt: ruleset.CtInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := &ruleset.Ruleset{Chains: []*ruleset.Chain{
				{Name: "in", Base: &ruleset.Base{Hook: ruleset.HookInput, Policy: ruleset.Accept}, Rules: []ruleset.Rule{
					&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Goto, Chain: "log-x"}},
				}},
				{Name: "log-x", Rules: []ruleset.Rule{
					&ruleset.LogRule{States: tt.states, Prefix: "pd:1", Group: 1},
					&ruleset.VerdictRule{Verdict: ruleset.Verdict{Kind: ruleset.Drop}},
				}},
			}}
			rs.Sort()
			res, err := Trace(rs, ruleset.HookInput, Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), State: tt.pkt})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != ruleset.Drop || res.Decider == nil || res.Decider.Chain != "log-x" || res.Decider.Rule != 1 {
				t.Errorf("verdict %v decider %+v, want the drop after the log rule", res.Verdict, res.Decider)
			}
			if !slices.Equal(res.Logged, tt.logged) {
				t.Errorf("logged %q, want %q", res.Logged, tt.logged)
			}
		})
	}
}
