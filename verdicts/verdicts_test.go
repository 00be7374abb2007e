package verdicts_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/verdicts"
)

// TestResolver_DedupPerFlowPerSecondAndUnknownIDs: a flow is recorded once
// a second; an id no committed ruleset knew is counted, never guessed.
func TestResolver_DedupPerFlowPerSecondAndUnknownIDs(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	r.Learn(&ruleset.Ruleset{Deciders: map[string]ruleset.Decider{
		"pd:1": {Kind: ruleset.DeciderCNP, Direction: "ingress", Verdict: ruleset.Drop, Tier: "admin", Name: "deny", Action: "Deny"},
	}})
	t0 := time.Unix(1000, 0)
	flow := nflog.Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Protocol: 6, SrcPort: 4000, DstPort: 80}
	other := flow
	other.SrcPort = 4001
	for i, tt := range []struct {
		p    nflog.Packet
		want bool
	}{
		{nflog.Packet{Time: t0, Prefix: "pd:1", Flow: flow}, true},
		{nflog.Packet{Time: t0.Add(500 * time.Millisecond), Prefix: "pd:1", Flow: flow}, false},
		{nflog.Packet{Time: t0.Add(500 * time.Millisecond), Prefix: "pd:1", Flow: other}, true},
		{nflog.Packet{Time: t0.Add(1500 * time.Millisecond), Prefix: "pd:1", Flow: flow}, true},
		{nflog.Packet{Time: t0, Prefix: "pd:unknown", Flow: flow}, false},
	} {
		rec, ok := r.Handle(tt.p)
		if ok != tt.want {
			t.Errorf("packet %d: recorded %v, want %v", i, ok, tt.want)
		}
		if ok && (rec.Kind != "clusternetworkpolicy" || rec.Policies[0] != "deny" || rec.Verdict != "drop" || rec.Port != 80) {
			t.Errorf("packet %d: record %+v", i, rec)
		}
	}
	if st := r.Stats(); st.Logged != 5 || st.Deduplicated != 1 || st.UnknownID != 1 {
		t.Errorf("stats %+v, want 5 logged, 1 deduplicated, 1 unknown", st)
	}
}
