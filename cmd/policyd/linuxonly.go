package main

import "github.com/spf13/cobra"

// linuxOnlyCommand stands in for a verb that needs the Linux kernel (run,
// lab and cleanup program nftables, and lab creates network namespaces) in
// a binary built for another system, such as a laptop's kubectl plugin. It
// is hidden from --help, accepts whatever flags and arguments the real verb
// takes, and fails with a usage error (exit 2) that says what it needs and
// what this binary is for.
func linuxOnlyCommand(verb, needs, short, goos, goarch string) *cobra.Command {
	return &cobra.Command{
		Use:                verb,
		Short:              short + " (Linux only)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return usagef("%s %s needs Linux (%s); this binary is for %s/%s", commandName(), verb, needs, goos, goarch)
		},
	}
}
