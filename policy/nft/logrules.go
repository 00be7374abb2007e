package nft

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables/binaryutil"
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
		exprs = append(exprs,
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(uint32(r.States)), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		)
	}
	exprs = append(exprs, &expr.Counter{})
	if r.Rate != 0 {
		exprs = append(exprs, &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(r.Rate), Unit: expr.LimitTimeSecond, Burst: r.Burst})
	}
	exprs = append(exprs, &expr.Log{
		Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
		Group: r.Group,
		Data:  []byte(r.Prefix),
	})
	return exprs
}

// checkLog validates a LogRule.
func checkLog(r *ruleset.LogRule) error {
	switch {
	case r.Prefix == "":
		return errors.New("log rule without a prefix")
	case len(r.Prefix) > ruleset.MaxLogPrefix:
		return fmt.Errorf("log prefix longer than %d bytes", ruleset.MaxLogPrefix)
	case strings.ContainsAny(r.Prefix, "\"\x00\n"):
		return fmt.Errorf("log prefix %q holds a quote, newline or NUL", r.Prefix)
	case r.Rate == 0 && r.Burst != 0:
		return errors.New("log burst without a rate")
	case r.Rate != 0 && r.Burst == 0:
		return errors.New("log rate without a burst")
	}
	return nil
}
