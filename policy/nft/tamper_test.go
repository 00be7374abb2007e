package nft

import (
	"strings"
	"testing"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/ruleset"
)

// ownedChains returns one chain of every kind policyd owns in a compiled
// ruleset: both base chains, an ingress and an egress group chain and the
// invalid chain. It fails the test if the ruleset lacks a kind.
func ownedChains(t *testing.T, rs *ruleset.Ruleset) map[string]*ruleset.Chain {
	t.Helper()
	out := map[string]*ruleset.Chain{}
	for _, c := range rs.Chains {
		kind := c.Name
		if c.Base == nil {
			kind, _, _ = strings.Cut(c.Name, "-")
		}
		if _, ok := out[kind]; !ok {
			out[kind] = c
		}
	}
	for _, kind := range []string{"postrouting", "input", "ingress", "egress", "invalid"} {
		if out[kind] == nil {
			t.Fatalf("compiled ruleset has no %s chain", kind)
		}
	}
	return out
}

// ruleHandles returns the handles of the rules of a chain, in order.
func ruleHandles(t *testing.T, ns, chain string) []string {
	t.Helper()
	out := netnstest.MustExec(t, ns, "nft", "-a", "list", "chain", "inet", ruleset.TableName, chain)
	var handles []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "# handle "); i >= 0 && !strings.Contains(line, "chain ") {
			handles = append(handles, strings.TrimSpace(line[i+len("# handle "):]))
		}
	}
	if len(handles) == 0 {
		t.Fatalf("no rule handle in:\n%s", out)
	}
	return handles
}

// lastRuleHandle returns the handle of the last rule of a chain.
func lastRuleHandle(t *testing.T, ns, chain string) string {
	t.Helper()
	h := ruleHandles(t, ns, chain)
	return h[len(h)-1]
}

// tampers are the ways anything holding CAP_NET_ADMIN can edit a chain
// behind policyd's back. Each returns the nft arguments for chain c.
var tampers = []struct {
	name string
	cmd  func(t *testing.T, ns string, c *ruleset.Chain) []string
}{
	{"flush", func(t *testing.T, ns string, c *ruleset.Chain) []string {
		return []string{"flush", "chain", "inet", ruleset.TableName, c.Name}
	}},
	{"insert accept", func(t *testing.T, ns string, c *ruleset.Chain) []string {
		return []string{"insert", "rule", "inet", ruleset.TableName, c.Name, "accept"}
	}},
	{"delete last rule", func(t *testing.T, ns string, c *ruleset.Chain) []string {
		return []string{"delete", "rule", "inet", ruleset.TableName, c.Name, "handle", lastRuleHandle(t, ns, c.Name)}
	}},
	// The replacement carries no comment, like the last rule of every
	// chain kind here: a match by comment would not see it.
	{"replace last rule", func(t *testing.T, ns string, c *ruleset.Chain) []string {
		return []string{"replace", "rule", "inet", ruleset.TableName, c.Name, "handle", lastRuleHandle(t, ns, c.Name), "accept"}
	}},
	// The replacement keeps the comment of the rule it replaces.
	{"replace commented rule", func(t *testing.T, ns string, c *ruleset.Chain) []string {
		for i, r := range c.Rules {
			if cm := r.RuleComment(); cm != "" {
				return []string{"replace", "rule", "inet", ruleset.TableName, c.Name, "handle", ruleHandles(t, ns, c.Name)[i], "accept", "comment", `"` + cm + `"`}
			}
		}
		t.Fatalf("chain %s has no rule with a comment", c.Name)
		return nil
	}},
}

// TestSync_RepairsTamperedChains tampers with every kind of chain policyd
// owns in every way, and requires the next Sync (of the running Backend, and
// of a new one as after a restart) to flush and refill exactly that chain,
// leaving the table as it listed before, and the Sync after it to write
// nothing.
func TestSync_RepairsTamperedChains(t *testing.T) {
	rs := compiledRuleset(t)
	chains := ownedChains(t, rs)
	paths := []struct {
		name    string
		backend func(t *testing.T, ns string, running *Backend) *Backend
	}{
		{"running backend", func(t *testing.T, ns string, running *Backend) *Backend { return running }},
		{"restarted backend", func(t *testing.T, ns string, running *Backend) *Backend { return newBackendIn(t, ns) }},
	}
	for _, kind := range []string{"postrouting", "input", "ingress", "egress", "invalid"} {
		chain := chains[kind]
		for _, tamper := range tampers {
			for _, path := range paths {
				t.Run(kind+"/"+tamper.name+"/"+path.name, func(t *testing.T) {
					ns, b := kernelNS(t)
					mustSync(t, b, rs)
					before := listTable(t, ns)
					netnstest.MustExec(t, ns, append([]string{"nft"}, tamper.cmd(t, ns, chain)...)...)
					if listTable(t, ns) == before {
						t.Fatalf("%s of chain %s did not change the listing", tamper.name, chain.Name)
					}
					b = path.backend(t, ns, b)
					// Flush the chain, then write its rules.
					wantStats(t, "repair", mustSync(t, b, rs), true, 1+len(chain.Rules))
					if got := listTable(t, ns); got != before {
						t.Fatalf("chain %s not repaired after %s (-before +after):\n%s", chain.Name, tamper.name, lineDiff(before, got))
					}
					wantStats(t, "after repair", mustSync(t, b, rs), false, 0)
				})
			}
		}
	}
}

// TestSync_UntamperedCompiledTableWritesNothing checks that verifying every
// chain's content costs no operations when nothing was changed: a partial
// sync, a full one forced by a commit to another table, and the adoption by
// a new Backend all write 0 operations.
func TestSync_UntamperedCompiledTableWritesNothing(t *testing.T) {
	rs := compiledRuleset(t)
	ns, b := kernelNS(t)
	mustSync(t, b, rs)
	before := listTable(t, ns)
	wantStats(t, "partial", mustSync(t, b, rs), false, 0)
	netnstest.MustExec(t, ns, "nft", "add", "table", "ip", "other")
	wantStats(t, "after another table changed", mustSync(t, b, rs), true, 0)
	wantStats(t, "new backend", mustSync(t, newBackendIn(t, ns), rs), true, 0)
	if got := listTable(t, ns); got != before {
		t.Fatalf("table changed (-before +after):\n%s", lineDiff(before, got))
	}
}
