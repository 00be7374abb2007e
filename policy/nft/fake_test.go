package nft

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/policyd/policyd/policy/ruleset"
)

func TestFake_SyncAndPartialSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := NewFake()
	want := fullRuleset()
	st, err := f.Sync(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	full := ruleset.Diff(nil, want).Ops()
	if !st.Full || st.Ops != full {
		t.Errorf("first Sync: %+v, want Full and %d ops", st, full)
	}
	if got := f.Ruleset().Text(); got != want.Text() {
		t.Errorf("committed state differs from want:\n%s", got)
	}
	st, err = f.Sync(ctx, fullRuleset())
	if err != nil || st.Full || st.Ops != 0 {
		t.Errorf("same Sync again: %+v, %v; want 0 ops, not full", st, err)
	}
	st, err = f.Sync(ctx, fullRuleset(podRelabel))
	if err != nil {
		t.Fatal(err)
	}
	if st.Ops != 4 || st.Elements != 4 {
		t.Errorf("pod relabel: %+v, want 4 element ops", st)
	}
	if f.Syncs() != 3 {
		t.Errorf("Syncs() = %d, want 3", f.Syncs())
	}
}

// podRelabel moves pod 10.0.0.2 from peer4 to empty4 and points its map
// entry at pol-c.
func podRelabel(r *ruleset.Ruleset) {
	p := r.Set("peer4")
	p.Replace([]ruleset.Element{{Addr: ip("10.0.0.1")}})
	r.Set("empty4").Replace([]ruleset.Element{{Addr: ip("10.0.0.2")}})
	m := r.Set("ing4")
	for i := range m.Elements {
		if m.Elements[i].Addr == ip("10.0.0.2") {
			m.Elements[i].Verdict = jump("pol-c")
		}
	}
}

func TestFake_Rejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		tweak func(*ruleset.Ruleset)
		err   string
	}{
		{
			name: "lookup of a missing set",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "nope", Verdict: accept()}}})
			},
			err: `set "nope" does not exist`,
		},
		{
			name: "peer set of the wrong family",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "peer4", Verdict: accept()}}})
			},
			err: "want an ipv6_addr set",
		},
		{
			name: "dispatch through a set that is not a map",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.DispatchRule{Family: 4, Field: ruleset.Saddr, Map: "peer4"}}})
			},
			err: "verdict map",
		},
		{
			name: "log rule names a missing limit",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.LogRule{Prefix: "pd:1", Group: 1, Limit: "nope"}}})
			},
			err: "limit nope does not exist",
		},
		{
			name: "limit of rate 0",
			tweak: func(r *ruleset.Ruleset) {
				r.Limits = append(r.Limits, &ruleset.Limit{Name: "zero", Burst: 1})
				r.Sort()
			},
			err: "limit zero: rate 0",
		},
		{
			name: "literal port of a protocol without ports",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.AllowRule{Family: 4, Proto: 1, Port: 8, Verdict: accept()}}})
			},
			err: "literal port of protocol 1",
		},
		{
			name: "rule jumps to a missing chain",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: jump("nope")}}})
			},
			err: "jump to missing chain nope",
		},
		{
			name: "map entry jumps to a missing chain",
			tweak: func(r *ruleset.Ruleset) {
				r.Set("ing4").Elements[0].Verdict = jump("nope")
			},
			err: "jump to missing chain nope",
		},
		{
			name: "jump to a base chain",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: jump("input")}}})
			},
			err: "jump to base chain input",
		},
		{
			name: "overlapping intervals",
			tweak: func(r *ruleset.Ruleset) {
				s := r.Set("blk4")
				s.Elements = append(s.Elements, rng("10.1.2.0", "10.1.2.255"))
			},
			err: "overlap",
		},
		{
			name: "overlapping port ranges",
			tweak: func(r *ruleset.Ruleset) {
				s := r.Set("ports")
				s.Elements = append(s.Elements, ruleset.Element{Proto: 17, Port: 1500, PortEnd: 2500})
			},
			err: "overlap",
		},
		{
			name: "address of the wrong family",
			tweak: func(r *ruleset.Ruleset) {
				s := r.Set("peer6")
				s.Elements = append(s.Elements, ruleset.Element{Addr: ip("10.9.9.9")})
			},
			err: "is not IPv6",
		},
		{
			name: "port range in a set without interval",
			tweak: func(r *ruleset.Ruleset) {
				s := r.Set("np4")
				s.Elements = append(s.Elements, ruleset.Element{Addr: ip("10.0.0.9"), Proto: 6, Port: 1, PortEnd: 2})
			},
			err: "without flags interval",
		},
		{
			name: "invalid verdict",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.VerdictRule{}}})
			},
			err: "invalid verdict",
		},
		{
			name: "comment too long",
			tweak: func(r *ruleset.Ruleset) {
				r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{&ruleset.VerdictRule{Verdict: accept(), Comment: strings.Repeat("x", 129)}}})
			},
			err: "comment longer than 128",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := NewFake()
			if _, err := f.Sync(ctx, fullRuleset()); err != nil {
				t.Fatal(err)
			}
			before := f.Ruleset()
			_, err := f.Sync(ctx, fullRuleset(tt.tweak))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Sync error = %v, want one containing %q", err, tt.err)
			}
			if f.Ruleset() != before {
				t.Error("a rejected Sync changed the committed state")
			}
			// The same bad input fails from an empty table too.
			if _, err := NewFake().Sync(ctx, fullRuleset(tt.tweak)); err == nil {
				t.Error("Sync into an empty Fake accepted the bad ruleset")
			}
		})
	}
}

