package ruleset

import "net/netip"

// Plan is the set of changes that turns one Ruleset (the state committed to
// the kernel) into another (the wanted state). Diff computes it; Steps orders
// it into one atomic batch, which policy/nft sends (and its Fake checks) as
// it is, each step valid for the kernel at its point in the batch:
//
//  1. flush the rules of RefillBaseChains, ReplaceBaseChains, RefillChains
//     and DelChains;
//  2. delete DelElements (before re-adding a key whose map verdict changed,
//     and before deleting the chains those entries jump to);
//  3. flush the maps among DelSets (their entries may jump to chains about
//     to go), then delete DelChains and ReplaceBaseChains;
//  4. delete DelSets (their rules are gone by now), then DelLimits;
//  5. add AddLimits, then AddSets (empty);
//  6. add the AddChains chains, then their rules and those of RefillChains
//     (they may jump to each other and look up the new sets);
//  7. add the elements of AddSets, then AddElements (map entries may jump
//     to the new chains);
//  8. add or update AddBaseChains, ReplaceBaseChains and RefillBaseChains,
//     each followed by its rules.
//
// Deleting before adding is what lets one batch re-add a map key with a new
// verdict, replace an interval by an overlapping one, or recreate a set or
// chain under the same name; the kernel commits the batch atomically, so
// packets never see the intermediate states.
type Plan struct {
	// Rebuild is set when an existing set changed its key type, interval
	// flag or map kind, which the kernel cannot change in place. (A set
	// whose Size changed is recreated on its own: DelSets and AddSets both
	// hold it, and the chains that look it up are refilled.) The plan
	// then deletes every old set and regular chain and adds every new one
	// (base chains are flushed and refilled, not deleted), still in one batch.
	Rebuild bool
	// AddSets are sets and maps to create, with all their elements.
	AddSets []*Set
	// DelSets are sets and maps to delete, with their elements.
	DelSets []*Set
	// AddElements are elements to add to sets that already exist.
	AddElements []SetElements
	// DelElements are elements to delete from sets that stay. A map entry
	// whose verdict changed is deleted here and added in AddElements.
	DelElements []SetElements
	// AddChains are regular chains to create, with their rules.
	AddChains []*Chain
	// RefillChains are regular chains that exist under their wanted name
	// but whose rules in the old Ruleset differ (adopt found the kernel's
	// chain edited behind policyd's back): they are flushed and refilled in
	// place, never deleted, as map entries and other chains jump to them.
	RefillChains []*Chain
	// DelChains are chains to flush and delete: regular chains that are no
	// longer wanted, and base chains the new Ruleset does not declare.
	DelChains []*Chain
	// AddBaseChains are base chains to create, with their rules.
	AddBaseChains []*Chain
	// RefillBaseChains are base chains that exist with the same hook and
	// priority but whose policy or rules changed: they are updated, flushed
	// and refilled in place, never deleted.
	RefillBaseChains []*Chain
	// ReplaceBaseChains are base chains whose hook or priority changed,
	// which the kernel cannot update: they are deleted and created again.
	ReplaceBaseChains []*Chain
	// AddLimits and DelLimits are the limit objects to create and delete.
	// Their names are their contents, so a limit is never changed in place.
	AddLimits, DelLimits []*Limit
}

// SetElements is a list of elements of one set.
type SetElements struct {
	Set      *Set
	Elements []Element
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	return len(p.AddSets) == 0 && len(p.DelSets) == 0 &&
		len(p.AddElements) == 0 && len(p.DelElements) == 0 &&
		len(p.AddChains) == 0 && len(p.RefillChains) == 0 && len(p.DelChains) == 0 &&
		len(p.AddBaseChains) == 0 && len(p.RefillBaseChains) == 0 &&
		len(p.ReplaceBaseChains) == 0 && len(p.AddLimits) == 0 && len(p.DelLimits) == 0
}

