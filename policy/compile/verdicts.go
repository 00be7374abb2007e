package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/policy/ruleset"
)

// LogOptions chooses which verdicts the compiled table counts and logs to
// nfnetlink_log. The zero value logs nothing, and the table is exactly what
// it is without logging.
//
// A logged verdict goes (goto) to a log chain instead of being applied in
// place: the chain holds one ruleset.LogRule (counter, limit, log) and then
// the verdict. One log chain serves one decider (see decider.Decider): the
// isolating policies of a group chain and a direction for a default deny,
// one rule of a ClusterNetworkPolicy, the conntrack-invalid drop of a
// direction; both families share it. So its counter counts that decider's
// packets exactly. The log statements of every log chain share one limit
// object (ruleset.Limit), so the node as a whole logs at most Rate packets a
// second (plus Burst), however many deciders fire.
type LogOptions struct {
	// Drops logs the packets policies drop: default denies, ClusterNetwork
	// Policy Deny rules and the conntrack-invalid drop.
	Drops bool
	// Allowed logs the new connections a policy rule allows: a
	// NetworkPolicy rule (at each end) or a ClusterNetworkPolicy Accept rule.
	Allowed bool
	// Group is the nfnetlink_log group.
	Group uint16
	// Rate is the node's log limit in packets a second, Burst its burst (1
	// when 0); Rate 0 logs every packet.
	Rate, Burst uint32
}

// LogPrefix starts every log prefix policyd writes.
const LogPrefix = "pd:"

// DeciderID returns the id of d: LogPrefix and a hash of d's Key, so the
// same decider has the same id in every ruleset and two deciders never share
// one (compile fails on a collision).
func DeciderID(d decider.Decider) string {
	sum := sha256.Sum256([]byte(d.Key()))
	return LogPrefix + hex.EncodeToString(sum[:8])
}

// logged returns the verdict a rule of decider d applies: v itself when the
// options do not log v's kind, else a goto to d's log chain, which it
// creates on first use.
//
// A hash collision (two deciders, one id) is kept in c.logErr, which fails
// the compile.
func (c *compiler) logged(v ruleset.Verdict, d decider.Decider) ruleset.Verdict {
	opts := c.cc.Options.Log
	switch v.Kind {
	case ruleset.Drop:
		if !opts.Drops {
			return v
		}
	case ruleset.Accept, ruleset.Return:
		if !opts.Allowed {
			return v
		}
	default:
		return v
	}
	d.Verdict = decider.VerdictAllow
	if v.Kind == ruleset.Drop {
		d.Verdict = decider.VerdictDeny
	}
	if c.rec != nil {
		c.rec.logs = append(c.rec.logs, logUse{v, d})
	}
	id := DeciderID(d)
	if old, ok := c.deciders[id]; ok && old.Key() != d.Key() {
		c.logErr = fmt.Errorf("log id %s stands for both %q and %q", id, old.Key(), d.Key())
	}
	if c.deciders == nil {
		c.deciders = map[string]decider.Decider{}
	}
	c.deciders[id] = d
	lr := &ruleset.LogRule{Prefix: id, Group: opts.Group, Limit: c.logLimit(), Comment: truncate(d.String())}
	if d.Verdict == decider.VerdictAllow {
		lr.States = ruleset.CtNew
	}
	rules := []ruleset.Rule{lr, &ruleset.VerdictRule{Verdict: v}}
	return ruleset.Verdict{Kind: ruleset.Goto, Chain: c.addChain(ruleset.LogChainPrefix+chainHash(rules), rules)}
}

// logLimit returns the name of the limit object the log rules share, and
// creates it on first use; "" when the options log every packet.
func (c *compiler) logLimit() string {
	opts := c.cc.Options.Log
	if opts.Rate == 0 {
		return ""
	}
	if c.limit == nil {
		c.limit = &ruleset.Limit{Rate: opts.Rate, Burst: max(opts.Burst, 1)}
		c.limit.Name = ruleset.LimitName(c.limit.Rate, c.limit.Burst)
	}
	return c.limit.Name
}

// policyKeys returns the keys of group, in the group's (sorted) order.
func policyKeys(group []*cluster.Policy) []string {
	keys := make([]string, len(group))
	for i, p := range group {
		keys[i] = p.Key()
	}
	return keys
}

// deciderMap returns a copy of the deciders of the log chains compiled, or nil.
func (c *compiler) deciderMap() map[string]decider.Decider {
	if len(c.deciders) == 0 {
		return nil
	}
	return maps.Clone(c.deciders)
}

// invalidVerdict returns the verdict of a packet in conntrack state invalid
// in a chain of direction d: in ingress, a jump to the invalid chain (which
// lets node traffic through); in egress, a drop, logged as the egress
// conntrack-invalid decider.
func (c *compiler) invalidVerdict(d cluster.Direction) ruleset.Verdict {
	if d == cluster.Ingress {
		return ruleset.Verdict{Kind: ruleset.Jump, Chain: c.invalidChain()}
	}
	return c.logged(ruleset.Verdict{Kind: ruleset.Drop}, decider.Decider{Kind: decider.KindCtInvalid, Direction: d.String()})
}

// cnpDecider returns the decider of rule ri of cp in direction d. Compile
// writes the rule's name into it, so whoever reads the Ruleset's Deciders
// names the rule as the compiled state did.
func cnpDecider(cp *cluster.ClusterPolicy, d cluster.Direction, ri int) decider.Decider {
	r := cp.Rules(d)[ri]
	return decider.Decider{Kind: decider.KindClusterNetworkPolicy, Direction: d.String(), Policies: []string{cp.Name},
		Tier: fmt.Sprint(cp.Tier), Rule: decider.Index(ri), RuleName: r.Name, Action: fmt.Sprint(r.Action)}
}
