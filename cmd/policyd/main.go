// Command policyd enforces Kubernetes NetworkPolicies on a node with nftables
// and explains its decisions. See `policyd --help`. Installed on the PATH as
// kubectl-policyd, it is also a kubectl plugin: `kubectl policyd explain …`.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version and commit are set at link time by the Makefile:
// -ldflags "-X main.version=... -X main.commit=...". Without them they come
// from the module and VCS information Go records in the binary.
var (
	version = ""
	commit  = ""
)

func main() {
	os.Exit(execute(newRootCommand(), os.Args[1:], os.Stderr))
}

// buildVersion returns the version and commit: the link-time values, else
// what the Go toolchain recorded (the module version of `go install
// …@version`, the vcs.revision of a build in a git checkout), else "dev".
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	info, ok := debug.ReadBuildInfo()
	if ok {
		if ver == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			ver = info.Main.Version
		}
		if rev == "" {
			var modified bool
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" && modified {
				rev += "-dirty"
			}
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}

// commandName is the name the binary was invoked as, so that usage, help
// and completion say "kubectl-policyd" (shown as "kubectl policyd") when it
// runs as a kubectl plugin.
func commandName() string { return nameOf(os.Args[0]) }

// nameOf is commandName for the path the binary was run as.
func nameOf(arg0 string) string {
	name := filepath.Base(arg0)
	// Windows runs kubectl-policyd.exe; the suffix is no part of the name.
	if ext := filepath.Ext(name); strings.EqualFold(ext, ".exe") {
		name = strings.TrimSuffix(name, ext)
	}
	if strings.HasPrefix(name, "kubectl-") {
		return "kubectl " + strings.TrimPrefix(name, "kubectl-")
	}
	return "policyd"
}

func newRootCommand() *cobra.Command {
	ver, rev := buildVersion()
	name := commandName()
	root := &cobra.Command{
		Use:   name,
		Short: "Kubernetes NetworkPolicy enforcement in the kernel, with nftables",
		Long: `policyd enforces Kubernetes NetworkPolicies (networking.k8s.io/v1) on each node
with nftables sets and verdict maps, beside whatever CNI the cluster runs.
Every packet is judged in the kernel; policyd only programs the table.
explain, compile and lab show what it would do, offline from manifests or
against a live cluster; observe shows what the kernel did to live packets on
this node, and which policy decided.

Exit status, for every command: 0 ok (explain: allowed), 1 denied (explain)
or findings (lab, --trace disagreements), 2 usage or input errors (unknown
command or flag, bad flag value, wrong arguments, missing or broken
manifests, unknown pod or node, no cluster found), 3 other failures (the API
server or the kernel failed).`,
		Version:       fmt.Sprintf("%s (commit %s, %s)", ver, rev, runtime.Version()),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(name, "kubectl ") {
		// Cobra takes the first word of Use as the command's name; the
		// annotation makes help show the whole "kubectl policyd".
		root.Use = strings.ReplaceAll(name, " ", "-")
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: name}
	}
	root.PersistentFlags().BoolP("verbose", "v", false, "also list the manifest objects that were skipped (Services, Deployments, …) and other notes")
	root.AddCommand(newRunCommand(), newExplainCommand(), newDiffCommand(), newCompileCommand(), newLabCommand(), newLintCommand(), newObserveCommand(), newCleanupCommand(), newVersionCommand())
	withUsageErrors(root)
	return root
}

// isVerbose reports the root's --verbose flag as cmd sees it.
func isVerbose(cmd *cobra.Command) bool {
	f := cmd.Flag("verbose")
	return f != nil && f.Value.String() == "true"
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go version it was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ver, rev := buildVersion()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "policyd %s\ncommit %s\n%s %s/%s\n", ver, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
