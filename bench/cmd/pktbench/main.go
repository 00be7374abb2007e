// Command pktbench measures what policyd's compiled nftables table costs on
// the packet path between two pod network namespaces routed through a node
// network namespace: new TCP connections, UDP datagrams that are each a new
// flow, a one-flow UDP stream and an established TCP stream, per sender CPU
// second, with no table, a conntrack-only table, the hand-written floor, the
// compiled table (plain, with ClusterNetworkPolicies, with logging), a
// linear allow-list, and the compiled table for a curve of cluster sizes.
// It prints a markdown report to stdout and progress to stderr. It needs
// root; the network namespaces it creates (named pdbench-<pid>-…) are removed
// on exit, on SIGINT/SIGTERM, and, when a run was killed, by the next run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/policyd/policyd/bench/pktpath"
)

// sizes is a flag holding a comma-separated list of positive integers.
type sizes []int

func (s *sizes) String() string {
	parts := make([]string, len(*s))
	for i, n := range *s {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (s *sizes) Set(v string) error {
	*s = nil
	if v == "" {
		return nil
	}
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		*s = append(*s, n)
	}
	return nil
}

func main() {
	opts := pktpath.Options{
		CurvePolicies: []int{200, 2000, 10000},
		CurvePods:     []int{1000, 10000, 50000},
	}
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: pktbench [flags] > report.md

Measures the packet path through a node namespace with no table, conntrack
only, the floor, policyd's compiled table (plain, +ClusterNetworkPolicies,
+drop logging, +allowed logging), a linear allow-list, and the compiled table
for a curve of cluster sizes, in interleaved rounds; each configuration has a
topology (pod A, node, pod B namespaces) of its own, its table loaded once.
With -profile, a kernel profile (perf) then gives the time spent in nftables
per judged packet. Prints markdown to stdout, progress to stderr. Needs root.
The defaults take about 5 minutes on 2 CPUs; make bench's flags about 11.

Flags:
`)
		flag.PrintDefaults()
	}
	flag.DurationVar(&opts.Duration, "duration", time.Second, "length of one measurement of one kind of traffic")
	flag.IntVar(&opts.Rounds, "rounds", 5, "interleaved rounds per configuration (the median is reported)")
	flag.IntVar(&opts.Pods, "pods", 10000, "pods of the synthetic cluster")
	flag.IntVar(&opts.Policies, "policies", 2000, "NetworkPolicies of the synthetic cluster")
	flag.IntVar(&opts.Namespaces, "namespaces", 0, "namespaces of the synthetic cluster (0: one per 50 pods, at least 2)")
	flag.Int64Var(&opts.Seed, "seed", 1, "seed of the synthetic cluster")
	flag.IntVar(&opts.ClusterPolicies, "cnps", 100, "Admin and as many Baseline ClusterNetworkPolicies for configuration (b+cnp); 0 leaves it out")
	flag.Var((*sizes)(&opts.CurvePolicies), "curve-policies", "comma-separated `list` of policy counts of the curve at -pods pods (empty: none)")
	flag.Var((*sizes)(&opts.CurvePods), "curve-pods", "comma-separated `list` of pod counts of the curve at -policies policies (empty: none)")
	flag.IntVar(&opts.CurveRounds, "curve-rounds", 5, "rounds the curve is measured in, the first ones (at most -rounds; 0 leaves the curve out)")
	flag.IntVar(&opts.FlowSockets, "udp-flow-sockets", pktpath.DefaultFlowSockets, "sockets (source ports) the UDP new-flow traffic sends from, one datagram each per pass")
	flag.IntVar(&opts.Instances, "instances", 1, "topologies each table is loaded into; round r measures instance r mod N (the hash seeds of a table's sets move its cost by up to ±12%)")
	profile := flag.Bool("profile", false, "after the rounds, profile the sending thread with perf (linux-perf) and report the time spent in nftables per judged packet")
	flag.IntVar(&opts.ProfileRounds, "profile-rounds", 3, "rounds of the profile (with -profile)")
	flag.DurationVar(&opts.ProfileDuration, "profile-duration", 2*time.Second, "length of one profiled measurement (with -profile)")
	profileHz := flag.Int("profile-hz", 4999, "perf sampling frequency (with -profile)")
	quiet := flag.Bool("q", false, "do not print progress to stderr")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pktbench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if opts.Namespaces == 0 {
		opts.Namespaces = pktpath.DefaultNamespaces(opts.Pods)
	}
	if len(opts.CurvePolicies)+len(opts.CurvePods) == 0 {
		opts.CurveRounds = 0
	}
	if !*quiet {
		opts.Log = os.Stderr
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pktbench: needs root (it creates network namespaces and loads nftables rulesets)")
		os.Exit(2)
	}

	if *profile {
		p, err := pktpath.NewProfiler(*profileHz)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pktbench: -profile: %v\n", err)
			os.Exit(1)
		}
		opts.Profile = p
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	rep, err := pktpath.Run(ctx, opts)
	stop()
	if opts.Profile != nil {
		err = errors.Join(err, opts.Profile.Close())
	}
	if rep != nil {
		fmt.Print(rep.Markdown())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pktbench:", err)
		os.Exit(1)
	}
}
