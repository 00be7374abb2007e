package verdicts_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/verdicts"
)

var (
	cnpDeny = decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Tier: "Admin", Policies: []string{"deny"}, Rule: decider.Index(2), RuleName: "no-metrics", Action: "Deny"}
	npDeny  = decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "ingress", Verdict: decider.VerdictDeny, Policies: []string{"x/allow-b", "x/default-deny"}}
	npAllow = decider.Decider{Kind: decider.KindNetworkPolicy, Direction: "egress", Verdict: decider.VerdictAllow, Policies: []string{"x/allow-b"}}
	invalid = decider.Decider{Kind: decider.KindCtInvalid, Direction: "egress", Verdict: decider.VerdictDeny}
)

// rs is a ruleset holding the deciders under their real ids.
func rs(ds ...decider.Decider) *ruleset.Ruleset {
	m := map[string]decider.Decider{}
	for _, d := range ds {
		m[compile.DeciderID(d)] = d
	}
	return &ruleset.Ruleset{Deciders: m}
}

func flow(srcPort uint16) nflog.Flow {
	return nflog.Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Protocol: 6, SrcPort: srcPort, DstPort: 80}
}

func pods(a netip.Addr) (string, string, bool) {
	switch a.String() {
	case "10.0.0.1":
		return "x", "a", true
	case "10.0.0.2":
		return "x", "b", true
	}
	return "", "", false
}

// TestResolver_DedupPerFlowPerSecondAndUnknownIDs: a flow is recorded once
// a second per decider; an id no committed ruleset knew is counted, never
// guessed.
func TestResolver_DedupPerFlowPerSecondAndUnknownIDs(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", pods)
	r.Learn(rs(cnpDeny, npDeny))
	id, npID := compile.DeciderID(cnpDeny), compile.DeciderID(npDeny)
	t0 := time.Unix(1000, 0)
	for i, tt := range []struct {
		p    nflog.Packet
		want bool
	}{
		{nflog.Packet{Time: t0, Prefix: id, Flow: flow(4000)}, true},
		{nflog.Packet{Time: t0.Add(500 * time.Millisecond), Prefix: id, Flow: flow(4000)}, false},
		{nflog.Packet{Time: t0.Add(500 * time.Millisecond), Prefix: npID, Flow: flow(4000)}, true},
		{nflog.Packet{Time: t0.Add(500 * time.Millisecond), Prefix: id, Flow: flow(4001)}, true},
		{nflog.Packet{Time: t0.Add(999 * time.Millisecond), Prefix: id, Flow: flow(4000)}, false},
		{nflog.Packet{Time: t0.Add(999 * time.Millisecond), Prefix: id, Flow: flow(4002)}, true},
		{nflog.Packet{Time: t0.Add(1500 * time.Millisecond), Prefix: id, Flow: flow(4000)}, true},
		{nflog.Packet{Time: t0.Add(1700 * time.Millisecond), Prefix: id, Flow: flow(4002)}, false}, // recorded in the previous second
		{nflog.Packet{Time: t0.Add(1600 * time.Millisecond), Prefix: id, Flow: flow(4001)}, true},
		{nflog.Packet{Time: t0.Add(2400 * time.Millisecond), Prefix: id, Flow: flow(4000)}, false},
		{nflog.Packet{Time: t0.Add(9 * time.Second), Prefix: id, Flow: flow(4000)}, true},
		{nflog.Packet{Time: t0, Prefix: "pd:0000000000000000", Flow: flow(4000)}, false},
	} {
		_, ok := r.Handle(tt.p)
		assert.Equal(t, tt.want, ok, "packet %d", i)
	}
	assert.Equal(t, verdicts.Stats{Logged: 12, Recorded: 7, Deduplicated: 4, UnknownID: 1}, r.Stats())
	assert.Equal(t, map[string]uint64{id: 10, npID: 1}, r.ReadCounts())
}

