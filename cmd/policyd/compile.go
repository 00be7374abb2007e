package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/selectors"
)

func newCompileCommand() *cobra.Command {
	var manifests, node string
	cmd := &cobra.Command{
		Use:   "compile --manifests PATH --node NAME",
		Short: "Print the nftables ruleset a node would get, as nft -f text",
		Long: `Compile the NetworkPolicies, pods and namespaces found in PATH (a file or a
directory of Kubernetes YAML/JSON) into the nftables table policyd would
program on node NAME, and print it as nft -f text. The text loads as it is:

  policyd compile --manifests examples/ --node node-a > /tmp/policyd.nft
  nft -f /tmp/policyd.nft

Invalid policies are reported on stderr and compiled in their fail-closed
form: an invalid part matches nothing.`,
		Example: "  policyd compile --manifests examples/ --node node-a",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return &exitError{2, fmt.Errorf("--node is required")}
			}
			snap, err := loadSnapshot(cmd, manifests)
			if err != nil {
				return err
			}
			rs, err := compile.Compile(selectors.FromSnapshot(snap), node)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), rs.Text())
			return err
		},
	}
	cmd.Flags().StringVar(&manifests, "manifests", "", "file or directory of Kubernetes manifests (Namespace, Pod, NetworkPolicy)")
	cmd.Flags().StringVar(&node, "node", "", "node to compile for (pods with this spec.nodeName)")
	_ = cmd.MarkFlagRequired("manifests")
	return cmd
}

// loadSnapshot reads manifests and reports notes and validation errors on
// stderr. Validation errors do not stop the command: the snapshot holds the
// invalid policies in their fail-closed form.
func loadSnapshot(cmd *cobra.Command, path string) (*cluster.Snapshot, error) {
	objs, err := manifest.LoadPath(path)
	if err != nil {
		return nil, err
	}
	for _, n := range objs.Notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	snap, errs := objs.Snapshot()
	for _, e := range errs {
		fmt.Fprintln(cmd.ErrOrStderr(), "invalid:", e)
	}
	return snap, nil
}
