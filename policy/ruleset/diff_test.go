package ruleset

import (
	"net/netip"
	"reflect"
	"testing"
)

// baseRuleset is a small Ruleset of every kind of object: a peer set, a port
// set, an ingress map jumping to a policy chain, and two base chains.
func baseRuleset(tweaks ...func(*Ruleset)) *Ruleset {
	r := &Ruleset{
		Sets: []*Set{
			{Name: "peers-a", Key: KeyIPv4, Elements: []Element{
				{Addr: netip.MustParseAddr("10.0.0.1")},
				{Addr: netip.MustParseAddr("10.0.0.2")},
			}},
			{Name: "ports-a", Key: KeyProtoPort, Interval: true, Elements: []Element{
				{Proto: 6, Port: 80, PortEnd: 80},
			}},
			{Name: "ingress4", Key: KeyIPv4, Map: true, Elements: []Element{
				{Addr: netip.MustParseAddr("10.0.0.5"), Verdict: Verdict{Kind: Jump, Chain: "pol-a"}},
			}},
		},
		Chains: []*Chain{
			{Name: "input", Base: &Base{Hook: HookInput, Priority: 110, Policy: Accept}, Rules: []Rule{
				&CtRule{States: CtEstablished | CtRelated, Verdict: Verdict{Kind: Accept}},
				&DispatchRule{Family: 4, Field: Daddr, Map: "ingress4"},
			}},
			{Name: "pol-a", Rules: []Rule{
				&AllowRule{Family: 4, PeerField: Saddr, PeerSet: "peers-a", PortSet: "ports-a", Verdict: Verdict{Kind: Accept}},
				&VerdictRule{Verdict: Verdict{Kind: Drop}},
			}},
			{Name: "postrouting", Base: &Base{Hook: HookPostrouting, Priority: 95, Policy: Accept}, Rules: []Rule{
				&FibLocalRule{Verdict: Verdict{Kind: Accept}},
			}},
		},
	}
	r.Sort()
	for _, tw := range tweaks {
		tw(r)
		r.Sort()
	}
	return r
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestDiff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		old    *Ruleset
		new    *Ruleset
		check  func(t *testing.T, p *Plan)
		ops    int
		counts PlanCounts
	}{
		{
			name: "nil old adds everything",
			old:  nil,
			new:  baseRuleset(),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "AddSets", setNames(p.AddSets), "ingress4", "peers-a", "ports-a")
				wantNames(t, "AddChains", chainNames(p.AddChains), "pol-a")
				wantNames(t, "AddBaseChains", chainNames(p.AddBaseChains), "input", "postrouting")
			},
			// 3 sets + 4 elements, 3 chains + 5 rules.
			ops:    15,
			counts: PlanCounts{Sets: 3, Elements: 4, Chains: 3, Rules: 5},
		},
		{
			name: "equal rulesets give an empty plan",
			old:  baseRuleset(),
			new:  baseRuleset(),
		},
		{
			name: "peer set element added and removed",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				s := r.Set("peers-a")
				s.Replace([]Element{{Addr: addr("10.0.0.1")}, {Addr: addr("10.0.0.3")}})
			}),
			check: func(t *testing.T, p *Plan) {
				wantElems(t, p.AddElements, "peers-a", "10.0.0.3")
				wantElems(t, p.DelElements, "peers-a", "10.0.0.2")
			},
			ops:    2,
			counts: PlanCounts{Elements: 2},
		},
		{
			name: "map entry whose verdict changed is deleted and re-added",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Set("ingress4").Elements[0].Verdict = Verdict{Kind: Drop}
			}),
			check: func(t *testing.T, p *Plan) {
				wantElems(t, p.DelElements, "ingress4", "10.0.0.5 : jump pol-a")
				wantElems(t, p.AddElements, "ingress4", "10.0.0.5 : drop")
			},
			ops:    2,
			counts: PlanCounts{Elements: 2},
		},
		{
			name: "interval element replaced by an overlapping one",
			old: baseRuleset(func(r *Ruleset) {
				r.Set("ports-a").Elements = []Element{{Proto: 6, Port: 80, PortEnd: 80}, {Proto: 17, Port: 1000, PortEnd: 2000}}
			}),
			new: baseRuleset(func(r *Ruleset) {
				r.Set("ports-a").Elements = []Element{{Proto: 6, Port: 80, PortEnd: 80}, {Proto: 17, Port: 1000, PortEnd: 3000}}
			}),
			check: func(t *testing.T, p *Plan) {
				wantElems(t, p.DelElements, "ports-a", "udp . 1000-2000")
				wantElems(t, p.AddElements, "ports-a", "udp . 1000-3000")
			},
			ops:    2,
			counts: PlanCounts{Elements: 2},
		},
		{
			name: "interval address ranges compare by rendered key",
			old: baseRuleset(func(r *Ruleset) {
				r.Sets = append(r.Sets, &Set{Name: "blk", Key: KeyIPv4, Interval: true, Elements: []Element{
					{Addr: addr("10.1.0.0"), AddrEnd: addr("10.1.255.255")},
					{Addr: addr("10.2.0.1")},
				}})
			}),
			new: baseRuleset(func(r *Ruleset) {
				r.Sets = append(r.Sets, &Set{Name: "blk", Key: KeyIPv4, Interval: true, Elements: []Element{
					{Addr: addr("10.1.0.0"), AddrEnd: addr("10.1.255.255")},
					{Addr: addr("10.2.0.1"), AddrEnd: addr("10.2.0.1")},
				}})
			}),
		},
		{
			name: "new policy adds a set, a chain and a map entry",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Sets = append(r.Sets, &Set{Name: "peers-b", Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.9")}}})
				r.Chains = append(r.Chains, &Chain{Name: "pol-b", Rules: []Rule{
					&AllowRule{Family: 4, PeerField: Saddr, PeerSet: "peers-b", Verdict: Verdict{Kind: Accept}},
				}})
				m := r.Set("ingress4")
				m.Elements = append(m.Elements, Element{Addr: addr("10.0.0.6"), Verdict: Verdict{Kind: Jump, Chain: "pol-b"}})
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "AddSets", setNames(p.AddSets), "peers-b")
				wantNames(t, "AddChains", chainNames(p.AddChains), "pol-b")
				wantElems(t, p.AddElements, "ingress4", "10.0.0.6 : jump pol-b")
			},
			// set + element, chain + rule, map entry.
			ops:    5,
			counts: PlanCounts{Sets: 1, Elements: 2, Chains: 1, Rules: 1},
		},
		{
			name: "removed policy deletes its chain and set",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Sets = r.Sets[:0:0]
				r.Sets = append(r.Sets, &Set{Name: "ingress4", Key: KeyIPv4, Map: true})
				r.Chains = []*Chain{r.Chain("input"), r.Chain("postrouting")}
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "DelSets", setNames(p.DelSets), "peers-a", "ports-a")
				wantNames(t, "DelChains", chainNames(p.DelChains), "pol-a")
				wantElems(t, p.DelElements, "ingress4", "10.0.0.5 : jump pol-a")
			},
			ops:    4,
			counts: PlanCounts{Sets: 2, Elements: 1, Chains: 1},
		},
		{
			name: "base chain rule change refills it",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				c := r.Chain("input")
				c.Rules = append(c.Rules, &VerdictRule{Verdict: Verdict{Kind: Drop}})
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillBaseChains", chainNames(p.RefillBaseChains), "input")
			},
			ops:    4,
			counts: PlanCounts{Chains: 1, Rules: 3},
		},
		{
			name: "base chain comment change refills it",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chain("postrouting").Rules = []Rule{&FibLocalRule{Verdict: Verdict{Kind: Accept}, Comment: "node"}}
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillBaseChains", chainNames(p.RefillBaseChains), "postrouting")
			},
			ops:    2,
			counts: PlanCounts{Chains: 1, Rules: 1},
		},
		{
			name: "base chain policy change refills it in place",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chain("postrouting").Base = &Base{Hook: HookPostrouting, Priority: 95, Policy: Drop}
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillBaseChains", chainNames(p.RefillBaseChains), "postrouting")
			},
			ops:    2,
			counts: PlanCounts{Chains: 1, Rules: 1},
		},
		{
			name: "base chain priority change replaces it",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chain("postrouting").Base = &Base{Hook: HookPostrouting, Priority: 90, Policy: Accept}
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "ReplaceBaseChains", chainNames(p.ReplaceBaseChains), "postrouting")
				wantNames(t, "RefillBaseChains", chainNames(p.RefillBaseChains))
			},
			// delete + add + one rule.
			ops:    3,
			counts: PlanCounts{Chains: 1, Rules: 1},
		},
		{
			name: "base chain no longer declared is deleted",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chains = []*Chain{r.Chain("input"), r.Chain("pol-a")}
			}),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "DelChains", chainNames(p.DelChains), "postrouting")
			},
			ops:    1,
			counts: PlanCounts{Chains: 1},
		},
		{
			name: "regular chain rules are not compared",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Chain("pol-a").Rules = nil
			}),
		},
		{
			name: "set type change rebuilds",
			old:  baseRuleset(),
			new: baseRuleset(func(r *Ruleset) {
				r.Set("peers-a").Interval = true
			}),
			check: func(t *testing.T, p *Plan) {
				if !p.Rebuild {
					t.Error("Rebuild = false, want true")
				}
				wantNames(t, "DelSets", setNames(p.DelSets), "ingress4", "peers-a", "ports-a")
				wantNames(t, "AddSets", setNames(p.AddSets), "ingress4", "peers-a", "ports-a")
				wantNames(t, "DelChains", chainNames(p.DelChains), "pol-a")
				wantNames(t, "AddChains", chainNames(p.AddChains), "pol-a")
				wantNames(t, "RefillBaseChains", chainNames(p.RefillBaseChains), "input", "postrouting")
			},
			// 3 sets deleted, 3 sets + 4 elements added, pol-a deleted and
			// added with 2 rules, 2 base chains refilled with 3 rules.
			ops:    19,
			counts: PlanCounts{Sets: 6, Elements: 4, Chains: 4, Rules: 5},
		},
		{
			name: "regular chain read back with kernel rules is refilled",
			old: baseRuleset(func(r *Ruleset) {
				r.Chain("pol-a").Rules = []Rule{&KernelRule{Handle: 4}, &KernelRule{Handle: 5}}
			}),
			new: baseRuleset(),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillChains", chainNames(p.RefillChains), "pol-a")
				wantNames(t, "AddChains", chainNames(p.AddChains))
				wantNames(t, "DelChains", chainNames(p.DelChains))
			},
			// pol-a flushed and refilled with its 2 rules.
			ops:    3,
			counts: PlanCounts{Chains: 1, Rules: 2},
		},
		{
			// adopt's form of a chain the kernel holds empty.
			name: "regular chain read back empty is refilled",
			old:  baseRuleset(func(r *Ruleset) { r.Chain("pol-a").Rules = []Rule{&KernelRule{}} }),
			new:  baseRuleset(),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillChains", chainNames(p.RefillChains), "pol-a")
			},
			ops:    3,
			counts: PlanCounts{Chains: 1, Rules: 2},
		},
		{
			name: "rebuild adds a read-back chain rather than refilling it",
			old: baseRuleset(func(r *Ruleset) {
				r.Chain("pol-a").Rules = []Rule{&KernelRule{Handle: 4}}
			}),
			new: baseRuleset(func(r *Ruleset) { r.Set("peers-a").Interval = true }),
			check: func(t *testing.T, p *Plan) {
				wantNames(t, "RefillChains", chainNames(p.RefillChains))
				wantNames(t, "DelChains", chainNames(p.DelChains), "pol-a")
				wantNames(t, "AddChains", chainNames(p.AddChains), "pol-a")
			},
			ops:    19,
			counts: PlanCounts{Sets: 6, Elements: 4, Chains: 4, Rules: 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := Diff(tt.old, tt.new)
			if tt.check != nil {
				tt.check(t, p)
			}
			if got := p.Ops(); got != tt.ops {
				t.Errorf("Ops() = %d, want %d (plan %+v)", got, tt.ops, p)
			}
			if got := p.Counts(); got != tt.counts {
				t.Errorf("Counts() = %+v, want %+v", got, tt.counts)
			}
			if got, want := p.Empty(), tt.ops == 0; got != want {
				t.Errorf("Empty() = %v, want %v", got, want)
			}
		})
	}
}