// PlanCounts counts what a plan touches. Each field counts objects, not
// netlink messages.
type PlanCounts struct {
	// Sets counts sets added or deleted.
	Sets int
	// Elements counts elements added or deleted, including those of new
	// sets (the elements of a deleted set go with it and are not counted).
	Elements int
	// Chains counts chains added, deleted, refilled or replaced.
	Chains int
	// Rules counts rules written.
	Rules int
	// Limits counts limit objects added or deleted.
	Limits int
}

// Ops returns the number of operations in the plan: one per set, chain, rule
// and element touched. A replaced base chain counts twice (delete and add).
func (p *Plan) Ops() int {
	c := p.Counts()
	return c.Sets + c.Elements + c.Chains + c.Rules + c.Limits + len(p.ReplaceBaseChains)
}

// Counts returns what the plan touches, by kind.
func (p *Plan) Counts() PlanCounts {
	var c PlanCounts
	for _, s := range p.AddSets {
		c.Sets++
		c.Elements += s.Len()
	}
	c.Sets += len(p.DelSets)
	for _, es := range p.AddElements {
		c.Elements += len(es.Elements)
	}
	for _, es := range p.DelElements {
		c.Elements += len(es.Elements)
	}
	for _, list := range [][]*Chain{p.AddChains, p.RefillChains, p.AddBaseChains, p.RefillBaseChains, p.ReplaceBaseChains} {
		for _, ch := range list {
			c.Chains++
			c.Rules += len(ch.Rules)
		}
	}
	c.Chains += len(p.DelChains)
	c.Limits = len(p.AddLimits) + len(p.DelLimits)
	return c
}

// Diff returns the plan that turns old into new. old may be nil, meaning an
// empty table: then everything in new is added. Both Rulesets are only read;
// the plan points into them, so neither may be modified while the plan is in
// use.
//
// Regular chains are compared by name (their names are content hashes),
// except that an old regular chain holding a KernelRule is refilled: that is
// how adopt reports a chain whose kernel contents were changed behind
// policyd's back. Base chains are compared by hook, priority, policy and the text of each
// rule including its comment. Sets are compared by type, then element by
// element; a map entry is equal when its key and verdict are.
func Diff(old, new *Ruleset) *Plan {
	if old == nil {
		old = &Ruleset{}
	}
	if new == nil {
		new = &Ruleset{}
	}
	p := &Plan{}
	resized := p.diffSets(old.Sets, new.Sets)
	p.diffChains(old.Chains, new.Chains, resized)
	p.AddLimits, p.DelLimits = diffLimits(old.Limits, new.Limits)
	return p
}

// diffSets fills the set and element fields of p, and Rebuild. It returns
// the names of the sets recreated for a new Size, whose chains must be
// refilled.
func (p *Plan) diffSets(old, new []*Set) (resized map[string]bool) {
	oldSets := make(map[string]*Set, len(old))
	for _, s := range old {
		oldSets[s.Name] = s
	}
	for _, s := range new {
		if o, ok := oldSets[s.Name]; ok && !sameSetType(o, s) {
			p.Rebuild = true
			p.DelSets = append(p.DelSets, old...)
			p.AddSets = append(p.AddSets, new...)
			return nil
		}
	}
	newSets := make(map[string]bool, len(new))
	for _, s := range new {
		newSets[s.Name] = true
		o, ok := oldSets[s.Name]
		if !ok {
			p.AddSets = append(p.AddSets, s)
			continue
		}
		if o.Size != s.Size {
			// The kernel cannot resize a set: delete it and add it
			// again, refilling the chains whose rules look it up.
			p.DelSets = append(p.DelSets, o)
			p.AddSets = append(p.AddSets, s)
			if resized == nil {
				resized = map[string]bool{}
			}
			resized[s.Name] = true
			continue
		}
		add, del := diffElements(o, s)
		if len(del) > 0 {
			p.DelElements = append(p.DelElements, SetElements{Set: o, Elements: del})
		}
		if len(add) > 0 {
			p.AddElements = append(p.AddElements, SetElements{Set: s, Elements: add})
		}
	}
	for _, s := range old {
		if !newSets[s.Name] {
			p.DelSets = append(p.DelSets, s)
		}
	}
	return resized
}

