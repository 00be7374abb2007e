//go:build !linux

package main

import (
	"runtime"

	"github.com/spf13/cobra"
)

// On systems other than Linux, the verbs that program the kernel are
// stand-ins that say so (linuxOnlyCommand); explain, diff, compile, lint
// and observe work as on Linux.

func newRunCommand() *cobra.Command {
	return hostLinuxOnly("run", "nftables", "Run the node agent")
}

func newLabCommand() *cobra.Command {
	return hostLinuxOnly("lab", "network namespaces and nftables", "Build a lab of network namespaces and probe it")
}

func newCleanupCommand() *cobra.Command {
	return hostLinuxOnly("cleanup", "nftables", "Remove policyd's nftables table from this node")
}

// hostLinuxOnly is linuxOnlyCommand for the system this binary runs on.
func hostLinuxOnly(verb, needs, short string) *cobra.Command {
	return linuxOnlyCommand(verb, needs, short, runtime.GOOS, runtime.GOARCH)
}