func TestFake_FailNextSyncAndCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := NewFake()
	boom := errors.New("boom")
	f.FailNextSync(boom)
	if _, err := f.Sync(ctx, fullRuleset()); !errors.Is(err, boom) {
		t.Fatalf("Sync error = %v, want boom", err)
	}
	if f.Ruleset() != nil {
		t.Fatal("failed Sync created a table")
	}
	st, err := f.Sync(ctx, fullRuleset())
	if err != nil || !st.Full {
		t.Fatalf("Sync after failure: %+v, %v; want a full sync", st, err)
	}
	if err := f.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Ruleset() != nil {
		t.Fatal("Cleanup left a table")
	}
	st, err = f.Sync(ctx, fullRuleset())
	if err != nil || !st.Full || st.Ops != ruleset.Diff(nil, fullRuleset()).Ops() {
		t.Fatalf("Sync after Cleanup: %+v, %v; want a full sync of everything", st, err)
	}
}

// TestFake_PlanOrder drives the Fake through changes whose batch order
// matters; the Fake applies the Backend's step order and rejects dangling
// references at every step.
func TestFake_PlanOrder(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name  string
		tweak func(*ruleset.Ruleset)
	}{
		{"policy removed: chain and sets deleted after the map entry", func(r *ruleset.Ruleset) {
			r.Chains = removeChain(r.Chains, "pol-a")
			r.Set("ing4").Elements = r.Set("ing4").Elements[1:]
			r.Sets = removeSet(r.Sets, "peer4")
			r.Chain("pol-a") // no-op: already gone
		}},
		{"interval replaced by an overlapping one", func(r *ruleset.Ruleset) {
			r.Set("blk4").Elements[0] = rng("10.1.0.0", "10.1.127.255")
		}},
		{"set changes type: rebuild", func(r *ruleset.Ruleset) {
			r.Set("empty4").Interval = true
		}},
		{"base chain priority change", func(r *ruleset.Ruleset) {
			r.Chain("input").Base = &ruleset.Base{Hook: ruleset.HookInput, Priority: 100, Policy: ruleset.Accept}
		}},
		{"base chain dropped", func(r *ruleset.Ruleset) {
			r.Chains = removeChain(r.Chains, "postrouting")
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := NewFake()
			if _, err := f.Sync(ctx, fullRuleset()); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Sync(ctx, fullRuleset(fixRefs(s.tweak))); err != nil {
				t.Fatal(err)
			}
			// And back.
			if _, err := f.Sync(ctx, fullRuleset()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// fixRefs wraps a tweak that removes objects so that rules referring to
// them go too.
func fixRefs(tweak func(*ruleset.Ruleset)) func(*ruleset.Ruleset) {
	return func(r *ruleset.Ruleset) {
		tweak(r)
		r.Sort()
		for _, c := range r.Chains {
			var keep []ruleset.Rule
			for _, rule := range c.Rules {
				ok := true
				for _, n := range rule.SetRefs() {
					if r.Set(n) == nil {
						ok = false
					}
				}
				if j := ruleset.JumpTarget(rule); j != "" && r.Chain(j) == nil {
					ok = false
				}
				if ok {
					keep = append(keep, rule)
				}
			}
			c.Rules = keep
		}
	}
}

func removeChain(cs []*ruleset.Chain, name string) []*ruleset.Chain {
	var out []*ruleset.Chain
	for _, c := range cs {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

func removeSet(ss []*ruleset.Set, name string) []*ruleset.Set {
	var out []*ruleset.Set
	for _, s := range ss {
		if s.Name != name {
			out = append(out, s)
		}
	}
	return out
}

func TestFake_RejectsChainChangedUnderSameName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := NewFake()
	if _, err := f.Sync(ctx, fullRuleset()); err != nil {
		t.Fatal(err)
	}
	_, err := f.Sync(ctx, fullRuleset(func(r *ruleset.Ruleset) {
		r.Chain("pol-c").Rules = []ruleset.Rule{&ruleset.VerdictRule{Verdict: drop()}}
	}))
	if err == nil || !strings.Contains(err.Error(), "content hashes") {
		t.Fatalf("Sync error = %v, want a content-hash complaint", err)
	}
}

func TestSync_RejectsBadInputBeforeTouchingTheKernel(t *testing.T) {
	t.Parallel()
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{NetNS: -1}); err == nil {
		t.Error("New accepted a negative namespace fd")
	}
	unsorted := fullRuleset()
	unsorted.Sets[0], unsorted.Sets[1] = unsorted.Sets[1], unsorted.Sets[0]
	dup := fullRuleset()
	dup.Chains = append(dup.Chains, dup.Chains[len(dup.Chains)-1])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		r    *ruleset.Ruleset
		err  string
	}{
		{"unsorted sets", context.Background(), unsorted, "not sorted"},
		{"duplicate chain", context.Background(), dup, "duplicated"},
		{"cancelled context", ctx, fullRuleset(), "context canceled"},
	}
	for _, tt := range tests {
		for name, be := range map[string]Interface{"backend": b, "fake": NewFake()} {
			if _, err := be.Sync(tt.ctx, tt.r); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %s: Sync error = %v, want %q", tt.name, name, err, tt.err)
			}
		}
	}
}
