package nft

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/ruleset"
)

// normalizedListing is `nft list table` with its blocks (sets, maps,
// chains) and the elements of each set sorted, so that tables with the same
// content compare equal whatever order their objects were created in. Rule
// order within a chain is kept.
func normalizedListing(t *testing.T, ns string) string {
	t.Helper()
	return normalizeListing(listTable(t, ns))
}

func normalizeListing(s string) string {
	var blocks []string
	var cur []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && strings.HasSuffix(line, "{"):
			cur = []string{line}
		case line == "\t}":
			cur = append(cur, line)
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		case cur != nil && strings.HasPrefix(strings.TrimSpace(line), "elements = {"):
			// A builder, not +=: a set of 100k elements spans as many
			// lines, and repeated concatenation would be quadratic.
			var sb strings.Builder
			sb.WriteString(strings.TrimSpace(line))
			for !strings.HasSuffix(strings.TrimSpace(lines[i]), "}") && i+1 < len(lines) {
				i++
				sb.WriteString(" " + strings.TrimSpace(lines[i]))
			}
			text := strings.TrimSuffix(strings.TrimPrefix(sb.String(), "elements = {"), "}")
			elems := strings.Split(text, ",")
			for j := range elems {
				elems[j] = strings.TrimSpace(elems[j])
			}
			sort.Strings(elems)
			cur = append(cur, "\t\telements = { "+strings.Join(elems, ", ")+" }")
		case cur != nil && line != "":
			cur = append(cur, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(blocks, "\n")
}

// expectListing loads want with nft -f into a fresh namespace and requires
// the namespace ns to hold the same table.
func expectListing(t *testing.T, ns string, want *ruleset.Ruleset) {
	t.Helper()
	text := want.Text()
	refListings.Lock()
	exp, ok := refListings.m[text]
	refListings.Unlock()
	if !ok {
		ref, _ := kernelNS(t)
		applyText(t, ref, text)
		exp = normalizedListing(t, ref)
		refListings.Lock()
		refListings.m[text] = exp
		refListings.Unlock()
	}
	if got := normalizedListing(t, ns); got != exp {
		t.Fatalf("table differs from nft -f of the wanted Ruleset (-want +got):\n%s", lineDiff(exp, got))
	}
}

// refListings caches the normalized listing of nft -f of a Ruleset's text.
var refListings = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

func mustSync(t *testing.T, b *Backend, want *ruleset.Ruleset) SyncStats {
	t.Helper()
	st, err := b.Sync(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantStats(t *testing.T, what string, got SyncStats, full bool, ops int) {
	t.Helper()
	if got.Full != full || got.Ops != ops {
		t.Errorf("%s: Sync stats %+v, want Full=%v Ops=%d", what, got, full, ops)
	}
}

func TestSync_FirstSyncIntoEmptyNamespace(t *testing.T) {
	ns, b := kernelNS(t)
	want := fullRuleset()
	st := mustSync(t, b, want)
	wantStats(t, "first sync", st, true, ruleset.Diff(nil, want).Ops())
	c := ruleset.Diff(nil, want).Counts()
	if st.Sets != c.Sets || st.Elements != c.Elements || st.Chains != c.Chains || st.Rules != c.Rules || st.Duration <= 0 {
		t.Errorf("stats %+v do not match plan counts %+v", st, c)
	}
	expectListing(t, ns, want)
	wantStats(t, "same ruleset again", mustSync(t, b, fullRuleset()), false, 0)
}

// Partial syncs write only the difference; the counts are exact.
var partialCases = []struct {
	name  string
	tweak func(*ruleset.Ruleset)
	ops   int
	// undo is the number of operations of the way back.
	undo int
}{
	// peer4 -10.0.0.2, empty4 +10.0.0.2, ing4 10.0.0.2 drop -> jump pol-c
	// (delete + add).
	{"pod relabel", podRelabel, 4, 4},
	// peer4 +pod, ing4 +pod, np4 +pod . tcp . 8080.
	{"pod add", podAdd, 3, 3},
	// set + 2 elements, chain + 2 rules, map entry; back: the set, the
	// chain and the map entry are deleted.
	{"policy add", policyAdd, 7, 3},
}

func podAdd(r *ruleset.Ruleset) {
	pod := ip("10.0.0.9")
	r.Set("peer4").Elements = append(r.Set("peer4").Elements, ruleset.Element{Addr: pod})
	r.Set("ing4").Elements = append(r.Set("ing4").Elements, ruleset.Element{Addr: pod, Verdict: jump("pol-a")})
	r.Set("np4").Elements = append(r.Set("np4").Elements, ruleset.Element{Addr: pod, Proto: 6, Port: 8080, PortEnd: 8080})
}

func policyAdd(r *ruleset.Ruleset) {
	r.Sets = append(r.Sets, &ruleset.Set{Name: "peer-x", Key: ruleset.KeyIPv4, Elements: []ruleset.Element{
		{Addr: ip("10.0.0.1")}, {Addr: ip("10.0.0.3")},
	}})
	r.Chains = append(r.Chains, &ruleset.Chain{Name: "pol-x", Rules: []ruleset.Rule{
		&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "peer-x", PortSet: "ports", Verdict: accept()},
		&ruleset.VerdictRule{Verdict: drop()},
	}})
	r.Set("ing4").Elements = append(r.Set("ing4").Elements, ruleset.Element{Addr: ip("10.0.0.4"), Verdict: jump("pol-x")})
}

func TestSync_Partial(t *testing.T) {
	for _, tt := range partialCases {
		t.Run(tt.name, func(t *testing.T) {
			ns, b := kernelNS(t)
			mustSync(t, b, fullRuleset())
			want := fullRuleset(tt.tweak)
			wantStats(t, tt.name, mustSync(t, b, want), false, tt.ops)
			expectListing(t, ns, want)
			// And back, with the same number of operations.
			wantStats(t, tt.name+" undone", mustSync(t, b, fullRuleset()), false, tt.undo)
			expectListing(t, ns, fullRuleset())
		})
	}
}

func TestSync_AdoptOnStart(t *testing.T) {
	ns, _ := kernelNS(t)
	applyText(t, ns, fullRuleset().Text())
	for _, tt := range partialCases {
		t.Run(tt.name, func(t *testing.T) {
			// A new Backend (a restarted policyd) adopts the table: the
			// same ruleset writes nothing.
			b := newBackendIn(t, ns)
			wantStats(t, "adopt same ruleset", mustSync(t, b, fullRuleset()), true, 0)
			b = newBackendIn(t, ns)
			want := fullRuleset(tt.tweak)
			wantStats(t, "adopt changed ruleset", mustSync(t, b, want), true, tt.ops)
			expectListing(t, ns, want)
			wantStats(t, "back", mustSync(t, b, fullRuleset()), false, tt.undo)
		})
	}
}

// newBackendIn returns a Backend for the existing namespace name.
func newBackendIn(t *testing.T, name string) *Backend {
	t.Helper()
	h, err := nsHandle(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b, err := New(Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSync_RepairsChangesBehindOurBack(t *testing.T) {
	tests := []struct {
		name string
		cmd  []string
		ops  int
	}{
		{"element deleted", []string{"delete", "element", "inet", "policyd", "peer4", "{ 10.0.0.1 }"}, 1},
		{"map entry deleted", []string{"delete", "element", "inet", "policyd", "ing4", "{ 10.0.0.1 }"}, 1},
		{"interval element deleted", []string{"delete", "element", "inet", "policyd", "blk4", "{ 10.2.0.1-10.2.0.5 }"}, 1},
		{"element added", []string{"add", "element", "inet", "policyd", "peer4", "{ 10.0.0.77 }"}, 1},
		// Flush and refill: 1 + 6 rules.
		{"base chain flushed", []string{"flush", "chain", "inet", "policyd", "input"}, 9}, // the chain and its 8 rules
		{"base chain rule added", []string{"add", "rule", "inet", "policyd", "postrouting", "accept"}, 6},
		{"base chain rule deleted", []string{"-a", "-f", "-"}, 6}, // see below
		{"set flushed", []string{"flush", "set", "inet", "policyd", "peer6"}, 2},
		{"chain added", []string{"add", "chain", "inet", "policyd", "intruder"}, 1},
		{"another table changed", []string{"add", "table", "ip", "other"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, b := kernelNS(t)
			want := fullRuleset()
			mustSync(t, b, want)
			if tt.cmd[0] == "-a" {
				deleteLastRule(t, ns, "postrouting")
			} else {
				netnstest.MustExec(t, ns, append([]string{"nft"}, tt.cmd...)...)
			}
			wantStats(t, "repair", mustSync(t, b, want), true, tt.ops)
			expectListing(t, ns, want)
			wantStats(t, "after repair", mustSync(t, b, want), false, 0)
		})
	}
}

// deleteLastRule deletes the last rule of a chain by its handle.
func deleteLastRule(t *testing.T, ns, chain string) {
	t.Helper()
	out := netnstest.MustExec(t, ns, "nft", "-a", "list", "chain", "inet", "policyd", chain)
	handle := ""
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "# handle "); i >= 0 && !strings.Contains(line, "chain ") {
			handle = strings.TrimSpace(line[i+len("# handle "):])
		}
	}
	if handle == "" {
		t.Fatalf("no rule handle in:\n%s", out)
	}
	netnstest.MustExec(t, ns, "nft", "delete", "rule", "inet", "policyd", chain, "handle", handle)
}

func TestSync_KernelRejectsBatch(t *testing.T) {
	ns, b := kernelNS(t)
	want := fullRuleset()
	mustSync(t, b, want)
	before := normalizedListing(t, ns)
	// Overlapping intervals pass the lowering but the kernel rejects them:
	// the whole batch must be aborted.
	bad := fullRuleset(podAdd, func(r *ruleset.Ruleset) {
		s := r.Set("blk4")
		s.Elements = append(s.Elements, rng("10.1.2.0", "10.1.2.255"))
	})
	if _, err := b.Sync(context.Background(), bad); err == nil {
		t.Fatal("Sync of overlapping intervals succeeded")
	}
	if got := normalizedListing(t, ns); got != before {
		t.Fatalf("failed batch changed the table:\n%s", lineDiff(before, got))
	}
	// The next Sync starts from the kernel again and works.
	good := fullRuleset(podAdd)
	wantStats(t, "after failure", mustSync(t, b, good), true, 3)
	expectListing(t, ns, good)
}

func TestSync_InvalidRulesetSendsNothing(t *testing.T) {
	ns, b := kernelNS(t)
	mustSync(t, b, fullRuleset())
	before := normalizedListing(t, ns)
	bad := fullRuleset(podAdd, func(r *ruleset.Ruleset) {
		r.Chains = append(r.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{
			&ruleset.AllowRule{Family: 4, PeerField: ruleset.Saddr, PeerSet: "missing", Verdict: accept()},
		}})
	})
	_, err := b.Sync(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), `set "missing" does not exist`) {
		t.Fatalf("Sync error = %v, want a missing set", err)
	}
	if got := normalizedListing(t, ns); got != before {
		t.Fatal("invalid ruleset changed the table")
	}
}

func TestSync_RebuildAndReplace(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*ruleset.Ruleset)
	}{
		{"set changes type", func(r *ruleset.Ruleset) { r.Set("empty4").Interval = true }},
		{"map changes type", func(r *ruleset.Ruleset) { r.Set("eg6").Interval = true }},
		{"base chain priority changes", func(r *ruleset.Ruleset) {
			r.Chain("input").Base = &ruleset.Base{Hook: ruleset.HookInput, Priority: 100, Policy: ruleset.Accept}
		}},
		{"base chain policy changes", func(r *ruleset.Ruleset) {
			r.Chain("postrouting").Base = &ruleset.Base{Hook: ruleset.HookPostrouting, Priority: 95, Policy: ruleset.Drop}
		}},
		{"base chain dropped", func(r *ruleset.Ruleset) { r.Chains = removeChain(r.Chains, "postrouting") }},
		{"everything removed", func(r *ruleset.Ruleset) { r.Sets, r.Chains = nil, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, b := kernelNS(t)
			mustSync(t, b, fullRuleset())
			want := fullRuleset(tt.tweak)
			mustSync(t, b, want)
			expectListing(t, ns, want)
			mustSync(t, b, fullRuleset())
			expectListing(t, ns, fullRuleset())
		})
	}
}

