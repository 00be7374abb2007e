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
// it applies each Sync as one transaction: it holds want to ruleset.Check as
// the Backend does, diffs want against its committed state with
// ruleset.Diff, interprets the plan's steps (ruleset.Plan.Steps, which the
// Backend sends too), and commits only if every step is valid. At each step
// it rejects what the kernel rejects at that point of the batch: a rule
// naming a set, limit or chain that does not exist yet or a set of the wrong
// type (ruleset.CheckRule against its working copy), a map entry jumping to
// a missing or base chain, deleting a set, limit or chain that is still
// referenced, deleting a missing element, adding a map key again with
// another verdict, more elements than a set's size, and overlapping
// intervals.
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
	if err := check(want); err != nil {
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

// Set implements ruleset.Resolver: the set's type as it stands at this
// point of the batch, without its elements.
func (st *fakeStore) Set(name string) *ruleset.Set {
	if s, ok := st.sets[name]; ok {
		return &s.def
	}
	return nil
}

// Chain implements ruleset.Resolver.
func (st *fakeStore) Chain(name string) *ruleset.Chain { return st.chains[name] }

// Limit implements ruleset.Resolver.
func (st *fakeStore) Limit(name string) *ruleset.Limit {
	if l, ok := st.limits[name]; ok {
		return &l
	}
	return nil
}

// referrer returns what still refers to the object of kind called name: a
// chain one of whose rules names it (ruleset.Rule.Refs), or a map one of
// whose entries jumps to it (ruleset.Set.ElementRefs); "" when nothing
// does. The kernel refuses to delete such an object.
func (st *fakeStore) referrer(kind ruleset.RefKind, name string) string {
	names := func(refs []ruleset.Ref) bool {
		for _, ref := range refs {
			if ref.Kind == kind && ref.Name == name {
				return true
			}
		}
		return false
	}
	for _, c := range st.chains {
		for _, r := range c.Rules {
			if names(r.Refs()) {
				return "chain " + c.Name
			}
		}
	}
	for _, s := range st.sets {
		for _, e := range s.elems {
			if names(s.def.ElementRefs(e)) {
				return "map " + s.def.Name
			}
		}
	}
	return ""
}

// apply interprets one step of a plan (ruleset.Plan.Steps) on the working
// copy, validating it as the kernel would at that point of the batch: one
// method per step kind, the Fake's side of the Backend's emitter.
func (st *fakeStore) apply(s ruleset.Step) error {
	switch s.Kind {
	case ruleset.StepFlushChain:
		return st.flushChain(s)
	case ruleset.StepDelElements:
		return st.delElements(s)
	case ruleset.StepFlushSet:
		return st.flushSet(s)
	case ruleset.StepDelChain:
		return st.delChain(s)
	case ruleset.StepDelSet:
		return st.delSet(s)
	case ruleset.StepAddSet:
		return st.addSet(s)
	case ruleset.StepAddChain:
		return st.addChain(s)
	case ruleset.StepAddRules:
		return st.addRules(s)
	case ruleset.StepAddElements:
		return st.addElements(s)
	case ruleset.StepDelLimit:
		return st.delLimit(s)
	case ruleset.StepAddLimit:
		return st.addLimit(s)
	case ruleset.StepInvalid:
	}
	return fmt.Errorf("%s", s.Kind)
}

func (st *fakeStore) flushChain(s ruleset.Step) error {
	c, ok := st.chains[s.Chain.Name]
	if !ok {
		return fmt.Errorf("flush chain %s: no such chain", s.Chain.Name)
	}
	c.Rules = nil
	return nil
}

func (st *fakeStore) delElements(s ruleset.Step) error {
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
	return nil
}

func (st *fakeStore) flushSet(s ruleset.Step) error {
	fs, ok := st.sets[s.Set.Name]
	if !ok {
		return fmt.Errorf("flush set %s: no such set", s.Set.Name)
	}
	fs.elems = map[string]ruleset.Element{}
	return nil
}

func (st *fakeStore) delChain(s ruleset.Step) error {
	c, ok := st.chains[s.Chain.Name]
	if !ok {
		return fmt.Errorf("delete chain %s: no such chain", s.Chain.Name)
	}
	if len(c.Rules) > 0 {
		return fmt.Errorf("delete chain %s: not flushed", s.Chain.Name)
	}
	if u := st.referrer(ruleset.RefChain, s.Chain.Name); u != "" {
		return fmt.Errorf("delete chain %s: still referenced by %s", s.Chain.Name, u)
	}
	delete(st.chains, s.Chain.Name)
	return nil
}

func (st *fakeStore) delSet(s ruleset.Step) error {
	if _, ok := st.sets[s.Set.Name]; !ok {
		return fmt.Errorf("delete set %s: no such set", s.Set.Name)
	}
	if u := st.referrer(ruleset.RefSet, s.Set.Name); u != "" {
		return fmt.Errorf("delete set %s: still referenced by %s", s.Set.Name, u)
	}
	delete(st.sets, s.Set.Name)
	return nil
}

// addSet creates the set empty, as the Backend does: its elements come in
// a later step.
func (st *fakeStore) addSet(s ruleset.Step) error {
	if _, ok := st.sets[s.Set.Name]; ok {
		return fmt.Errorf("add set %s: exists", s.Set.Name)
	}
	if _, err := lowerSet(table(), s.Set); err != nil {
		return fmt.Errorf("add set: %w", err)
	}
	fs := &fakeSet{def: *s.Set, elems: map[string]ruleset.Element{}}
	fs.def.Elements, fs.def.Addrs = nil, ruleset.AddrList{}
	st.sets[s.Set.Name] = fs
	return nil
}

// addChain creates a chain, or updates a base chain's policy: the kernel
// cannot change its hook or priority.
func (st *fakeStore) addChain(s ruleset.Step) error {
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
	b := *s.Chain.Base
	if !ok {
		st.chains[s.Chain.Name] = &ruleset.Chain{Name: s.Chain.Name, Base: &b}
		return nil
	}
	if c.Base == nil || c.Base.Hook != b.Hook || c.Base.Priority != b.Priority {
		return fmt.Errorf("update chain %s: hook or priority cannot change", s.Chain.Name)
	}
	c.Base = &b
	return nil
}

// addRules appends the chain's rules, each once every object it refers to
// exists at this point of the batch with the type it needs
// (ruleset.CheckRule against the working copy), and once the Backend's
// lowering has built it.
func (st *fakeStore) addRules(s ruleset.Step) error {
	c, ok := st.chains[s.Chain.Name]
	if !ok {
		return fmt.Errorf("add rules to chain %s: no such chain", s.Chain.Name)
	}
	for i, r := range s.Chain.Rules {
		if err := ruleset.CheckRule(r, st); err != nil {
			return fmt.Errorf("chain %s rule %d: %w", s.Chain.Name, i, err)
		}
		if _, _, err := lowerRule(r, st.Set); err != nil {
			return fmt.Errorf("chain %s rule %d: %w", s.Chain.Name, i, err)
		}
		c.Rules = append(c.Rules, r)
	}
	return nil
}

// addElements adds elements the Backend can lower, whose map verdicts jump
// to chains that exist at this point of the batch, refusing a map key
// again with another verdict, more elements than the set's size, and
// overlapping intervals.
func (st *fakeStore) addElements(s ruleset.Step) error {
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
		for _, ref := range fs.def.ElementRefs(e) {
			if err := ruleset.Resolve(ref, st); err != nil {
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
		return checkOverlap(fs)
	}
	return nil
}

func (st *fakeStore) delLimit(s ruleset.Step) error {
	if _, ok := st.limits[s.Limit.Name]; !ok {
		return fmt.Errorf("delete limit %s: no such limit", s.Limit.Name)
	}
	if u := st.referrer(ruleset.RefLimit, s.Limit.Name); u != "" {
		return fmt.Errorf("delete limit %s: still referenced by %s", s.Limit.Name, u)
	}
	delete(st.limits, s.Limit.Name)
	return nil
}

func (st *fakeStore) addLimit(s ruleset.Step) error {
	if _, ok := st.limits[s.Limit.Name]; ok {
		return fmt.Errorf("add limit %s: exists", s.Limit.Name)
	}
	st.limits[s.Limit.Name] = *s.Limit
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