// TestResolver_Records: each kind of decider becomes a record in the API's
// words, with the pods of both ends.
func TestResolver_Records(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("node-1", pods)
	r.Learn(rs(cnpDeny, npDeny, npAllow, invalid))
	t0 := time.Unix(1000, 0).UTC()
	for _, tt := range []struct {
		name string
		d    decider.Decider
		want verdicts.Record
	}{
		{"cnp", cnpDeny, verdicts.Record{Decider: decider.Decider{Verdict: decider.VerdictDeny, Direction: "ingress", Kind: decider.KindClusterNetworkPolicy, Policies: []string{"deny"},
			Tier: "Admin", Rule: decider.Index(2), RuleName: "no-metrics", Action: "Deny"}, DeciderText: "Admin cnp deny ingress[2] Deny"}},
		{"default deny", npDeny, verdicts.Record{Decider: decider.Decider{Verdict: decider.VerdictDeny, Direction: "ingress", Kind: decider.KindNetworkPolicy, Policies: []string{"x/allow-b", "x/default-deny"}},
			DeciderText: "ingress default deny of x/allow-b,x/default-deny"}},
		{"allow", npAllow, verdicts.Record{Decider: decider.Decider{Verdict: decider.VerdictAllow, Direction: "egress", Kind: decider.KindNetworkPolicy, Policies: []string{"x/allow-b"}},
			DeciderText: "egress allowed by x/allow-b"}},
		{"ct invalid", invalid, verdicts.Record{Decider: decider.Decider{Verdict: decider.VerdictDeny, Direction: "egress", Kind: decider.KindCtInvalid}, DeciderText: "ct state invalid egress"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := compile.DeciderID(tt.d)
			rec, ok := r.Handle(nflog.Packet{Time: t0, Prefix: id, Flow: flow(4000)})
			require.True(t, ok)
			want := tt.want
			want.Time, want.Node, want.ID = t0, "node-1", id
			want.Src = verdicts.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Namespace: "x", Pod: "a"}
			want.Dst = verdicts.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Namespace: "x", Pod: "b"}
			want.Protocol, want.SrcPort, want.Port = "TCP", 4000, 80
			assert.Equal(t, want, rec)
		})
	}
}

// TestResolver_IDsKeepTheirMeaning: an id learned once resolves to the same
// decider after later rulesets (a renamed policy is a new id), is forgotten
// only after Retention without being learned, and an id two deciders claim
// (a hash collision) resolves to neither.
func TestResolver_IDsKeepTheirMeaning(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	clock := time.Unix(1000, 0)
	verdicts.SetClock(r, func() time.Time { return clock })
	renamed := npDeny
	renamed.Policies = []string{"x/allow-b", "x/deny-all"}
	r.Learn(rs(npDeny))
	r.Learn(rs(renamed))
	oldID, newID := compile.DeciderID(npDeny), compile.DeciderID(renamed)
	require.NotEqual(t, oldID, newID)
	d, ok := r.Decider(oldID)
	require.True(t, ok)
	assert.Equal(t, npDeny.Key(), d.Key(), "the old id keeps its old meaning")

	clock = clock.Add(verdicts.Retention + time.Second)
	r.Learn(rs(renamed))
	_, ok = r.Decider(oldID)
	assert.False(t, ok, "forgotten after Retention")
	_, ok = r.Decider(newID)
	assert.True(t, ok)

	r.Learn(&ruleset.Ruleset{Deciders: map[string]decider.Decider{newID: cnpDeny}})
	_, ok = r.Decider(newID)
	assert.False(t, ok, "an id claimed by two deciders must not resolve")
	_, rec := r.Handle(nflog.Packet{Time: clock, Prefix: newID, Flow: flow(1)})
	assert.False(t, rec)
	assert.Equal(t, uint64(1), r.Stats().UnknownID)
}

// TestResolver_RecentAndSubscriptions: subscribers get each record once,
// the backlog before and the live ones after; a slow subscriber misses
// records and that is counted, never blocking Handle.
func TestResolver_RecentAndSubscriptions(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	r.Learn(rs(cnpDeny))
	id := compile.DeciderID(cnpDeny)
	t0 := time.Unix(1000, 0)
	for i := range verdicts.RecentRecords + 10 {
		_, ok := r.Handle(nflog.Packet{Time: t0.Add(time.Duration(i) * time.Millisecond), Prefix: id, Flow: flow(uint16(i))})
		require.True(t, ok)
	}
	recent := r.Recent(time.Time{})
	require.Len(t, recent, verdicts.RecentRecords)
	assert.Equal(t, uint16(10), recent[0].SrcPort, "the oldest kept")
	assert.Equal(t, uint16(verdicts.RecentRecords+9), recent[len(recent)-1].SrcPort)
	assert.Len(t, r.Recent(t0.Add(time.Duration(verdicts.RecentRecords)*time.Millisecond)), 10)

	s := r.SubscribeSince(t0.Add(time.Duration(verdicts.RecentRecords+5)*time.Millisecond), true)
	require.Len(t, s.Backlog, 5)
	for i := range 300 {
		r.Handle(nflog.Packet{Time: t0.Add(time.Hour), Prefix: id, Flow: flow(uint16(20000 + i))})
	}
	got := 0
	for len(s.Records()) > 0 {
		rec := <-s.Records()
		assert.Equal(t, uint16(20000+got), rec.SrcPort)
		got++
	}
	assert.Equal(t, 256, got)
	assert.Equal(t, uint64(300-256), s.Dropped())
	s.Close()
	s.Close()
	assert.Equal(t, uint64(300-256), r.Stats().Dropped, "kept after Close")
}

