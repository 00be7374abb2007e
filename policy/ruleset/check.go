package ruleset

import (
	"errors"
	"fmt"
	"strings"
)

// This file is the contract every rule shape states (see shapes.go): what
// the rule refers to (Rule.Refs) and what it requires of its own fields
// (Rule.Validate), and Check, which holds a whole Ruleset to it. The
// backend and its Fake (policy/nft), the tracer (policy/trace) and the
// compiler's tests call it, so none of them re-states a shape's rules.

// MaxComment is the longest comment nft keeps on a rule or set
// (NFTNL_UDATA_COMMENT_MAXLEN).
const MaxComment = 128

// RefKind says what kind of object a Ref names. The zero value is invalid.
type RefKind uint8

// Reference kinds.
const (
	RefInvalid RefKind = iota
	// RefSet names a set or verdict map the rule looks up; Ref.Need says
	// what it must be.
	RefSet
	// RefLimit names a limit object (Limit) the rule is gated by.
	RefLimit
	// RefChain names the regular chain a verdict jumps or goes to.
	RefChain
)

// Ref is one object a rule (or a map entry) refers to by name.
type Ref struct {
	Kind RefKind
	Name string
	// Role says what the object is to the rule, for errors: "peer",
	// "map", "log", "jump", "goto", …
	Role string
	// Need is what a RefSet's set must be; unused for other kinds.
	Need SetNeed
}

// SetNeed is what a rule needs of a set it looks up: the key type its
// lookup builds, whether the set must be a verdict map, and the flags and
// elements the lookup can make sense of.
type SetNeed struct {
	Key KeyType
	Map bool
	// Exact refuses a set with flags interval: the lookup's key is one
	// value, which the rule's lowering does not byte-swap as nft does for
	// ranges.
	Exact bool
	// Networks, when not 0, requires every address of the set to be a
	// network address of that many bits: the rule masks the packet's
	// address to that length before the lookup, so an address with host
	// bits set could never match.
	Networks int
}

// String describes the need for errors, as "an ipv4_addr verdict map".
func (n SetNeed) String() string {
	var b strings.Builder
	b.WriteString("an " + n.Key.NftType())
	if n.Map {
		b.WriteString(" verdict map")
	} else {
		b.WriteString(" set")
	}
	if n.Exact {
		b.WriteString(" without flags interval")
	}
	if n.Networks != 0 {
		fmt.Fprintf(&b, " whose addresses are /%d networks", n.Networks)
	}
	return b.String()
}

// setRef returns the Ref of the set name the rule uses as role.
func setRef(role, name string, need SetNeed) Ref {
	return Ref{Kind: RefSet, Name: name, Role: role, Need: need}
}

// verdictRefs returns refs with the chain v jumps or goes to appended, if
// any.
func verdictRefs(v Verdict, refs ...Ref) []Ref {
	switch v.Kind {
	case Jump:
		return append(refs, Ref{Kind: RefChain, Name: v.Chain, Role: "jump"})
	case Goto:
		return append(refs, Ref{Kind: RefChain, Name: v.Chain, Role: "goto"})
	}
	return refs
}

// ElementRefs returns what the entry e of set s refers to: the chain a map
// entry's verdict jumps or goes to, or nothing.
func (s *Set) ElementRefs(e Element) []Ref {
	if !s.Map {
		return nil
	}
	return verdictRefs(e.Verdict)
}

// refSetNames returns the names of the sets among refs, in order.
func refSetNames(refs []Ref) []string {
	var out []string
	for _, ref := range refs {
		if ref.Kind == RefSet {
			out = append(out, ref.Name)
		}
	}
	return out
}

// Resolver finds the objects references name: a Ruleset, or a backend's
// view of its table at one point of a batch.
type Resolver interface {
	// Set returns the set or map called name, or nil.
	Set(name string) *Set
	// Chain returns the chain called name, or nil.
	Chain(name string) *Chain
	// Limit returns the limit object called name, or nil.
	Limit(name string) *Limit
}

var _ Resolver = (*Ruleset)(nil)

// MissingError is the error for a reference to an object that does not
// exist. The kernel refuses such a reference with ENOENT; the backend wraps
// this error so that callers can tell it the same way.
type MissingError struct {
	Ref Ref
}

// Error implements error.
func (e *MissingError) Error() string {
	switch e.Ref.Kind {
	case RefSet:
		return fmt.Sprintf("%s: set %q does not exist", e.Ref.Role, e.Ref.Name)
	case RefLimit:
		return fmt.Sprintf("limit %s does not exist", e.Ref.Name)
	case RefChain:
		return fmt.Sprintf("%s missing chain %s", chainVerb(e.Ref.Role), e.Ref.Name)
	case RefInvalid:
	}
	return fmt.Sprintf("invalid reference to %q", e.Ref.Name)
}

// chainVerb words a chain reference's role for errors: "jump to", "goto".
func chainVerb(role string) string {
	if role == "jump" {
		return "jump to"
	}
	return role
}

// Resolve reports whether ref resolves in in: the object exists and, for a
// set, has the type, flags and elements ref.Need asks for; a chain is a
// regular chain (the kernel refuses a jump to a base chain).
func Resolve(ref Ref, in Resolver) error {
	switch ref.Kind {
	case RefSet:
		s := in.Set(ref.Name)
		if s == nil {
			return &MissingError{Ref: ref}
		}
		return ref.Need.check(ref.Role, s)
	case RefLimit:
		if in.Limit(ref.Name) == nil {
			return &MissingError{Ref: ref}
		}
		return nil
	case RefChain:
		c := in.Chain(ref.Name)
		if c == nil {
			return &MissingError{Ref: ref}
		}
		if c.Base != nil {
			return fmt.Errorf("%s base chain %s", chainVerb(ref.Role), ref.Name)
		}
		return nil
	case RefInvalid:
	}
	return fmt.Errorf("invalid reference kind %d to %q", ref.Kind, ref.Name)
}

