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
// Prefix is the id of what decided (see Ruleset.Deciders); Group the nfnetlink_log
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
