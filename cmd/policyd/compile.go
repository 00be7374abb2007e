package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ruleset"
	"github.com/policyd/policyd/selectors"
)

// previewTable is the table name compile prints by default: loading the
// output on a node with nft -f then adds a table beside the agent's instead
// of replacing the agent's rules.
const previewTable = ruleset.TableName + "-preview"

func newCompileCommand() *cobra.Command {
	var src source
	var node, table string
	var bf budgetFlags
	cmd := &cobra.Command{
		Use:   "compile --node NAME [-f PATH... | --kubeconfig FILE --context NAME]",
		Short: "Print the nftables ruleset a node would get, as nft -f text",
		Long: `Compile the NetworkPolicies, pods and namespaces found in PATH (a file or a
directory of Kubernetes YAML/JSON, or - for stdin), or read from the cluster
(--kubeconfig, --context, as kubectl does), into the nftables table policyd
would program on node NAME, and print it as nft -f text.

The table is named "` + previewTable + `" unless --table says otherwise, so that
loading the text on a node cannot replace the table the agent ("` + ruleset.TableName + `")
keeps. The text loads as it is:

  policyd compile -f examples/ --node node-a > /tmp/policyd.nft
  nft -f /tmp/policyd.nft
  nft delete table inet ` + previewTable + `

A loaded preview table is enforced too: its base chains see every packet,
and a packet either table drops is dropped. --table ` + ruleset.TableName + ` prints the
agent's own table, e.g. to pre-seed a node the agent will then adopt.

NAME must be the spec.nodeName of a pod in the input or the name of a Node
object in it; anything else is an error listing the known nodes. Invalid
policies are reported on stderr and compiled in their fail-closed form: an
invalid part matches nothing. Objects over the budgets are quarantined as
the agent would (see below), each named on stderr ("quarantined: ...") and
in a comment at the top of the table.

` + budgetHelp + `

Exit status: 0 printed, 2 on bad usage or input (an unknown node, broken
manifests, no cluster found), 3 when the API server cannot be read.`,
		Example: `  policyd compile -f examples/ --node node-a
  policyd compile --context kind-kind --node kind-worker | less
  kubectl get pods,networkpolicies,namespaces -A -o yaml | policyd compile -f - --node node-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return usagef("--node is required")
			}
			if table == "" || strings.ContainsAny(table, " \t\n{};\"") {
				return usagef("--table %q: want an nftables table name", table)
			}
			snap, err := src.snapshot(cmd)
			if err != nil {
				return err
			}
			known := knownNodes(snap)
			if !src.manifests.given() {
				known = append(known, liveNodes(cmd, &src.kube)...)
			}
			if !contains(known, node) {
				sort.Strings(known)
				return usagef("--node %s: no pod in the input runs on it and no Node object names it; known nodes: %s", node, strings.Join(compactStrings(known), ", "))
			}
			budget, err := bf.budget()
			if err != nil {
				return err
			}
			cc := &compile.Compiler{Options: compile.Options{Budget: budget}}
			rs, err := cc.Compile(selectors.FromSnapshot(snap), node)
			if err != nil {
				return err
			}
			var head strings.Builder
			fmt.Fprintf(&head, "# policyd compile --node %s: the table policyd would program on that node (nft -f)\n", node)
			for _, d := range cc.Quarantined() {
				fmt.Fprintln(cmd.ErrOrStderr(), "quarantined:", d.Message())
				fmt.Fprintf(&head, "# QUARANTINED: %s\n", d.Message())
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s%s", head.String(), rs.TextAs(table))
			return err
		},
	}
	src.add(cmd)
	bf.add(cmd)
	cmd.Flags().StringVar(&node, "node", "", "node to compile for (pods with this spec.nodeName)")
	cmd.Flags().StringVar(&table, "table", previewTable, "name of the inet table to print; "+ruleset.TableName+" is the agent's own table, which loading the output then replaces")
	return cmd
}

// knownNodes are the nodes snap knows: its pods' nodes and its Node objects.
func knownNodes(snap *cluster.Snapshot) []string {
	var names []string
	for _, p := range snap.Pods {
		if p.NodeName != "" {
			names = append(names, p.NodeName)
		}
	}
	for _, n := range snap.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// liveNodes lists the cluster's nodes, or nothing if the caller may not.
func liveNodes(cmd *cobra.Command, k *kubeFlags) []string {
	cfg, err := k.restConfig()
	if err != nil {
		return nil
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil
	}
	l, err := client.CoreV1().Nodes().List(cmd.Context(), metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var names []string
	for _, n := range l.Items {
		names = append(names, n.Name)
	}
	return names
}

func compactStrings(sorted []string) []string {
	var out []string
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return []string{"(none)"}
	}
	return out
}