// diffChains fills the chain fields of p, once diffSets has set Rebuild
// and found the resized sets.
func (p *Plan) diffChains(old, new []*Chain, resized map[string]bool) {
	oldChains := make(map[string]*Chain, len(old))
	for _, c := range old {
		oldChains[c.Name] = c
	}
	newChains := make(map[string]*Chain, len(new))
	for _, c := range new {
		newChains[c.Name] = c
	}
	for _, c := range new {
		o, ok := oldChains[c.Name]
		switch {
		case c.Base == nil:
			switch {
			case !ok || o.Base != nil || p.Rebuild:
				p.AddChains = append(p.AddChains, c)
			case o != c && !trustedChain(o), looksUp(c, resized):
				p.RefillChains = append(p.RefillChains, c)
			}
		case !ok:
			p.AddBaseChains = append(p.AddBaseChains, c)
		case o.Base == nil:
			// A regular chain of that name is deleted first (DelChains below).
			p.AddBaseChains = append(p.AddBaseChains, c)
		case o.Base.Hook != c.Base.Hook || o.Base.Priority != c.Base.Priority:
			p.ReplaceBaseChains = append(p.ReplaceBaseChains, c)
		case p.Rebuild || o.Base.Policy != c.Base.Policy || !sameRules(o.Rules, c.Rules), looksUp(c, resized):
			p.RefillBaseChains = append(p.RefillBaseChains, c)
		}
	}
	for _, c := range old {
		n, ok := newChains[c.Name]
		switch {
		case !ok:
			p.DelChains = append(p.DelChains, c)
		case (c.Base == nil) != (n.Base == nil):
			p.DelChains = append(p.DelChains, c)
		case c.Base == nil && p.Rebuild:
			p.DelChains = append(p.DelChains, c)
		}
	}
}

// diffLimits returns the limits of new that old lacks, and those of old that
// new lacks. A limit of old whose rate or burst differs from the one of the
// same name in new (only adopt can read such a thing back from the kernel)
// is deleted and added again.
func diffLimits(old, new []*Limit) (add, del []*Limit) {
	have := make(map[string]*Limit, len(old))
	for _, l := range old {
		have[l.Name] = l
	}
	want := make(map[string]bool, len(new))
	for _, l := range new {
		want[l.Name] = true
		if o, ok := have[l.Name]; !ok || *o != *l {
			add = append(add, l)
		}
		if o, ok := have[l.Name]; ok && *o != *l {
			del = append(del, o)
		}
	}
	for _, l := range old {
		if !want[l.Name] {
			del = append(del, l)
		}
	}
	return add, del
}

// looksUp reports whether a rule of c refers to one of the sets named in
// names.
func looksUp(c *Chain, names map[string]bool) bool {
	if len(names) == 0 {
		return false
	}
	for _, r := range c.Rules {
		for _, n := range r.SetRefs() {
			if names[n] {
				return true
			}
		}
	}
	return false
}

// sameSetType reports whether the kernel set a could serve as b: same key
// type, interval flag and kind (set or map).
func sameSetType(a, b *Set) bool {
	return a.Key == b.Key && a.Interval == b.Interval && a.Map == b.Map
}

// trustedChain reports whether the old regular chain o can be trusted to
// hold the rules of c, which has the same name. Names are content hashes, so
// only what adopt reads back from the kernel can differ, and adopt marks
// such a chain by giving it KernelRules. The check renders no rule text, so
// partial syncs stay cheap.
func trustedChain(o *Chain) bool {
	for _, r := range o.Rules {
		if _, ok := r.(*KernelRule); ok {
			return false
		}
	}
	return true
}

