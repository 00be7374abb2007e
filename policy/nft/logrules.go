package nft

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
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
	if r.Limit != "" {
		exprs = append(exprs, &expr.Objref{Type: int(nftables.ObjTypeLimit), Name: r.Limit})
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
	case strings.ContainsAny(r.Limit, "\"\x00\n"):
		return fmt.Errorf("limit name %q holds a quote, newline or NUL", r.Limit)
	}
	return nil
}

// lowerLimit returns the netlink form of a limit object.
func lowerLimit(t *nftables.Table, l *ruleset.Limit) (*nftables.NamedObj, error) {
	if err := checkLimit(l); err != nil {
		return nil, err
	}
	return &nftables.NamedObj{Table: t, Name: l.Name, Type: nftables.ObjTypeLimit,
		Obj: &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Unit: expr.LimitTimeSecond, Burst: l.Burst}}, nil
}

// checkLimit validates a limit object.
func checkLimit(l *ruleset.Limit) error {
	switch {
	case l.Name == "" || len(l.Name) > maxObjName:
		return fmt.Errorf("limit name %q is empty or longer than %d bytes", l.Name, maxObjName)
	case strings.ContainsAny(l.Name, "\"\x00\n "):
		return fmt.Errorf("limit name %q holds a quote, space, newline or NUL", l.Name)
	case l.Rate == 0:
		return fmt.Errorf("limit %s: rate 0", l.Name)
	case l.Burst == 0:
		return fmt.Errorf("limit %s: burst 0", l.Name)
	}
	return nil
}

// maxObjName is the longest object name the kernel takes (NFT_OBJ_MAXNAMELEN
// less its terminating zero).
const maxObjName = 255
