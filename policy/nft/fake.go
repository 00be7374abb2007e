package nft

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/policyd/policyd/policy/ruleset"
)

// Fake is an in-memory Interface for the tests of callers. Like the kernel,
// it applies each Sync as one transaction: it diffs want against its
// committed state with ruleset.Diff, interprets the plan's steps
// (ruleset.Plan.Steps, which the Backend sends too), and commits only if
// every step is valid. It
// rejects what the kernel rejects: rules that look up a missing set or one of
// the wrong type, jumps to missing or base chains, deleting a set or chain
// that is still referenced, deleting a missing element, adding a map key
// again with another verdict, and overlapping intervals.
type Fake struct {
	mu        sync.Mutex
	committed *ruleset.Ruleset // nil after New or Cleanup: no table
	synced    bool
	failNext  error
	syncs     int
	// refuse, when set, makes Sync refuse a batch that adds an element it
	// returns true for (RefuseElements).
	refuse  func(set *ruleset.Set, e ruleset.Element) bool
	refused int
}

var _ Interface = (*Fake)(nil)

// NewFake returns a Fake with no table.
func NewFake() *Fake { return &Fake{} }

// FailNextSync makes the next Sync fail with err without changing anything,
// as a failed kernel batch would.
func (f *Fake) FailNextSync(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = err
}

// RefuseElements makes every later Sync refuse, as the kernel refuses a
// value it does not accept, a wanted table holding an element for which
// refuse returns true; nothing is committed then. nil accepts every
// element again.
func (f *Fake) RefuseElements(refuse func(set *ruleset.Set, e ruleset.Element) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = refuse
}

// Refused returns how many Syncs RefuseElements refused.
func (f *Fake) Refused() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

// Ruleset returns the committed state, or nil when there is no table. The
// caller must not modify it.
func (f *Fake) Ruleset() *ruleset.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.committed
}

// Syncs returns how many Syncs were committed.
func (f *Fake) Syncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// Sync implements Interface. SyncStats.Full is true for the first Sync and
// for the first after an error or Cleanup, as for the Backend.
func (f *Fake) Sync(ctx context.Context, want *ruleset.Ruleset) (SyncStats, error) {
	start := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	stats := SyncStats{Full: !f.synced}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if want == nil {
		want = &ruleset.Ruleset{}
	}
	if err := checkSorted(want); err != nil {
		f.synced = false
		return stats, fmt.Errorf("nft sync (fake): %w", err)
	}
	if f.failNext != nil {
		err := f.failNext
		f.failNext, f.synced = nil, false
		return stats, fmt.Errorf("nft sync (fake): %w", err)
	}
	if err := checkChainNames(f.committed, want); err != nil {
		f.synced = false
		return stats, fmt.Errorf("nft sync (fake): %w", err)
	}
	want = ruleset.KeepSizes(f.committed, want)
	plan := ruleset.Diff(f.committed, want)
	c := plan.Counts()
	stats.Ops = plan.Ops()
	stats.Sets, stats.Elements, stats.Chains, stats.Rules = c.Sets, c.Elements, c.Chains, c.Rules
	if f.refuse != nil {
		for _, set := range want.Sets {
			for i := range set.Len() {
				if e := set.At(i); f.refuse(set, e) {
					f.synced = false
					f.refused++
					stats.Duration = time.Since(start)
					return stats, fmt.Errorf("nft sync (fake): commit batch of %d ops: set %s element %s: invalid argument (refused by RefuseElements)", stats.Ops, set.Name, set.ElementKey(e))
				}
			}
		}
	}
	st := newFakeStore(f.committed)
	for _, s := range plan.Steps() {
		if err := st.apply(s); err != nil {
			f.synced = false
			stats.Duration = time.Since(start)
			return stats, fmt.Errorf("nft sync (fake): %w", err)
		}
	}
	got := st.ruleset()
	if got.Text() != want.Text() {
		f.synced = false
		return stats, errors.New("nft sync (fake): state after applying the plan differs from want (a Diff bug)")
	}
	f.committed, f.synced = got, true
	f.syncs++
	stats.Duration = time.Since(start)
	return stats, nil
}

// Cleanup implements Interface: it drops the table.
func (f *Fake) Cleanup(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.committed, f.synced = nil, false
	return ctx.Err()
}

