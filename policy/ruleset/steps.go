package ruleset

import "fmt"

// StepKind is one kind of change within a batch. The zero value is invalid.
type StepKind uint8

// Step kinds.
const (
	StepInvalid StepKind = iota
	// StepFlushChain removes every rule of Chain.
	StepFlushChain
	// StepDelElements deletes Elems from Set.
	StepDelElements
	// StepFlushSet removes every element of Set.
	StepFlushSet
	// StepDelChain deletes Chain (already flushed).
	StepDelChain
	// StepDelSet deletes Set.
	StepDelSet
	// StepAddSet creates Set, without elements.
	StepAddSet
	// StepAddChain creates Chain, or for a base chain creates or updates
	// it, without rules.
	StepAddChain
	// StepAddRules appends the rules of Chain.
	StepAddRules
	// StepAddElements adds Elems to Set, or all of Set's elements when
	// Whole is set.
	StepAddElements
	// StepDelLimit deletes the limit object Limit (no rule names it by now).
	StepDelLimit
	// StepAddLimit creates the limit object Limit.
	StepAddLimit
)

// String returns the step kind's name, for error messages.
func (k StepKind) String() string {
	switch k {
	case StepFlushChain:
		return "flush chain"
	case StepDelElements:
		return "delete elements"
	case StepFlushSet:
		return "flush set"
	case StepDelChain:
		return "delete chain"
	case StepDelSet:
		return "delete set"
	case StepAddSet:
		return "add set"
	case StepAddChain:
		return "add chain"
	case StepAddRules:
		return "add rules"
	case StepAddElements:
		return "add elements"
	case StepDelLimit:
		return "delete limit"
	case StepAddLimit:
		return "add limit"
	case StepInvalid:
	}
	return fmt.Sprintf("invalid step kind %d", k)
}

// Step is one change of a batch. Which fields are used depends on Kind; Set
// and Chain point into the plan's Rulesets.
type Step struct {
	Kind  StepKind
	Set   *Set
	Chain *Chain
	Limit *Limit
	// Elems are the elements a StepDelElements or StepAddElements touches,
	// unless Whole is set.
	Elems []Element
	// Whole makes a StepAddElements add every element of Set (a new set);
	// Elems is then unused.
	Whole bool
}

// Elements returns the elements the step adds or deletes.
func (st Step) Elements() []Element {
	if st.Whole {
		return st.Set.Elems()
	}
	return st.Elems
}

// ElementBatches calls f with the step's elements, at most n at a time: a
// new set of a million packed addresses is handed out piece by piece instead
// of unpacked whole. f must not keep the slice.
func (st Step) ElementBatches(n int, f func([]Element) error) error {
	if !st.Whole {
		return f(st.Elems)
	}
	batch := make([]Element, 0, min(n, st.Set.Len()))
	for lo := 0; lo < st.Set.Len(); lo += n {
		batch = batch[:0]
		for i := lo; i < min(lo+n, st.Set.Len()); i++ {
			batch = append(batch, st.Set.At(i))
		}
		if err := f(batch); err != nil {
			return err
		}
	}
	return nil
}

// Steps returns the plan as the ordered steps of one batch, in the order
// Plan documents. It is the only place that order is decided: the netlink
// backend and the Fake of policy/nft each interpret these steps, so the
// Fake checks the order the kernel sees.
func (p *Plan) Steps() []Step {
	var out []Step
	for _, list := range [][]*Chain{p.RefillBaseChains, p.ReplaceBaseChains, p.RefillChains, p.DelChains} {
		for _, c := range list {
			out = append(out, Step{Kind: StepFlushChain, Chain: c})
		}
	}
	for _, es := range p.DelElements {
		out = append(out, Step{Kind: StepDelElements, Set: es.Set, Elems: es.Elements})
	}
	// A map about to be deleted may jump to chains about to be deleted;
	// flushing it first releases those references on every kernel.
	for _, s := range p.DelSets {
		if s.Map {
			out = append(out, Step{Kind: StepFlushSet, Set: s})
		}
	}
	for _, list := range [][]*Chain{p.DelChains, p.ReplaceBaseChains} {
		for _, c := range list {
			out = append(out, Step{Kind: StepDelChain, Chain: c})
		}
	}
	for _, s := range p.DelSets {
		out = append(out, Step{Kind: StepDelSet, Set: s})
	}
	// The rules naming a limit to delete went with their chains above; a
	// limit deleted and added again (adopt found it changed) is added after.
	for _, l := range p.DelLimits {
		out = append(out, Step{Kind: StepDelLimit, Limit: l})
	}
	for _, l := range p.AddLimits {
		out = append(out, Step{Kind: StepAddLimit, Limit: l})
	}
	// Sets before maps, as Ruleset.Text declares them, so that a new table
	// lists in the same order as one loaded with nft -f.
	for _, maps := range []bool{false, true} {
		for _, s := range p.AddSets {
			if s.Map == maps {
				out = append(out, Step{Kind: StepAddSet, Set: s})
			}
		}
	}
	for _, c := range p.AddChains {
		out = append(out, Step{Kind: StepAddChain, Chain: c})
	}
	for _, list := range [][]*Chain{p.AddChains, p.RefillChains} {
		for _, c := range list {
			if len(c.Rules) > 0 {
				out = append(out, Step{Kind: StepAddRules, Chain: c})
			}
		}
	}
	for _, s := range p.AddSets {
		if s.Len() > 0 {
			out = append(out, Step{Kind: StepAddElements, Set: s, Whole: true})
		}
	}
	for _, es := range p.AddElements {
		out = append(out, Step{Kind: StepAddElements, Set: es.Set, Elems: es.Elements})
	}
	for _, list := range [][]*Chain{p.AddBaseChains, p.ReplaceBaseChains, p.RefillBaseChains} {
		for _, c := range list {
			out = append(out, Step{Kind: StepAddChain, Chain: c})
			if len(c.Rules) > 0 {
				out = append(out, Step{Kind: StepAddRules, Chain: c})
			}
		}
	}
	return out
}
