package ruleset

import (
	"fmt"
	"strings"
)

// LogRule counts the packets that reach it, and logs them to an
// nfnetlink_log group behind a rate limit; it applies no verdict, so
// evaluation goes on with the next rule. It is the only non-terminal shape:
// compile puts it first in a log chain (see LogChainPrefix) whose next rule
// applies the verdict it records.
//
//	counter limit name "log-limit-100-200" log prefix "pd:0123456789abcdef" group 100
//
// Prefix is the id of what decided (see Decider); Group the nfnetlink_log
// group. With States set the rule matches only packets in those conntrack
// states (`ct state new counter …`), which accept logging uses. Limit names
// the table's Limit object that gates the log; every log rule of a table
// names the same one, so the rate is the node's, however many deciders fire.
// An empty Limit logs every packet. The counter counts every packet that
// reaches the rule, the limit only gates the log.
type LogRule struct {
	States  CtState
	Prefix  string
	Group   uint16
	Limit   string
	Comment string
}

// Limit is a named limit object of the table (`limit NAME { rate R/second
// burst B packets }`): a token bucket the rules that name it share. Its name
// is its content (see LimitName), so a changed rate is a new object and the
// kernel never has to update one in place, which it cannot do for limits.
type Limit struct {
	Name  string
	Rate  uint32 // packets a second; never 0
	Burst uint32 // packets
}

// LimitName returns the name of the Limit of rate and burst.
func LimitName(rate, burst uint32) string {
	return fmt.Sprintf("log-limit-%d-%d", rate, burst)
}

// Text renders the object's declaration.
func (l *Limit) Text() string {
	return fmt.Sprintf("limit %s { rate %d/second burst %d packets }", l.Name, l.Rate, l.Burst)
}

// MaxLogPrefix is the longest log prefix the kernel keeps (NF_LOG_PREFIXLEN
// less its terminating zero).
const MaxLogPrefix = 127

func (*LogRule) shape() Shape { return ShapeLog }

// RuleComment implements Rule.
func (r *LogRule) RuleComment() string { return r.Comment }

// RuleVerdict implements Rule: the zero Verdict, the rule is non-terminal.
func (r *LogRule) RuleVerdict() Verdict { return Verdict{} }

// SetRefs implements Rule.
func (r *LogRule) SetRefs() []string { return refSetNames(r.Refs()) }

// Text implements Rule.
func (r *LogRule) Text() string {
	var parts []string
	if r.States != 0 {
		parts = append(parts, "ct state "+ctStateText(r.States))
	}
	parts = append(parts, "counter")
	if r.Limit != "" {
		parts = append(parts, "limit name "+quote(r.Limit))
	}
	parts = append(parts, fmt.Sprintf("log prefix %s group %d", quote(r.Prefix), r.Group))
	return strings.Join(parts, " ")
}

// LogChainPrefix starts the name of every log chain: a chain holding one
// LogRule and then the verdict it logs. Verdicts that are logged jump (goto)
// there instead of applying the verdict in place.
const LogChainPrefix = "log-"

// DeciderKind says what kind of thing decided a logged verdict. The zero
// value is invalid.
type DeciderKind uint8

// Decider kinds.
const (
	DeciderInvalid DeciderKind = iota
	// DeciderPolicies is the default deny of the NetworkPolicies that
	// isolate a pod in one direction (no rule of theirs allowed the packet),
	// or, for an accept, the policies one of whose rules allowed it.
	DeciderPolicies
	// DeciderCNP is one rule of a ClusterNetworkPolicy.
	DeciderCNP
	// DeciderCtInvalid is the drop of a packet conntrack calls invalid.
	DeciderCtInvalid
)

// String names the kind.
func (k DeciderKind) String() string {
	switch k {
	case DeciderPolicies:
		return "networkpolicy"
	case DeciderCNP:
		return "clusternetworkpolicy"
	case DeciderCtInvalid:
		return "ct-invalid"
	}
	return "invalid"
}

// Decider is what a log id stands for. Its fields are its identity: the id
// is a hash of Key, so two deciders with the same id are the same decider.
type Decider struct {
	Kind DeciderKind
	// Direction is "ingress" or "egress".
	Direction string
	// Verdict is Drop or Accept.
	Verdict VerdictKind
	// Policies are the NetworkPolicies ("namespace/name", sorted) of a
	// DeciderPolicies.
	Policies []string
	// Tier ("admin" or "baseline"), Name and Rule (the index of the rule in
	// its direction) name a DeciderCNP's rule; Action is its action.
	Tier   string
	Name   string
	Rule   int
	Action string
}

// Key is the canonical text of d; its hash is d's id.
func (d Decider) Key() string {
	switch d.Kind {
	case DeciderCNP:
		return fmt.Sprintf("cnp|%s|%s|%s|%d|%s|%s", d.Direction, d.Tier, d.Name, d.Rule, d.Action, Verdict{Kind: d.Verdict})
	case DeciderCtInvalid:
		return fmt.Sprintf("invalid|%s|%s", d.Direction, Verdict{Kind: d.Verdict})
	}
	return fmt.Sprintf("%s|%s|%s|%s", d.Kind, d.Direction, strings.Join(d.Policies, ","), Verdict{Kind: d.Verdict})
}

// String renders d for people.
func (d Decider) String() string {
	switch d.Kind {
	case DeciderCNP:
		return fmt.Sprintf("%s cnp %s %s[%d] %s", d.Tier, d.Name, d.Direction, d.Rule, d.Action)
	case DeciderCtInvalid:
		return fmt.Sprintf("ct state invalid %s", d.Direction)
	}
	if d.Verdict == Accept {
		return fmt.Sprintf("%s allowed by %s", d.Direction, strings.Join(d.Policies, ","))
	}
	return fmt.Sprintf("%s default deny of %s", d.Direction, strings.Join(d.Policies, ","))
}

func ctStateText(s CtState) string {
	var states []string
	for _, st := range []struct {
		bit  CtState
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"}} {
		if s&st.bit != 0 {
			states = append(states, st.name)
		}
	}
	return strings.Join(states, ",")
}