func TestCleanup_RemovesOnlyOurTable(t *testing.T) {
	ns, b := kernelNS(t)
	applyText(t, ns, "table ip keepme {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tcounter\n\t}\n}\n")
	mustSync(t, b, fullRuleset())
	if err := b.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := netnstest.MustExec(t, ns, "nft", "list", "tables")
	if strings.Contains(out, "policyd") || !strings.Contains(out, "table ip keepme") {
		t.Fatalf("after Cleanup, tables are:\n%s", out)
	}
	if err := b.Cleanup(context.Background()); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	wantStats(t, "after cleanup", mustSync(t, b, fullRuleset()), true, ruleset.Diff(nil, fullRuleset()).Ops())
}

// bigRuleset is fullRuleset with n extra pods in peer4 and ing4.
func bigRuleset(n int, tweaks ...func(*ruleset.Ruleset)) *ruleset.Ruleset {
	return fullRuleset(append([]func(*ruleset.Ruleset){func(r *ruleset.Ruleset) {
		p, m := r.Set("peer4"), r.Set("ing4")
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)})
			p.Elements = append(p.Elements, ruleset.Element{Addr: a})
			m.Elements = append(m.Elements, ruleset.Element{Addr: a, Verdict: jump("pol-a")})
		}
	}}, tweaks...)...)
}

