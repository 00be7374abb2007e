package nft

import "github.com/policyd/policyd/policy/ruleset"

// stepKind is one kind of change within a batch.
type stepKind uint8

const (
	_ stepKind = iota // the zero value is no valid step
	// stepFlushChain removes every rule of chain.
	stepFlushChain
	// stepDelElements deletes elems from set.
	stepDelElements
	// stepFlushSet removes every element of set.
	stepFlushSet
	// stepDelChain deletes chain (already flushed).
	stepDelChain
	// stepDelSet deletes set.
	stepDelSet
	// stepAddSet creates set, without elements.
	stepAddSet
	// stepAddChain creates chain, or for a base chain creates or updates it.
	stepAddChain
	// stepAddRules appends the rules of chain.
	stepAddRules
	// stepAddElements adds elems to set.
	stepAddElements
)

// step is one change of a batch.
type step struct {
	kind  stepKind
	set   *ruleset.Set
	chain *ruleset.Chain
	elems []ruleset.Element
	// whole makes a stepAddElements add every element of set (a new set);
	// elems is then unused.
	whole bool
}

// elements returns the elements the step adds or deletes.
func (st step) elements() []ruleset.Element {
	if st.whole {
		return st.set.Elems()
	}
	return st.elems
}

// elementBatches calls f with the step's elements, at most n at a time: a
// new set of a million packed addresses is lowered piece by piece instead
// of unpacked whole.
func (st step) elementBatches(n int, f func([]ruleset.Element) error) error {
	if !st.whole {
		return f(st.elems)
	}
	batch := make([]ruleset.Element, 0, min(n, st.set.Len()))
	for lo := 0; lo < st.set.Len(); lo += n {
		batch = batch[:0]
		for i := lo; i < min(lo+n, st.set.Len()); i++ {
			batch = append(batch, st.set.At(i))
		}
		if err := f(batch); err != nil {
			return err
		}
	}
	return nil
}

// planSteps orders a Plan into the steps of one batch, in the order that
// ruleset.Plan documents. The netlink backend and the Fake both apply these
// steps, so the Fake checks the same order the kernel sees.
func planSteps(p *ruleset.Plan) []step {
	var out []step
	for _, list := range [][]*ruleset.Chain{p.RefillBaseChains, p.ReplaceBaseChains, p.DelChains} {
		for _, c := range list {
			out = append(out, step{kind: stepFlushChain, chain: c})
		}
	}
	for _, es := range p.DelElements {
		out = append(out, step{kind: stepDelElements, set: es.Set, elems: es.Elements})
	}
	// A map about to be deleted may jump to chains about to be deleted;
	// flushing it first releases those references on every kernel.
	for _, s := range p.DelSets {
		if s.Map {
			out = append(out, step{kind: stepFlushSet, set: s})
		}
	}
	for _, list := range [][]*ruleset.Chain{p.DelChains, p.ReplaceBaseChains} {
		for _, c := range list {
			out = append(out, step{kind: stepDelChain, chain: c})
		}
	}
	for _, s := range p.DelSets {
		out = append(out, step{kind: stepDelSet, set: s})
	}
	// Sets before maps, as Ruleset.Text declares them, so that a new table
	// lists in the same order as one loaded with nft -f.
	for _, maps := range []bool{false, true} {
		for _, s := range p.AddSets {
			if s.Map == maps {
				out = append(out, step{kind: stepAddSet, set: s})
			}
		}
	}
	for _, c := range p.AddChains {
		out = append(out, step{kind: stepAddChain, chain: c})
	}
	for _, c := range p.AddChains {
		if len(c.Rules) > 0 {
			out = append(out, step{kind: stepAddRules, chain: c})
		}
	}
	for _, s := range p.AddSets {
		if s.Len() > 0 {
			out = append(out, step{kind: stepAddElements, set: s, whole: true})
		}
	}
	for _, es := range p.AddElements {
		out = append(out, step{kind: stepAddElements, set: es.Set, elems: es.Elements})
	}
	for _, list := range [][]*ruleset.Chain{p.AddBaseChains, p.ReplaceBaseChains, p.RefillBaseChains} {
		for _, c := range list {
			out = append(out, step{kind: stepAddChain, chain: c})
			if len(c.Rules) > 0 {
				out = append(out, step{kind: stepAddRules, chain: c})
			}
		}
	}
	return out
}