// TestDiff_PodRelabel is the common partial sync: one pod leaves a peer set
// and joins another, and its map entry moves to another policy chain.
func TestDiff_PodRelabel(t *testing.T) {
	t.Parallel()
	both := func(r *Ruleset) {
		r.Sets = append(r.Sets, &Set{Name: "peers-b", Key: KeyIPv4, Elements: []Element{{Addr: addr("10.0.0.7")}}})
		r.Chains = append(r.Chains, &Chain{Name: "pol-b", Rules: []Rule{&VerdictRule{Verdict: Verdict{Kind: Accept}}}})
	}
	old := baseRuleset(both)
	new := baseRuleset(both, func(r *Ruleset) {
		r.Set("peers-a").Replace([]Element{{Addr: addr("10.0.0.1")}})
		r.Set("peers-b").Replace([]Element{{Addr: addr("10.0.0.2")}, {Addr: addr("10.0.0.7")}})
		r.Set("ingress4").Elements[0].Verdict = Verdict{Kind: Jump, Chain: "pol-b"}
	})
	p := Diff(old, new)
	wantElems(t, p.DelElements, "peers-a", "10.0.0.2")
	wantElems(t, p.AddElements, "peers-b", "10.0.0.2")
	wantElems(t, p.DelElements, "ingress4", "10.0.0.5 : jump pol-a")
	wantElems(t, p.AddElements, "ingress4", "10.0.0.5 : jump pol-b")
	if got := p.Ops(); got != 4 {
		t.Errorf("Ops() = %d, want 4: %+v", got, p)
	}
	// Applying the plan to old must give new.
	if got, want := applyForTest(old, p).Text(), new.Text(); got != want {
		t.Errorf("old + plan != new\n got:\n%s\nwant:\n%s", got, want)
	}
}