func sameRules(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if RuleText(a[i]) != RuleText(b[i]) {
			return false
		}
	}
	return true
}

// elemID identifies an element within its set: the parts of its key that the
// set's type uses, normalised the way ElementKey renders them.
type elemID struct {
	addr, addrEnd netip.Addr
	proto         uint8
	port, portEnd uint16
}

// elementID returns a comparable identity of e's key in s: two elements have
// the same ID exactly when ElementKey renders them the same.
func (s *Set) elementID(e Element) elemID {
	var id elemID
	if s.Key.HasAddr() {
		id.addr = e.Addr
		id.addrEnd = e.Addr
		if s.Interval && e.AddrEnd.IsValid() {
			id.addrEnd = e.AddrEnd
		}
	}
	if s.Key.HasPort() {
		id.proto, id.port, id.portEnd = e.Proto, e.Port, e.PortEnd
	}
	return id
}

// compareID orders element identities: address, end, protocol, port, end.
func compareID(a, b elemID) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if c := a.addrEnd.Compare(b.addrEnd); c != 0 {
		return c
	}
	switch {
	case a.proto != b.proto:
		return int(a.proto) - int(b.proto)
	case a.port != b.port:
		return int(a.port) - int(b.port)
	}
	return int(a.portEnd) - int(b.portEnd)
}

// sortedIDs reports whether the elements of s are in strictly increasing
// identity order, as SortElements leaves them (unless there are duplicates).
func sortedIDs(s *Set) bool {
	if len(s.Elements) == 0 {
		return true // Addrs are sorted and distinct by construction
	}
	if s.Addrs.Len() > 0 {
		return false // both forms, as before SortElements: At is not in order
	}
	for i := 1; i < len(s.Elements); i++ {
		if compareID(s.elementID(s.Elements[i-1]), s.elementID(s.Elements[i])) >= 0 {
			return false
		}
	}
	return true
}

// diffElements returns the elements to add to and delete from old to make it
// equal to new. Both must have the same type. Sorted element lists (the
// normal case) are merged in one pass; others go through a hash map.
func diffElements(old, new *Set) (add, del []Element) {
	if old == new || (len(old.Elements) == 0 && len(new.Elements) == 0 && old.Addrs == new.Addrs) {
		return nil, nil
	}
	if !sortedIDs(old) || !sortedIDs(new) {
		return diffElementsHashed(old, new)
	}
	i, j := 0, 0
	nOld, nNew := old.Len(), new.Len()
	for i < nOld || j < nNew {
		// At builds a packed set's element on every call: take each once.
		var o, n Element
		c := 1
		if i < nOld {
			o = old.At(i)
			c = -1
		}
		if j < nNew {
			n = new.At(j)
			if i < nOld {
				c = compareID(old.elementID(o), new.elementID(n))
			}
		}
		switch {
		case c < 0:
			del = append(del, o)
			i++
		case c > 0:
			add = append(add, n)
			j++
		default:
			if new.Map && o.Verdict != n.Verdict {
				del = append(del, o)
				add = append(add, n)
			}
			i++
			j++
		}
	}
	return add, del
}

func diffElementsHashed(old, new *Set) (add, del []Element) {
	olds := old.Elems()
	have := make(map[elemID]Element, len(olds))
	for _, e := range olds {
		have[old.elementID(e)] = e
	}
	want := make(map[elemID]struct{}, new.Len())
	var changed map[elemID]bool
	for _, e := range new.Elems() {
		id := new.elementID(e)
		want[id] = struct{}{}
		o, ok := have[id]
		switch {
		case !ok:
			add = append(add, e)
		case new.Map && o.Verdict != e.Verdict:
			if changed == nil {
				changed = make(map[elemID]bool)
			}
			changed[id] = true
			add = append(add, e)
		}
	}
	for _, e := range olds {
		id := old.elementID(e)
		if _, ok := want[id]; !ok || changed[id] {
			del = append(del, e)
		}
	}
	return add, del
}
