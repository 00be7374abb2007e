// Command pktbench measures what policyd's compiled nftables table costs on
// the packet path: 64-byte UDP packets/s and new TCP connections/s between two
// pod network namespaces routed through a node network namespace, with no
// table, with a conntrack-only table, with the table compiled for a synthetic
// cluster, and with the same allow-list as one linear rule per peer. It prints
// a markdown table to stdout and progress to stderr. It needs root; the
// network namespaces it creates (named pdbench-<pid>-…) are removed on exit,
// on SIGINT/SIGTERM, and, when a run was killed, by the next run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/policyd/policyd/bench/pktpath"
)

func main() {
	var opts pktpath.Options
	flag.DurationVar(&opts.Duration, "duration", time.Second, "length of one UDP and of one TCP measurement")
	flag.IntVar(&opts.Rounds, "rounds", 5, "interleaved rounds per configuration (the median is reported)")
	flag.IntVar(&opts.Pods, "pods", 10000, "pods of the synthetic cluster")
	flag.IntVar(&opts.Policies, "policies", 2000, "NetworkPolicies of the synthetic cluster")
	flag.IntVar(&opts.Namespaces, "namespaces", 0, "namespaces of the synthetic cluster (0: one per 50 pods, at least 2)")
	flag.Int64Var(&opts.Seed, "seed", 1, "seed of the synthetic cluster")
	flag.IntVar(&opts.ClusterPolicies, "cnps", 100, "Admin and as many Baseline ClusterNetworkPolicies for configuration (b+cnp); 0 leaves it out")
	quiet := flag.Bool("q", false, "do not print progress to stderr")
	flag.Parse()
	if opts.Namespaces == 0 {
		opts.Namespaces = max(2, opts.Pods/50)
	}
	if !*quiet {
		opts.Log = os.Stderr
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pktbench: needs root (it creates network namespaces and loads nftables rulesets)")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	rep, err := pktpath.Run(ctx, opts)
	stop()
	if rep != nil {
		fmt.Print(rep.Markdown())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pktbench:", err)
		os.Exit(1)
	}
}