// TestResolver_DedupMemoryIsBounded: a flood of distinct flows never
// grows the deduplication beyond two seconds of flows.
func TestResolver_DedupMemoryIsBounded(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	r.Learn(rs(cnpDeny))
	id := compile.DeciderID(cnpDeny)
	t0 := time.Unix(1000, 0)
	for i := range 200000 {
		f := flow(uint16(i))
		f.DstPort = uint16(i >> 16)
		r.Handle(nflog.Packet{Time: t0.Add(time.Duration(i) * 20 * time.Microsecond), Prefix: id, Flow: f})
	}
	assert.LessOrEqual(t, verdicts.DedupSize(r), 2*16384)
	// And it still deduplicates afterwards.
	end := t0.Add(200000 * 20 * time.Microsecond)
	_, first := r.Handle(nflog.Packet{Time: end, Prefix: id, Flow: flow(1)})
	_, again := r.Handle(nflog.Packet{Time: end.Add(100 * time.Millisecond), Prefix: id, Flow: flow(1)})
	assert.True(t, first)
	assert.False(t, again, "a repeat within the second after a flood of flows")
}

func TestPolicyLabels(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d        decider.Decider
		ns, name string
	}{
		{npDeny, "x", "allow-b,default-deny"},
		{npAllow, "x", "allow-b"},
		{cnpDeny, "", "deny"},
		{invalid, "", ""},
		{decider.Decider{Kind: decider.KindNetworkPolicy, Policies: []string{"x/a", "y/b"}}, "", "x/a,y/b"},
	} {
		ns, name := verdicts.PolicyLabels(tt.d)
		assert.Equal(t, [2]string{tt.ns, tt.name}, [2]string{ns, name}, tt.d.String())
	}
}

// TestRecord_Samples: every sample decider, learned under its id, becomes
// a record that embeds it whole (its fields are the record's, in the JSON
// too: the one form docs/verdicts.md documents) with its String as
// "decider", and reads back from JSON as the same decider; observe's verdict
// and policy filters select it by its own verdict and policies.
func TestRecord_Samples(t *testing.T) {
	t.Parallel()
	samples := decider.Samples()
	r := verdicts.NewResolver("node-1", pods)
	r.Learn(rs(samples...))
	for i, d := range samples {
		rec, ok := r.Handle(nflog.Packet{Time: time.Unix(1000, 0), Prefix: compile.DeciderID(d), Flow: flow(uint16(5000 + i))})
		require.True(t, ok, "%s", d)
		assert.True(t, d.Equal(rec.Decider), "record of %s embeds %+v", d, rec.Decider)
		assert.Equal(t, d.String(), rec.DeciderText)

		b, err := json.Marshal(rec)
		require.NoError(t, err)
		var fields map[string]any
		require.NoError(t, json.Unmarshal(b, &fields))
		db, err := json.Marshal(d)
		require.NoError(t, err)
		var want map[string]any
		require.NoError(t, json.Unmarshal(db, &want))
		for k, v := range want {
			assert.Equal(t, v, fields[k], "%s: field %s of the record", d, k)
		}
		for _, k := range []string{"rule", "tier", "ruleName", "action", "policies"} {
			if _, ok := want[k]; !ok {
				assert.NotContains(t, fields, k, "%s: a field the decider has not", d)
			}
		}
		assert.Equal(t, d.String(), fields["decider"])
		var back verdicts.Record
		require.NoError(t, json.Unmarshal(b, &back))
		assert.True(t, d.Equal(back.Decider), "%s read back as %+v", b, back.Decider)

		assert.True(t, verdicts.Filter{Verdict: d.Verdict.String()}.Match(&rec), "%s: verdict filter", d)
		for _, p := range d.Policies {
			assert.True(t, verdicts.Filter{Policy: p}.Match(&rec), "%s: policy filter %s", d, p)
			if ns, name, ok := strings.Cut(p, "/"); ok { // a NetworkPolicy: by name, in its namespace
				assert.True(t, verdicts.Filter{Policy: name}.Match(&rec), "%s: policy filter %s", d, name)
				assert.False(t, verdicts.Filter{Policy: name, Namespace: ns + "-not"}.Match(&rec), "%s: policy filter %s in another namespace", d, name)
			} else { // a ClusterNetworkPolicy is not namespaced
				assert.False(t, verdicts.Filter{Policy: "x/" + p}.Match(&rec), "%s: policy filter x/%s", d, p)
			}
		}
	}
}

// TestResolver_RuleNameFollowsTheLastLearn: a rule's name is not part of
// its id, so a renamed rule keeps its id, and its records carry the name of
// the ruleset learned last.
func TestResolver_RuleNameFollowsTheLastLearn(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	r.Learn(rs(cnpDeny))
	renamed := cnpDeny
	renamed.RuleName = "renamed"
	r.Learn(rs(renamed))
	rec, ok := r.Handle(nflog.Packet{Time: time.Unix(1, 0), Prefix: compile.DeciderID(cnpDeny), Flow: flow(1)})
	require.True(t, ok)
	assert.Equal(t, "renamed", rec.RuleName)
}