func TestSync_LargeBatch(t *testing.T) {
	ns, b := kernelNS(t)
	want := bigRuleset(20000)
	st := mustSync(t, b, want)
	if st.Elements < 40000 {
		t.Fatalf("stats %+v: expected over 40000 elements", st)
	}
	out := netnstest.MustExec(t, ns, "nft", "list", "set", "inet", "policyd", "peer4")
	if n := strings.Count(out, "10.1"); n < 20000 {
		t.Fatalf("peer4 lists %d of the 20000 added pods", n)
	}
	wantStats(t, "pod add in a large table", mustSync(t, b, bigRuleset(20000, podAdd)), false, 3)
}

func BenchmarkSyncPodAdd(b *testing.B) {
	for _, pods := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			netnstest.RequireRoot(b)
			_, h := netnstest.New(b, "pdbench")
			be, err := New(Options{NetNS: int(h)})
			if err != nil {
				b.Fatal(err)
			}
			base, added := bigRuleset(pods), bigRuleset(pods, podAdd)
			ctx := context.Background()
			if _, err := be.Sync(ctx, base); err != nil {
				b.Fatal(err)
			}
			ops := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				want := base
				if i%2 == 0 {
					want = added
				}
				st, err := be.Sync(ctx, want)
				if err != nil {
					b.Fatal(err)
				}
				ops += st.Ops
			}
			b.ReportMetric(float64(ops)/float64(b.N), "ops/sync")
		})
	}
}