// checkChainNames rejects a regular chain that keeps its name but changes
// its rules: the Backend would not rewrite it, because regular chain names
// must be content hashes.
func checkChainNames(old, want *ruleset.Ruleset) error {
	if old == nil {
		return nil
	}
	for _, c := range want.Chains {
		o := old.Chain(c.Name)
		if c.Base != nil || o == nil || o.Base != nil {
			continue
		}
		same := len(o.Rules) == len(c.Rules)
		for i := 0; same && i < len(c.Rules); i++ {
			same = ruleset.RuleText(o.Rules[i]) == ruleset.RuleText(c.Rules[i])
		}
		if !same {
			return fmt.Errorf("regular chain %s changed its rules but kept its name (names must be content hashes)", c.Name)
		}
	}
	return nil
}

// fakeStore is the Fake's working copy during one transaction.
type fakeStore struct {
	sets   map[string]*fakeSet
	chains map[string]*ruleset.Chain
	limits map[string]ruleset.Limit
}

type fakeSet struct {
	def   ruleset.Set // type and comment; Elements unused
	elems map[string]ruleset.Element
}

func newFakeStore(r *ruleset.Ruleset) *fakeStore {
	st := &fakeStore{sets: map[string]*fakeSet{}, chains: map[string]*ruleset.Chain{}, limits: map[string]ruleset.Limit{}}
	if r == nil {
		return st
	}
	for _, l := range r.Limits {
		st.limits[l.Name] = *l
	}
	for _, s := range r.Sets {
		fs := &fakeSet{def: *s, elems: map[string]ruleset.Element{}}
		fs.def.Elements, fs.def.Addrs = nil, ruleset.AddrList{}
		for i := range s.Len() {
			e := s.At(i)
			fs.elems[s.ElementKey(e)] = e
		}
		st.sets[s.Name] = fs
	}
	for _, c := range r.Chains {
		cc := *c
		cc.Rules = append([]ruleset.Rule(nil), c.Rules...)
		st.chains[c.Name] = &cc
	}
	return st
}

func (st *fakeStore) lookup(name string) *ruleset.Set {
	if s, ok := st.sets[name]; ok {
		return &s.def
	}
	return nil
}

// referenced reports what still refers to the set or chain name.
func (st *fakeStore) setUser(name string) string {
	for _, c := range st.chains {
		for _, r := range c.Rules {
			for _, n := range r.SetRefs() {
				if n == name {
					return "chain " + c.Name
				}
			}
		}
	}
	return ""
}

// limitUser reports which chain still names the limit object name.
func (st *fakeStore) limitUser(name string) string {
	for _, c := range st.chains {
		for _, r := range c.Rules {
			if lr, ok := r.(*ruleset.LogRule); ok && lr.Limit == name {
				return "chain " + c.Name
			}
		}
	}
	return ""
}

func (st *fakeStore) chainUser(name string) string {
	for _, c := range st.chains {
		for _, r := range c.Rules {
			if ruleset.JumpTarget(r) == name {
				return "chain " + c.Name
			}
		}
	}
	for _, s := range st.sets {
		for _, e := range s.elems {
			if s.def.Map && (e.Verdict.Kind == ruleset.Jump || e.Verdict.Kind == ruleset.Goto) && e.Verdict.Chain == name {
				return "map " + s.def.Name
			}
		}
	}
	return ""
}

func (st *fakeStore) checkJump(v ruleset.Verdict) error {
	if v.Kind != ruleset.Jump && v.Kind != ruleset.Goto {
		return nil
	}
	c, ok := st.chains[v.Chain]
	if !ok {
		return fmt.Errorf("jump to missing chain %s", v.Chain)
	}
	if c.Base != nil {
		return fmt.Errorf("jump to base chain %s", v.Chain)
	}
	return nil
}