// TestDiff_ApplyGivesNew checks, for every case pair, that applying the plan
// to old by the plan's own definition yields new.
func TestDiff_ApplyGivesNew(t *testing.T) {
	t.Parallel()
	variants := []*Ruleset{
		{},
		baseRuleset(),
		baseRuleset(func(r *Ruleset) { r.Set("peers-a").Replace(nil) }),
		baseRuleset(func(r *Ruleset) { r.Set("ingress4").Elements[0].Verdict = Verdict{Kind: Accept} }),
		baseRuleset(func(r *Ruleset) { r.Set("ports-a").Key = KeyIPv4ProtoPort }),
		baseRuleset(func(r *Ruleset) { r.Chain("input").Rules = nil }),
		baseRuleset(func(r *Ruleset) { r.Chain("input").Base.Priority = 0 }),
		baseRuleset(func(r *Ruleset) { r.Limits = []*Limit{{Name: LimitName(10, 5), Rate: 10, Burst: 5}} }),
		baseRuleset(func(r *Ruleset) { r.Limits = []*Limit{{Name: LimitName(20, 5), Rate: 20, Burst: 5}} }),
		// What adopt reads when someone replaced the object: same name, other rate.
		baseRuleset(func(r *Ruleset) { r.Limits = []*Limit{{Name: LimitName(20, 5), Rate: 7, Burst: 5}} }),
		baseRuleset(func(r *Ruleset) { r.SizeSets() }),
		baseRuleset(func(r *Ruleset) { r.SizeSets(); r.Set("peers-a").Size, r.Set("ingress4").Size = 64, 32 }),
	}
	for i, old := range variants {
		for j, new := range variants {
			got := applyForTest(old, Diff(old, new))
			if got.Text() != new.Text() {
				t.Errorf("variant %d -> %d: got\n%s\nwant\n%s", i, j, got.Text(), new.Text())
			}
			if i == j && !Diff(old, new).Empty() {
				t.Errorf("variant %d -> itself: plan not empty", i)
			}
		}
	}
}

