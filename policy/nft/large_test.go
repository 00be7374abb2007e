package nft

import (
	"context"
	"strings"
	"testing"
)

// TestSync_LargeRuleBatchCommits: one batch of 20,000 rules (a node at two
// thirds of its default rule budget, as a first sync writes it) commits.
// The kernel queues an echo of every rule before the agent reads any; with
// room for 512 bytes a rule, a batch of 5,000 overflowed the socket
// (ENOBUFS) and never committed, and the node stayed on its old table.
func TestSync_LargeRuleBatchCommits(t *testing.T) {
	ns, b := kernelNS(t)
	if _, err := b.Sync(context.Background(), budgetShape("rules", 20000)); err != nil {
		t.Fatalf("a batch of 20,000 rules: %v", err)
	}
	out := listTable(t, ns)
	if n := strings.Count(out, " accept"); n < 20000 {
		t.Fatalf("the kernel holds %d of the 20,000 rules", n)
	}
}
