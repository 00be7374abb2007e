// Package decider owns the answer to "who decided": one value naming what
// decided one direction of a packet (the NetworkPolicies isolating a pod, one
// ClusterNetworkPolicy rule, or the conntrack-invalid drop) and its verdict.
// Compile records one for every verdict it logs (ruleset.Ruleset.Deciders),
// verdict records embed it (verdicts.Record), the model names its own answer
// as one (model.Direction.Decider), and the conformance runner compares the
// kernel's with the model's. It has one String and one JSON form, the one
// docs/verdicts.md documents; it imports nothing of policyd's, so everyone
// can.
package decider

import (
	"fmt"
	"slices"
	"strings"
)

// Kind says what kind of thing decided. The zero value is invalid.
type Kind uint8

// Decider kinds.
const (
	KindInvalid Kind = iota
	// KindNetworkPolicy is, for a deny, the default deny of the
	// NetworkPolicies that isolate a pod in one direction (no rule of
	// theirs admitted the packet); for an allow, the policy one of whose
	// rules admitted it.
	KindNetworkPolicy
	// KindClusterNetworkPolicy is one rule of a ClusterNetworkPolicy.
	KindClusterNetworkPolicy
	// KindCtInvalid is the drop of a packet conntrack calls invalid.
	KindCtInvalid

	numKinds // not a kind: how many there are, the invalid one included
)

// String names the kind as records and metrics do: "NetworkPolicy",
// "ClusterNetworkPolicy", "ct-invalid", or "invalid" for the zero Kind.
func (k Kind) String() string {
	switch k {
	case KindNetworkPolicy:
		return "NetworkPolicy"
	case KindClusterNetworkPolicy:
		return "ClusterNetworkPolicy"
	case KindCtInvalid:
		return "ct-invalid"
	case KindInvalid:
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler with String.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: the inverse of
// MarshalText; any other text is an error.
func (k *Kind) UnmarshalText(b []byte) error {
	for c := range numKinds {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("unknown decider kind %q", b)
}

// Verdict is what the decider did with the packet. The zero value is
// invalid.
type Verdict uint8

// Verdicts.
const (
	VerdictInvalid Verdict = iota
	// VerdictDeny is a drop.
	VerdictDeny
	// VerdictAllow is an accept.
	VerdictAllow

	numVerdicts // not a verdict: how many there are, the invalid one included
)

// String names the verdict as records and metrics do: "deny", "allow", or
// "invalid" for the zero Verdict.
func (v Verdict) String() string {
	switch v {
	case VerdictDeny:
		return "deny"
	case VerdictAllow:
		return "allow"
	case VerdictInvalid:
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler with String.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: the inverse of
// MarshalText; any other text is an error.
func (v *Verdict) UnmarshalText(b []byte) error {
	for c := range numVerdicts {
		if c.String() == string(b) {
			*v = c
			return nil
		}
	}
	return fmt.Errorf("unknown verdict %q", b)
}

// Decider is what decided one direction of a packet. Its JSON form is its
// fields' (docs/verdicts.md): it has no JSON methods of its own, so a type
// that embeds it (verdicts.Record) adds its fields to the same object.
type Decider struct {
	// Direction is "ingress" (judged on the destination pod) or "egress"
	// (on the source pod).
	Direction string  `json:"direction"`
	Verdict   Verdict `json:"verdict"`
	Kind      Kind    `json:"kind"`
	// Policies name the deciding policies, always a list: for a
	// KindNetworkPolicy deny every NetworkPolicy isolating the pod in
	// Direction ("namespace/name", sorted); for a KindNetworkPolicy allow
	// the policy whose rule admitted the packet; for a
	// KindClusterNetworkPolicy its name. Empty for KindCtInvalid.
	Policies []string `json:"policies,omitempty"`
	// Tier is a ClusterNetworkPolicy's tier: "Admin" or "Baseline".
	Tier string `json:"tier,omitempty"`
	// Rule is the index of the deciding rule in its policy's ingress or
	// egress list: a ClusterNetworkPolicy's rule, or the NetworkPolicy rule
	// that admitted the packet; nil for a default deny and KindCtInvalid.
	Rule *int `json:"rule,omitempty"`
	// RuleName is a ClusterNetworkPolicy rule's name, when it has one.
	RuleName string `json:"ruleName,omitempty"`
	// Action is a ClusterNetworkPolicy rule's action: "Accept", "Deny" or
	// "Pass".
	Action string `json:"action,omitempty"`
}

// Index returns a Rule value: a pointer to a copy of i.
func Index(i int) *int { return &i }

// Equal reports whether d and o are the same decider, field by field.
func (d Decider) Equal(o Decider) bool {
	sameRule := (d.Rule == nil) == (o.Rule == nil) && (d.Rule == nil || *d.Rule == *o.Rule)
	return d.Direction == o.Direction && d.Verdict == o.Verdict && d.Kind == o.Kind &&
		slices.Equal(d.Policies, o.Policies) && d.Tier == o.Tier && sameRule &&
		d.RuleName == o.RuleName && d.Action == o.Action
}

// Key is the canonical text of what d is; its hash is the id compile logs d
// under (compile.DeciderID). The rule's name is not part of it: it follows
// from the rest, and renaming a rule keeps its id. Key's text is part of
// every id, so it never changes for a decider that exists.
func (d Decider) Key() string {
	switch d.Kind {
	case KindClusterNetworkPolicy:
		return fmt.Sprintf("cnp|%s|%s|%s|%d|%s|%s", d.Direction, d.Tier, strings.Join(d.Policies, ","), rule(d.Rule), d.Action, nftVerdict(d.Verdict))
	case KindCtInvalid:
		return fmt.Sprintf("invalid|%s|%s", d.Direction, nftVerdict(d.Verdict))
	case KindNetworkPolicy:
		return fmt.Sprintf("networkpolicy|%s|%s|%s", d.Direction, strings.Join(d.Policies, ","), nftVerdict(d.Verdict))
	case KindInvalid:
	}
	return fmt.Sprintf("invalid|%s|%s|%s", d.Direction, strings.Join(d.Policies, ","), nftVerdict(d.Verdict))
}

// String renders d for people, as records' "decider" field and the log
// chains' comments do: "ingress default deny of x/a,x/b", "egress allowed
// by x/a", "Admin cnp n ingress[2] Deny", "ct state invalid egress".
func (d Decider) String() string {
	switch d.Kind {
	case KindClusterNetworkPolicy:
		return fmt.Sprintf("%s cnp %s %s[%d] %s", d.Tier, strings.Join(d.Policies, ","), d.Direction, rule(d.Rule), d.Action)
	case KindCtInvalid:
		return "ct state invalid " + d.Direction
	case KindNetworkPolicy:
		if d.Verdict == VerdictAllow {
			return fmt.Sprintf("%s allowed by %s", d.Direction, strings.Join(d.Policies, ","))
		}
		return fmt.Sprintf("%s default deny of %s", d.Direction, strings.Join(d.Policies, ","))
	case KindInvalid:
	}
	return fmt.Sprintf("invalid decider %s %s", d.Direction, d.Verdict)
}

// rule is *r, or -1 for none.
func rule(r *int) int {
	if r == nil {
		return -1
	}
	return *r
}

// nftVerdict names v as nft does, as Key always has.
func nftVerdict(v Verdict) string {
	switch v {
	case VerdictDeny:
		return "drop"
	case VerdictAllow:
		return "accept"
	case VerdictInvalid:
	}
	return fmt.Sprintf("invalid-verdict(%d)", v)
}
