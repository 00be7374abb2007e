package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/internal/netnstest"
)

// TestCompileCommand_OutputLoadsWithNft runs `policyd compile` on the shipped
// examples for each node and loads its output with nft -f, as the help text
// promises, in a network namespace of the test's own.
func TestCompileCommand_OutputLoadsWithNft(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	for _, node := range []string{"node-a", "node-b"} {
		t.Run(node, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			cmd.SetArgs([]string{"compile", "--manifests", "../../examples", "--node", node})
			require.NoError(t, cmd.Execute(), errOut.String())
			require.Contains(t, out.String(), "table inet policyd-preview {", "by default compile prints a table that cannot replace the agent's")
			ns, _ := netnstest.New(t, "pdcompile")
			res, err := netnstest.ExecInput(t, ns, out.String(), "nft", "-f", "-")
			require.NoError(t, err, "nft -f rejected the compiled text: %s", res)
			listed := netnstest.MustExec(t, ns, "nft", "list", "table", "inet", "policyd-preview")
			require.True(t, strings.Contains(listed, "map ingress4"), listed)
			require.Contains(t, listed, "jump ingress-", "the examples isolate pods on every node: the maps must dispatch")
		})
	}
}

// TestCompileCommand_NamesQuarantined: an object over the budget flags is
// named on stderr and at the top of the table, which then holds none of
// its rules.
func TestCompileCommand_NamesQuarantined(t *testing.T) {
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"compile", "--manifests", "../../examples", "--node", "node-a", "--max-object-rules", "2"})
	require.NoError(t, cmd.Execute(), errOut.String())
	require.Contains(t, errOut.String(), "quarantined: NetworkPolicy ")
	require.Contains(t, errOut.String(), "over the per-object budget of 2")
	require.Contains(t, out.String(), "# QUARANTINED: NetworkPolicy ")
	cmd = newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"compile", "--manifests", "../../examples", "--node", "node-a", "--max-object-rules", "0"})
	require.Error(t, cmd.Execute(), "a budget of 0 is refused")
}