// TestDiff_RefilledChainGivesNew checks that a plan repairing regular
// chains read back with other contents (empty, fewer or more rules) gives the
// new Ruleset.
func TestDiff_RefilledChainGivesNew(t *testing.T) {
	t.Parallel()
	new := baseRuleset()
	for _, rules := range [][]Rule{{&KernelRule{}}, {&KernelRule{Handle: 1}}, {&KernelRule{Handle: 1}, &KernelRule{Handle: 2}, &KernelRule{Handle: 3}}} {
		old := baseRuleset(func(r *Ruleset) { r.Chain("pol-a").Rules = rules })
		if got, want := applyForTest(old, Diff(old, new)).Text(), new.Text(); got != want {
			t.Errorf("%d read-back rules: old + plan != new\n got:\n%s\nwant:\n%s", len(rules), got, want)
		}
	}
}

// applyForTest applies p to a copy of old the way the Plan documents it.
func applyForTest(old *Ruleset, p *Plan) *Ruleset {
	sets := map[string]*Set{}
	for _, s := range old.Sets {
		c := *s
		c.Replace(s.Elems())
		sets[s.Name] = &c
	}
	chains := map[string]*Chain{}
	for _, c := range old.Chains {
		chains[c.Name] = c
	}
	for _, es := range p.DelElements {
		s := sets[es.Set.Name]
		for _, d := range es.Elements {
			for i, e := range s.Elements {
				if s.elementID(e) == s.elementID(d) {
					s.Elements = append(s.Elements[:i], s.Elements[i+1:]...)
					break
				}
			}
		}
	}
	limits := map[string]*Limit{}
	for _, l := range old.Limits {
		limits[l.Name] = l
	}
	for _, l := range p.DelLimits {
		delete(limits, l.Name)
	}
	for _, l := range p.AddLimits {
		limits[l.Name] = l
	}
	for _, c := range p.DelChains {
		delete(chains, c.Name)
	}
	for _, c := range p.ReplaceBaseChains {
		delete(chains, c.Name)
	}
	for _, s := range p.DelSets {
		delete(sets, s.Name)
	}
	for _, s := range p.AddSets {
		c := *s
		c.Replace(s.Elems())
		sets[s.Name] = &c
	}
	for _, list := range [][]*Chain{p.AddChains, p.RefillChains} {
		for _, c := range list {
			chains[c.Name] = c
		}
	}
	for _, es := range p.AddElements {
		s := sets[es.Set.Name]
		s.Elements = append(s.Elements, es.Elements...)
	}
	for _, list := range [][]*Chain{p.AddBaseChains, p.ReplaceBaseChains, p.RefillBaseChains} {
		for _, c := range list {
			chains[c.Name] = c
		}
	}
	out := &Ruleset{}
	for _, l := range limits {
		out.Limits = append(out.Limits, l)
	}
	for _, s := range sets {
		out.Sets = append(out.Sets, s)
	}
	for _, c := range chains {
		out.Chains = append(out.Chains, c)
	}
	out.Sort()
	return out
}