// apply interprets one step of a plan (ruleset.Plan.Steps) on the working
// copy, validating it as the kernel would at that point of the batch.
func (st *fakeStore) apply(s ruleset.Step) error {
	switch s.Kind {
	case ruleset.StepFlushChain:
		c, ok := st.chains[s.Chain.Name]
		if !ok {
			return fmt.Errorf("flush chain %s: no such chain", s.Chain.Name)
		}
		c.Rules = nil
	case ruleset.StepDelElements:
		fs, ok := st.sets[s.Set.Name]
		if !ok {
			return fmt.Errorf("delete elements of set %s: no such set", s.Set.Name)
		}
		for _, e := range s.Elems {
			k := fs.def.ElementKey(e)
			if _, ok := fs.elems[k]; !ok {
				return fmt.Errorf("delete element %s of set %s: no such element", k, s.Set.Name)
			}
			delete(fs.elems, k)
		}
	case ruleset.StepFlushSet:
		fs, ok := st.sets[s.Set.Name]
		if !ok {
			return fmt.Errorf("flush set %s: no such set", s.Set.Name)
		}
		fs.elems = map[string]ruleset.Element{}
	case ruleset.StepDelChain:
		c, ok := st.chains[s.Chain.Name]
		if !ok {
			return fmt.Errorf("delete chain %s: no such chain", s.Chain.Name)
		}
		if len(c.Rules) > 0 {
			return fmt.Errorf("delete chain %s: not flushed", s.Chain.Name)
		}
		if u := st.chainUser(s.Chain.Name); u != "" {
			return fmt.Errorf("delete chain %s: still referenced by %s", s.Chain.Name, u)
		}
		delete(st.chains, s.Chain.Name)
	case ruleset.StepDelSet:
		if _, ok := st.sets[s.Set.Name]; !ok {
			return fmt.Errorf("delete set %s: no such set", s.Set.Name)
		}
		if u := st.setUser(s.Set.Name); u != "" {
			return fmt.Errorf("delete set %s: still referenced by %s", s.Set.Name, u)
		}
		delete(st.sets, s.Set.Name)
	case ruleset.StepAddSet:
		if _, ok := st.sets[s.Set.Name]; ok {
			return fmt.Errorf("add set %s: exists", s.Set.Name)
		}
		if _, err := lowerSet(table(), s.Set); err != nil {
			return fmt.Errorf("add set: %w", err)
		}
		fs := &fakeSet{def: *s.Set, elems: map[string]ruleset.Element{}}
		fs.def.Elements, fs.def.Addrs = nil, ruleset.AddrList{}
		st.sets[s.Set.Name] = fs
	case ruleset.StepAddChain:
		c, ok := st.chains[s.Chain.Name]
		if s.Chain.Base == nil {
			if ok {
				return fmt.Errorf("add chain %s: exists", s.Chain.Name)
			}
			st.chains[s.Chain.Name] = &ruleset.Chain{Name: s.Chain.Name}
			return nil
		}
		if _, err := lowerBaseChain(table(), s.Chain); err != nil {
			return err
		}
		if ok {
			if c.Base == nil || c.Base.Hook != s.Chain.Base.Hook || c.Base.Priority != s.Chain.Base.Priority {
				return fmt.Errorf("update chain %s: hook or priority cannot change", s.Chain.Name)
			}
			b := *s.Chain.Base
			c.Base = &b
			return nil
		}
		b := *s.Chain.Base
		st.chains[s.Chain.Name] = &ruleset.Chain{Name: s.Chain.Name, Base: &b}
	case ruleset.StepAddRules:
		c, ok := st.chains[s.Chain.Name]
		if !ok {
			return fmt.Errorf("add rules to chain %s: no such chain", s.Chain.Name)
		}
		for i, r := range s.Chain.Rules {
			// The whole lowering, not only checkRule: the Fake rejects a
			// shape the Backend could not write.
			if _, _, err := lowerRule(r, st.lookup); err != nil {
				return fmt.Errorf("chain %s rule %d: %w", s.Chain.Name, i, err)
			}
			if lr, ok := r.(*ruleset.LogRule); ok && lr.Limit != "" {
				if _, ok := st.limits[lr.Limit]; !ok {
					return fmt.Errorf("chain %s rule %d: limit %s does not exist", s.Chain.Name, i, lr.Limit)
				}
			}
			if j := ruleset.JumpTarget(r); j != "" {
				if err := st.checkJump(ruleset.Verdict{Kind: ruleset.Jump, Chain: j}); err != nil {
					return fmt.Errorf("chain %s rule %d: %w", s.Chain.Name, i, err)
				}
			}
			c.Rules = append(c.Rules, r)
		}
	case ruleset.StepAddElements:
		fs, ok := st.sets[s.Set.Name]
		if !ok {
			return fmt.Errorf("add elements to set %s: no such set", s.Set.Name)
		}
		elems := s.Elements()
		if _, err := lowerElements(&fs.def, elems); err != nil {
			return err
		}
		for _, e := range elems {
			k := fs.def.ElementKey(e)
			if fs.def.Map {
				if err := st.checkJump(e.Verdict); err != nil {
					return fmt.Errorf("set %s element %s: %w", s.Set.Name, k, err)
				}
			}
			if o, ok := fs.elems[k]; ok && fs.def.Map && o.Verdict != e.Verdict {
				return fmt.Errorf("set %s element %s: exists with verdict %s", s.Set.Name, k, o.Verdict)
			}
			fs.elems[k] = e
		}
		if fs.def.Size != 0 && len(fs.elems) > int(fs.def.Size) {
			// The kernel refuses the element beyond a set's size (ENFILE).
			return fmt.Errorf("add elements to set %s: %d elements exceed its size %d", s.Set.Name, len(fs.elems), fs.def.Size)
		}
		if fs.def.Interval {
			if err := checkOverlap(fs); err != nil {
				return err
			}
		}
	case ruleset.StepAddLimit:
		if _, ok := st.limits[s.Limit.Name]; ok {
			return fmt.Errorf("add limit %s: exists", s.Limit.Name)
		}
		if err := checkLimit(s.Limit); err != nil {
			return fmt.Errorf("add limit: %w", err)
		}
		st.limits[s.Limit.Name] = *s.Limit
	case ruleset.StepDelLimit:
		if _, ok := st.limits[s.Limit.Name]; !ok {
			return fmt.Errorf("delete limit %s: no such limit", s.Limit.Name)
		}
		if u := st.limitUser(s.Limit.Name); u != "" {
			return fmt.Errorf("delete limit %s: still referenced by %s", s.Limit.Name, u)
		}
		delete(st.limits, s.Limit.Name)
	default:
		return fmt.Errorf("%s", s.Kind)
	}
	return nil
}