// setSize returns the size line's value of set name in an nft listing, 0
// when the set has none.
func setSize(t *testing.T, listing, name string) uint32 {
	t.Helper()
	in := false
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && (f[0] == "set" || f[0] == "map") && f[2] == "{":
			in = f[1] == name
		case in && len(f) == 2 && f[0] == "size":
			var n uint32
			if _, err := fmt.Sscan(f[1], &n); err != nil {
				t.Fatalf("set %s: size line %q", name, line)
			}
			return n
		case in && line == "\t}":
			return 0
		}
	}
	t.Fatalf("listing has no set %s:\n%s", name, listing)
	return 0
}

// growTo gives peer4 and the dispatch map ing4 n elements each (the new
// map entries accept).
func growTo(n int) func(*ruleset.Ruleset) {
	return func(r *ruleset.Ruleset) {
		for _, name := range []string{"peer4", "ing4"} {
			s := r.Set(name)
			for i := s.Len(); i < n; i++ {
				e := ruleset.Element{Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})}
				if s.Map {
					e.Verdict = accept()
				}
				s.Elements = append(s.Elements, e)
			}
		}
	}
}

// TestSync_SizedSetsKeepTheirSizeUntilOutgrown: the kernel refuses an
// element beyond a set's size, so a set that outgrows it must be recreated
// (with the chains that look it up: a regular chain for the peer set, the
// base chain for the dispatch map) in the same batch; one that still fits
// keeps its size, whatever SizeFor says now; and a restarted agent reads
// the sizes back rather than recreating every set.
func TestSync_SizedSetsKeepTheirSizeUntilOutgrown(t *testing.T) {
	ns, b := kernelNS(t)
	sized := func(n int) *ruleset.Ruleset {
		return fullRuleset(growTo(n), func(r *ruleset.Ruleset) { r.SizeSets() })
	}
	// The table of an agent that did not size its sets: every set is
	// recreated sized, in one batch, chains refilled.
	mustSync(t, b, fullRuleset(growTo(3)))
	want := sized(3)
	hashed := 0
	for _, s := range want.Sets {
		if !s.Interval {
			hashed++
		}
	}
	if st := mustSync(t, b, want); st.Full || st.Sets != 2*hashed {
		t.Errorf("sizing an unsized table: %+v, want a partial sync deleting and adding all %d hash sets", st, hashed)
	}
	expectListing(t, ns, want)
	if got := setSize(t, listTable(t, ns), "peer4"); got != ruleset.MinSetSize {
		t.Fatalf("peer4 created with size %d, want %d", got, ruleset.MinSetSize)
	}

	// 12 elements: SizeFor(12) is 32, but 16 still holds them.
	st := mustSync(t, b, sized(12))
	wantStats(t, "grow within the size", st, false, 2*9)
	for _, name := range []string{"peer4", "ing4"} {
		if got := setSize(t, listTable(t, ns), name); got != ruleset.MinSetSize {
			t.Errorf("%s: size %d after growing within it, want %d kept", name, got, ruleset.MinSetSize)
		}
	}

	// 20 elements do not fit 16: both are recreated at 32.
	want = sized(20)
	if st, err := b.Sync(context.Background(), want); err != nil {
		t.Fatalf("grow beyond the size: %v", err)
	} else if st.Full {
		t.Errorf("grow beyond the size: a full sync")
	}
	expectListing(t, ns, want)
	if got := setSize(t, listTable(t, ns), "peer4"); got != 32 {
		t.Errorf("peer4: size %d, want 32", got)
	}

	// A restarted agent adopts the sizes: nothing to write.
	wantStats(t, "adopt sized sets", mustSync(t, newBackendIn(t, ns), sized(20)), true, 0)
}