func setNames(sets []*Set) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s.Name)
	}
	return out
}

func chainNames(chains []*Chain) []string {
	var out []string
	for _, c := range chains {
		out = append(out, c.Name)
	}
	return out
}

func wantNames(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// wantElems checks that list holds exactly the given elements of set, as
// text; elements of other sets are ignored.
func wantElems(t *testing.T, list []SetElements, set string, want ...string) {
	t.Helper()
	var got []string
	for _, es := range list {
		if es.Set.Name != set {
			continue
		}
		for _, e := range es.Elements {
			got = append(got, es.Set.ElementText(e))
		}
	}
	wantNames(t, "elements of "+set, got, want...)
}

// TestDiffElements_UnsortedAndDuplicates checks that unsorted or duplicated
// element lists give the same result as sorted ones.
func TestDiffElements_UnsortedAndDuplicates(t *testing.T) {
	t.Parallel()
	mk := func(elems ...Element) *Set { return &Set{Name: "m", Key: KeyIPv4, Map: true, Elements: elems} }
	a := Element{Addr: addr("10.0.0.1"), Verdict: Verdict{Kind: Accept}}
	b := Element{Addr: addr("10.0.0.2"), Verdict: Verdict{Kind: Accept}}
	b2 := Element{Addr: addr("10.0.0.2"), Verdict: Verdict{Kind: Drop}}
	c := Element{Addr: addr("10.0.0.3"), Verdict: Verdict{Kind: Accept}}
	tests := []struct {
		name     string
		old, new *Set
		add, del int
	}{
		{"sorted", mk(a, b), mk(b2, c), 2, 2},
		{"unsorted", mk(b, a), mk(c, b2), 2, 2},
		{"duplicates", mk(a, a, b), mk(a, b, b), 0, 0},
		{"same set", mk(a), nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := tt.new
			if n == nil {
				n = tt.old
			}
			add, del := diffElements(tt.old, n)
			if len(add) != tt.add || len(del) != tt.del {
				t.Errorf("add %v del %v, want %d adds and %d deletes", add, del, tt.add, tt.del)
			}
		})
	}
}

