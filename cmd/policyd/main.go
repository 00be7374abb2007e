// Command policyd enforces Kubernetes NetworkPolicies on a node with nftables
// and explains its decisions. See `policyd --help`.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		if e := (*exitError)(nil); !errors.As(err, &e) || e.err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(exitCode(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "policyd",
		Short: "Kubernetes NetworkPolicy enforcement in the kernel, with nftables",
		Long: `policyd enforces Kubernetes NetworkPolicies (networking.k8s.io/v1) on each node
with nftables sets and verdict maps, beside whatever CNI the cluster runs.
Every packet is judged in the kernel; policyd only programs the table.

Commands:
  run       the node agent (a DaemonSet: see deploy/)
  explain   say whether traffic between two pods is allowed, and which policy
            and rule decide it (offline from manifests)
  compile   print the nftables ruleset one node would get, as nft -f text
  lab       run the conformance lab: a cluster of network namespaces, real
            packets through real nftables, expected vs observed matrices
  cleanup   remove policyd's nftables table from this node`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newExplainCommand(), newCompileCommand(), newLabCommand(), newLintCommand(), newCleanupCommand())
	return root
}

// exitError carries a specific exit code (e.g. 1 for "denied" or "lab
// disagreement", 2 for usage errors).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func exitCode(err error) int {
	if e := (*exitError)(nil); errors.As(err, &e) {
		return e.code
	}
	return 1
}
