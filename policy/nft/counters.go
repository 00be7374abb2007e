package nft

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/policyd/policyd/policy/ruleset"
)

// Counter is what the counter of one log rule has counted.
type Counter struct {
	Packets, Bytes uint64
}

// LogCounters reads the counters of the log rules in policyd's log chains,
// keyed by the rule's log prefix (its decider id). It reads rule bodies
// only for this: google/nftables decodes counter and log expressions, and
// nothing is diffed against what it reads. A log chain recreated by a sync
// starts from zero; callers treat a decrease as a reset.
func (b *Backend) LogCounters(ctx context.Context) (map[string]Counter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var opts []nftables.ConnOption
	if b.opts.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.opts.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: counters: %w", err)
	}
	defer func() { _ = conn.CloseLasting() }() // a read-only netlink socket
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("nft: counters: list chains: %w", err)
	}
	out := map[string]Counter{}
	for _, ch := range chains {
		if ch.Table.Name != ruleset.TableName || !strings.HasPrefix(ch.Name, ruleset.LogChainPrefix) {
			continue
		}
		rules, err := conn.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("nft: counters: rules of %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			var c *expr.Counter
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					c = e
				case *expr.Log:
					if c != nil {
						prev := out[string(e.Data)]
						out[string(e.Data)] = Counter{Packets: prev.Packets + c.Packets, Bytes: prev.Bytes + c.Bytes}
					}
				}
			}
		}
	}
	return out, nil
}