// checkOverlap rejects intervals that overlap without being equal, as the
// kernel's interval set backends do.
func checkOverlap(fs *fakeSet) error {
	all := make([]ruleset.Element, 0, len(fs.elems))
	for _, e := range fs.elems {
		if !e.AddrEnd.IsValid() {
			e.AddrEnd = e.Addr
		}
		all = append(all, e)
	}
	key := fs.def.Key
	overlap := func(a, b ruleset.Element) bool {
		addr := !key.HasAddr() || (!a.AddrEnd.Less(b.Addr) && !b.AddrEnd.Less(a.Addr))
		port := !key.HasPort() || (a.Proto == b.Proto && a.PortEnd >= b.Port && b.PortEnd >= a.Port)
		return addr && port
	}
	fail := func(a, b ruleset.Element) error {
		return fmt.Errorf("set %s: elements %s and %s overlap", fs.def.Name, fs.def.ElementKey(a), fs.def.ElementKey(b))
	}
	if key.HasAddr() && key.HasPort() {
		// Two dimensions: compare every pair (such sets are small).
		for i := range all {
			for j := i + 1; j < len(all); j++ {
				if overlap(all[i], all[j]) {
					return fail(all[i], all[j])
				}
			}
		}
		return nil
	}
	// One dimension (per protocol): sorted, only neighbours can overlap.
	sort.Slice(all, func(i, j int) bool { return all[i].Less(all[j]) })
	for i := 1; i < len(all); i++ {
		if overlap(all[i-1], all[i]) {
			return fail(all[i-1], all[i])
		}
	}
	return nil
}

func (st *fakeStore) ruleset() *ruleset.Ruleset {
	out := &ruleset.Ruleset{}
	for _, fs := range st.sets {
		s := fs.def
		for _, e := range fs.elems {
			s.Elements = append(s.Elements, e)
		}
		out.Sets = append(out.Sets, &s)
	}
	for _, c := range st.chains {
		out.Chains = append(out.Chains, c)
	}
	for _, l := range st.limits {
		out.Limits = append(out.Limits, &l)
	}
	out.Sort()
	return out
}
