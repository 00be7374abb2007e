package trace

import "github.com/policyd/policyd/policy/ruleset"

// log is the step of a LogRule: it matches the packets in its conntrack
// states (every packet when it names none), records its prefix in
// Result.Logged and applies no verdict, so the chain goes on. The rate
// limit is not modelled: the tracer answers what is counted, and what would
// be logged were the limit not reached.
func (t *tracer) log(r *ruleset.LogRule) (bool, ruleset.Verdict, error) {
	if r.States != 0 && t.pkt.State&r.States == 0 {
		return false, ruleset.Verdict{}, nil
	}
	t.res.Logged = append(t.res.Logged, r.Prefix)
	return true, ruleset.Verdict{}, nil
}