// TestDiff_ResizedSetIsRecreatedAlone: a set whose size changes is deleted
// and added again with its elements, and exactly the chains that look it up
// are refilled (a regular chain for a peer set, the base chain for a
// dispatch map); nothing else is rebuilt.
func TestDiff_ResizedSetIsRecreatedAlone(t *testing.T) {
	t.Parallel()
	old := baseRuleset(func(r *Ruleset) { r.SizeSets() })
	for _, tc := range []struct {
		set, chain string
		base       bool
	}{
		{set: "peers-a", chain: "pol-a"},
		{set: "ingress4", chain: "input", base: true},
	} {
		new := baseRuleset(func(r *Ruleset) { r.SizeSets(); r.Set(tc.set).Size *= 2 })
		p := Diff(old, new)
		if p.Rebuild {
			t.Errorf("%s resized: the plan rebuilds the table", tc.set)
		}
		wantNames(t, tc.set+": DelSets", setNames(p.DelSets), tc.set)
		wantNames(t, tc.set+": AddSets", setNames(p.AddSets), tc.set)
		refilled, other := p.RefillChains, p.RefillBaseChains
		if tc.base {
			refilled, other = other, refilled
		}
		wantNames(t, tc.set+": refilled chains", chainNames(refilled), tc.chain)
		wantNames(t, tc.set+": other refilled chains", chainNames(other))
		wantNames(t, tc.set+": AddChains", chainNames(p.AddChains))
		if len(p.AddElements)+len(p.DelElements) != 0 {
			t.Errorf("%s resized: element changes %v %v besides the recreated set", tc.set, p.AddElements, p.DelElements)
		}
		if got := applyForTest(old, p); got.Text() != new.Text() {
			t.Errorf("%s resized: old + plan != new\n got:\n%s\nwant:\n%s", tc.set, got.Text(), new.Text())
		}
	}
}