// check reports whether s is what n asks for.
func (n SetNeed) check(role string, s *Set) error {
	if s.Key != n.Key || s.Map != n.Map || (n.Exact && s.Interval) {
		return fmt.Errorf("%s: set %q has type %s (map %v, interval %v), want %s", role, s.Name, s.Key.NftType(), s.Map, s.Interval, n)
	}
	if n.Networks == 0 {
		return nil
	}
	for i := range s.Len() {
		a := s.At(i).Addr
		if p, err := a.Prefix(n.Networks); err != nil || p.Addr() != a {
			return fmt.Errorf("%s: set %q holds %s, want %s", role, s.Name, a, n)
		}
	}
	return nil
}

// CheckRule reports the first way r breaks its shape's contract against
// in: an invariant of its own fields (Rule.Validate, and a comment nft can
// keep), or a reference (Rule.Refs) that does not resolve. A nil rule is an
// error.
func CheckRule(r Rule, in Resolver) error {
	if r == nil {
		return errors.New("nil rule")
	}
	if len(r.RuleComment()) > MaxComment {
		return fmt.Errorf("comment longer than %d bytes", MaxComment)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	for _, ref := range r.Refs() {
		if err := Resolve(ref, in); err != nil {
			return err
		}
	}
	return nil
}

// Check reports the first way rs breaks the contract of what it holds, or
// nil: every limit and set is well formed, every map entry that jumps
// jumps to a regular chain of rs, and every rule keeps its shape's
// invariants and refers only to objects of rs of the type it needs
// (CheckRule). rs must be sorted (Sort). Check says nothing of the order
// a batch writes these in: that is Plan.Steps' business.
func Check(rs *Ruleset) error {
	for _, l := range rs.Limits {
		if err := l.Validate(); err != nil {
			return err
		}
	}
	for _, s := range rs.Sets {
		if err := checkSet(s, rs); err != nil {
			return err
		}
	}
	for _, c := range rs.Chains {
		for i, r := range c.Rules {
			if err := CheckRule(r, rs); err != nil {
				return fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, ruleText(r), err)
			}
		}
	}
	return nil
}

// checkSet validates s and resolves what its entries refer to. Most map
// entries jump to one of a few chains: each target is resolved once.
func checkSet(s *Set, in Resolver) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if !s.Map {
		return nil
	}
	seen := map[Verdict]bool{}
	for i := range s.Len() {
		e := s.At(i)
		if seen[e.Verdict] {
			continue
		}
		seen[e.Verdict] = true
		for _, ref := range s.ElementRefs(e) {
			if err := Resolve(ref, in); err != nil {
				return fmt.Errorf("set %s element %s: %w", s.Name, s.ElementKey(e), err)
			}
		}
	}
	return nil
}

// ruleText renders a rule for an error message without panicking on a rule
// whose fields its Text cannot render.
func ruleText(r Rule) (s string) {
	defer func() {
		if recover() != nil {
			s = fmt.Sprintf("%T", r)
		}
	}()
	return RuleText(r)
}

// Validate reports whether s is a set the kernel can create: named, with a
// valid key type and a comment nft keeps, and, when sized, not an interval
// set (the kernel sizes those itself) and holding no more than its size.
func (s *Set) Validate() error {
	switch {
	case s.Name == "":
		return errors.New("set without a name")
	case len(s.Comment) > MaxComment:
		return fmt.Errorf("set %s: comment longer than %d bytes", s.Name, MaxComment)
	case s.Key == KeyInvalid || s.Key > KeyIPv6ProtoPort:
		return fmt.Errorf("set %s: invalid key type %d", s.Name, s.Key)
	case s.Size != 0 && s.Interval:
		return fmt.Errorf("set %s: an interval set has no size (the kernel sizes it)", s.Name)
	case s.Size != 0 && uint64(s.Len()) > uint64(s.Size):
		return fmt.Errorf("set %s: %d elements do not fit its size %d", s.Name, s.Len(), s.Size)
	}
	return nil
}

// MaxObjectName is the longest object name the kernel takes
// (NFT_OBJ_MAXNAMELEN less its terminating zero).
const MaxObjectName = 255

// Validate reports whether l is a limit object the kernel takes and nft
// can print and read back.
func (l *Limit) Validate() error {
	switch {
	case l.Name == "" || len(l.Name) > MaxObjectName:
		return fmt.Errorf("limit name %q is empty or longer than %d bytes", l.Name, MaxObjectName)
	case strings.ContainsAny(l.Name, "\"\x00\n "):
		return fmt.Errorf("limit name %q holds a quote, space, newline or NUL", l.Name)
	case l.Rate == 0:
		return fmt.Errorf("limit %s: rate 0", l.Name)
	case l.Burst == 0:
		return fmt.Errorf("limit %s: burst 0", l.Name)
	}
	return nil
}

// Validate reports whether v is a verdict the kernel takes: a known kind,
// and a target chain for a jump or goto.
func (v Verdict) Validate() error {
	switch v.Kind {
	case Accept, Drop, Return:
		return nil
	case Jump, Goto:
		if v.Chain == "" {
			return fmt.Errorf("%s without a target chain", v.kindWord())
		}
		return nil
	case VerdictInvalid:
	}
	return fmt.Errorf("invalid verdict kind %d", v.Kind)
}

// kindWord returns "jump" or "goto".
func (v Verdict) kindWord() string {
	if v.Kind == Goto {
		return "goto"
	}
	return "jump"
}
