package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// lowerLog returns the expressions of a LogRule, in the order of its text:
// the optional ct state match, the counter, the optional limit, the log
// statement. It has no verdict expression: the rule is non-terminal.
func lowerLog(r *ruleset.LogRule) []expr.Any {
	var exprs []expr.Any
	if r.States != 0 {
		exprs = ctStateMatch(r.States)
	}
	exprs = append(exprs, &expr.Counter{})
	if r.Limit != "" {
		exprs = append(exprs, &expr.Objref{Type: int(nftables.ObjTypeLimit), Name: r.Limit})
	}
	return append(exprs, &expr.Log{
		Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
		Group: r.Group,
		Data:  []byte(r.Prefix),
	})
}

// lowerLimit returns the netlink form of a limit object, which
// ruleset.Limit.Validate has accepted.
func lowerLimit(t *nftables.Table, l *ruleset.Limit) *nftables.NamedObj {
	return &nftables.NamedObj{Table: t, Name: l.Name, Type: nftables.ObjTypeLimit,
		Obj: &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Unit: expr.LimitTimeSecond, Burst: l.Burst}}
}
