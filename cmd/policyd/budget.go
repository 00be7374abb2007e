package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/policyd/policyd/policy/compile"
)

// budgetFlags are the budget flags of run, compile, explain and lint: the
// same defaults everywhere, so that offline answers quarantine what the
// agent does.
type budgetFlags struct {
	memoryLimit string
	object      compile.Cost
	node        compile.Cost
	cmd         *cobra.Command
}

// budgetHelp explains how the defaults are derived (README, "Budgets and
// quarantine").
var budgetHelp = `Budgets. Before it builds a node's table, policyd counts what it will hold
(rules, set and map elements, chains) and what each NetworkPolicy and
ClusterNetworkPolicy adds to it. An object over the per-object budget is
quarantined: its pods fail closed (a NetworkPolicy isolates them with none
of its rules; a ClusterNetworkPolicy denies everything in its directions).
While the node is over the per-node budget, the most expensive objects (the
newest of equal cost first) are quarantined too. Each quarantine is a
Warning Event (PolicyQuarantined), a log line and a metric; explain and lint
show it. Unset budgets derive from --memory-limit (the DaemonSet's limit,
256Mi) and what a unit costs the agent (BenchmarkBudgetBytes): per node, five
eighths of it for elements at ` + fmt.Sprint(compile.BytesPerElement) + ` bytes each, a quarter for rules at ` + fmt.Sprint(compile.BytesPerRule) + ` bytes,
a sixteenth for chains at ` + fmt.Sprint(compile.BytesPerChain) + ` bytes; per object, an eighth of the node's budget.`

func (b *budgetFlags) add(cmd *cobra.Command) {
	b.cmd = cmd
	def := compile.DefaultBudget(0)
	f := cmd.Flags()
	f.StringVar(&b.memoryLimit, "memory-limit", "256Mi", "the agent's memory limit (the DaemonSet's), which the budgets below default from")
	f.IntVar(&b.node.Rules, "max-node-rules", def.Node.Rules, "per-node budget: most rules in the node's table (default from --memory-limit)")
	f.IntVar(&b.node.Elements, "max-node-elements", def.Node.Elements, "per-node budget: most set and map elements (default from --memory-limit)")
	f.IntVar(&b.node.Chains, "max-node-chains", def.Node.Chains, "per-node budget: most chains (default from --memory-limit)")
	f.IntVar(&b.object.Rules, "max-object-rules", def.Object.Rules, "per-object budget: most rules one policy object may add to a node's table (default from --memory-limit)")
	f.IntVar(&b.object.Elements, "max-object-elements", def.Object.Elements, "per-object budget: most set elements one policy object may refer to (default from --memory-limit)")
	f.IntVar(&b.object.Chains, "max-object-chains", def.Object.Chains, "per-object budget: most chains one policy object may add (default from --memory-limit)")
}

// budget returns the budget the flags give: each one set explicitly, the
// others derived from --memory-limit.
func (b *budgetFlags) budget() (compile.Budget, error) {
	q, err := resource.ParseQuantity(b.memoryLimit)
	if err != nil || q.Value() < 16<<20 {
		return compile.Budget{}, usagef("--memory-limit %q: want a quantity of at least 16Mi, such as 256Mi", b.memoryLimit)
	}
	out := compile.DefaultBudget(q.Value())
	f := b.cmd.Flags()
	for _, v := range []struct {
		flag string
		val  int
		dst  *int
	}{
		{"max-node-rules", b.node.Rules, &out.Node.Rules},
		{"max-node-elements", b.node.Elements, &out.Node.Elements},
		{"max-node-chains", b.node.Chains, &out.Node.Chains},
		{"max-object-rules", b.object.Rules, &out.Object.Rules},
		{"max-object-elements", b.object.Elements, &out.Object.Elements},
		{"max-object-chains", b.object.Chains, &out.Object.Chains},
	} {
		if !f.Changed(v.flag) {
			continue
		}
		if v.val < 1 {
			return compile.Budget{}, usagef("--%s %d: want at least 1", v.flag, v.val)
		}
		*v.dst = v.val
	}
	return out, nil
}
